//! Persistence: connecting, migrating, transactions, and one repository module per aggregate.
//! Repositories take the open transaction from the use case (they never begin or commit one)
//! and map rows to domain types and back; no business rule is decided here.
//!
//! Locking: on Postgres the rows a command decides on are read `FOR UPDATE`; on SQLite that
//! clause does not exist, and every command transaction is `BEGIN IMMEDIATE` instead, which
//! serialises writers. Either way two commands never decide on the same state concurrently.

pub mod archive;
pub mod by_status;
pub mod chain;
pub mod changes;
pub mod dead_letters;
pub mod inbox;
pub mod mapping;
pub mod outbox;
pub mod policies;
pub mod procedures;
pub mod reviews;
pub mod runs;
pub mod teams;
pub mod tokens;
pub mod unnest;
pub mod writes;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// Opens the pool. SQLite gets one connection (it has one writer anyway), WAL journaling so
/// readers such as the CLI never block the worker, and foreign keys on. A Postgres connection
/// gives back its buffers' spare room when it returns to the pool: a buffer grows to the
/// largest statement its connection ever sent (a group's inserts) and otherwise keeps that
/// size, which adds up over the pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let sqlite = url.starts_with("sqlite:");
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(pool_size(url, max_connections))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .sqlx_logging(false);
    if sqlite {
        opt.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                .statement_cache_capacity(SQLITE_STATEMENT_CACHE)
        });
    } else {
        opt.map_sqlx_postgres_pool_opts(|pool| {
            pool.after_release(|conn, _| {
                sea_orm::sqlx::Connection::shrink_buffers(conn);
                Box::pin(async { Ok(true) })
            })
        });
    }
    Database::connect(opt).await
}

/// A pooled connection is pinged before it is handed out only when it has been idle this
/// long. The driver's default pings on every acquire: a round trip before each transaction
/// (on SQLite to the connection's thread, on the serial path). A connection that broke in
/// use meanwhile fails its statement instead, with an error the worker retries
/// ([`kind`]), and the pool replaces it.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Prepared statements SQLite keeps (the driver's default is 100). A group's inserts are one
/// multi-statement query ([`writes`]), prepared whole, a shape per mix of row counts and large
/// for a large run: a hundred of them kept would double the worker's memory, while preparing
/// again costs little (`docs/benchmarks.md`).
const SQLITE_STATEMENT_CACHE: usize = 16;

/// The connections [`connect`] opens at most: one for SQLite, else `max_connections`.
pub fn pool_size(url: &str, max_connections: u32) -> u32 {
    if url.starts_with("sqlite:") {
        1
    } else {
        max_connections.max(1)
    }
}

/// Runs the migrations, then gives versions stored before digests existed their digest.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await?;
    procedures::fill_digests(db).await?;
    Ok(())
}

/// A command transaction: `BEGIN IMMEDIATE` on SQLite (see module doc), plain on Postgres.
pub async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let options = match db.get_database_backend() {
        DbBackend::Sqlite => TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        },
        _ => TransactionOptions::default(),
    };
    db.begin_with_options(options).await
}

/// The pieces SQLite inserts `n` rows in: powers of two up to 256, largest first. Each row
/// count is a statement shape of its own, which the driver prepares and caches per
/// connection; with these a table has at most nine shapes, instead of one per group size
/// (a cache that kept growing over a long run).
pub fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = match n {
            0 => return None,
            256.. => 256,
            _ => 1 << n.ilog2(),
        };
        n -= size;
        Some(size)
    })
}

/// Database errors that say "someone else got there first" rather than "something is broken".
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// The pool's size and idle connections, where the driver reports them (metrics).
pub fn pool_usage(db: &DatabaseConnection) -> Option<(u32, usize)> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            Some((pool.size(), pool.num_idle()))
        }
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            Some((pool.size(), pool.num_idle()))
        }
        _ => None,
    }
}

/// A failure of the group writes: the database's, or one of the store's own rules broken (a
/// bug: a retry meets it again).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("bug: {0}")]
    Bug(String),
}

/// What a database error means for the command that met it: the one place it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Goes away by itself (connection lost, pool exhausted, serialisation failure, busy).
    Transient,
    /// Another writer got there first (a unique or foreign-key constraint).
    Conflict,
    /// A stored row does not read as the domain's (a value outside its set, a missing row
    /// another refers to): a bug or a damaged database, which no retry mends.
    Corrupt,
    /// Anything else.
    Other,
}

/// The kind of `e`.
pub fn kind(e: &DbErr) -> ErrorKind {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let sqlx = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return ErrorKind::Transient,
        DbErr::Type(_) | DbErr::Json(_) | DbErr::RecordNotFound(_) | DbErr::TryIntoErr { .. } => {
            return ErrorKind::Corrupt;
        }
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => s,
        _ => return ErrorKind::Other,
    };
    match sqlx.as_ref() {
        Sqlx::Io(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed
        | Sqlx::Tls(_) => ErrorKind::Transient,
        Sqlx::ColumnDecode { .. } | Sqlx::Decode(_) | Sqlx::ColumnNotFound(_) => ErrorKind::Corrupt,
        Sqlx::Database(d) => {
            let code = d.code().unwrap_or_default();
            // 08: connection exception; 40001/40P01: serialisation failure, deadlock;
            // 57P0x: server shutting down; 5 / 6: SQLITE_BUSY / SQLITE_LOCKED.
            if code.starts_with("08")
                || code == "40001"
                || code == "40P01"
                || code.starts_with("57P0")
                || code == "5"
                || code == "6"
            {
                ErrorKind::Transient
            } else if d.is_unique_violation() || d.is_foreign_key_violation() {
                ErrorKind::Conflict
            } else {
                ErrorKind::Other
            }
        }
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::{ErrorKind, chunk_sizes, kind};
    use sea_orm::DbErr;

    #[test]
    fn a_row_that_does_not_read_is_corrupt_and_a_lost_connection_transient() {
        assert_eq!(
            kind(&DbErr::Type("status 'paused?'".into())),
            ErrorKind::Corrupt
        );
        assert_eq!(
            kind(&DbErr::RecordNotFound("task of run".into())),
            ErrorKind::Corrupt
        );
        assert_eq!(
            kind(&DbErr::ConnectionAcquire(
                sea_orm::error::ConnAcquireErr::Timeout
            )),
            ErrorKind::Transient
        );
        assert_eq!(kind(&DbErr::RecordNotInserted), ErrorKind::Other);
    }

    #[test]
    fn chunk_sizes_cover_the_rows_in_at_most_nine_shapes() {
        assert_eq!(chunk_sizes(0).count(), 0);
        assert_eq!(chunk_sizes(1).collect::<Vec<_>>(), [1]);
        assert_eq!(chunk_sizes(300).collect::<Vec<_>>(), [256, 32, 8, 4]);
        assert_eq!(
            chunk_sizes(1004).collect::<Vec<_>>(),
            [256, 256, 256, 128, 64, 32, 8, 4]
        );
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..2000 {
            let sizes: Vec<usize> = chunk_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(
                sizes.windows(2).all(|w| w[0] >= w[1]),
                "largest first: {sizes:?}"
            );
            shapes.extend(sizes);
        }
        assert!(shapes.iter().all(|s| s.is_power_of_two() && *s <= 256));
        assert_eq!(shapes.len(), 9);
    }
}

//! Persistence: connecting, migrating, transactions, and one repository module per aggregate.
//! Repositories take the open transaction from the use case (they never begin or commit one)
//! and map rows to domain types and back; no business rule is decided here.
//!
//! Locking: on Postgres the rows a command decides on are read `FOR UPDATE`; on SQLite that
//! clause does not exist, and every command transaction is `BEGIN IMMEDIATE` instead, which
//! serialises writers. Either way two commands never decide on the same state concurrently.

pub mod dead_letters;
pub mod inbox;
pub mod mapping;
pub mod outbox;
pub mod procedures;
pub mod reviews;
pub mod runs;
pub mod teams;
pub mod unnest;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
    sea_query::{Alias, OnConflict},
};

/// Opens the pool. SQLite gets one connection (it has one writer anyway), WAL journaling so
/// readers such as the CLI never block the worker, and foreign keys on.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let sqlite = url.starts_with("sqlite:");
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(pool_size(url, max_connections))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if sqlite {
        opt.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    }
    Database::connect(opt).await
}

/// The connections [`connect`] opens at most: one for SQLite, else `max_connections`.
pub fn pool_size(url: &str, max_connections: u32) -> u32 {
    if url.starts_with("sqlite:") {
        1
    } else {
        max_connections.max(1)
    }
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
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

/// Inserts rows of one table; with `skip_existing`, rows whose key (that column) exists are
/// left out. Returns how many were inserted. Postgres: one statement (an array per column,
/// [`unnest`]). SQLite: one per [`chunk_sizes`] piece.
pub async fn insert_rows<A>(
    db: &impl ConnectionTrait,
    rows: Vec<A>,
    skip_existing: Option<&'static str>,
) -> Result<u64, DbErr>
where
    A: ActiveModelTrait + Send,
{
    if rows.is_empty() {
        return Ok(0);
    }
    if db.get_database_backend() == DbBackend::Postgres {
        return unnest::exec(db, rows, |insert| match skip_existing {
            Some(key) => format!("{insert} ON CONFLICT (\"{key}\") DO NOTHING"),
            None => insert,
        })
        .await;
    }
    let mut inserted = 0;
    let mut rows = rows.into_iter();
    for size in chunk_sizes(rows.len()) {
        let mut insert = A::Entity::insert_many(rows.by_ref().take(size));
        if let Some(key) = skip_existing {
            insert =
                insert.on_conflict(OnConflict::column(Alias::new(key)).do_nothing().to_owned());
        }
        inserted += insert.exec_without_returning(db).await?;
    }
    Ok(inserted)
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

#[cfg(test)]
mod tests {
    use super::chunk_sizes;

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

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

/// Inserts rows of one table with as few statements as the database allows: one on Postgres
/// (an array per column, [`unnest`]), one per 500 rows on SQLite (under its bind-parameter
/// limit).
pub async fn insert_rows<A>(db: &impl ConnectionTrait, rows: Vec<A>) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
{
    if rows.is_empty() {
        return Ok(());
    }
    if db.get_database_backend() == DbBackend::Postgres {
        return unnest::exec(db, rows, |insert| insert).await;
    }
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        A::Entity::insert_many(rows.by_ref().take(500))
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
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

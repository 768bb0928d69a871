//! Widening or narrowing the allowed values of `procedure_run.status`: a constraint swap on
//! Postgres; SQLite cannot alter a constraint, so the table is rebuilt as its documentation
//! prescribes (foreign keys off, new table, copy, drop, rename, indexes again), in one
//! transaction. Each migration passes its own literal lists: what was in force, what will be.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::prelude::*;

pub(crate) const TABLE: &str = "procedure_run";

/// Replaces the allowed values of `procedure_run.status`: `from` must be the list in force.
pub(crate) async fn set_statuses(m: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    match db.get_database_backend() {
        DbBackend::Sqlite => rebuild_sqlite(db, from, to).await,
        backend => {
            let checks = db
                .query_all_raw(Statement::from_string(
                    backend,
                    format!(
                        "SELECT conname FROM pg_constraint WHERE conrelid = '{TABLE}'::regclass \
                         AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%status%'"
                    ),
                ))
                .await?;
            for row in checks {
                let name: String = row.try_get("", "conname")?;
                db.execute_unprepared(&format!(r#"ALTER TABLE {TABLE} DROP CONSTRAINT "{name}""#))
                    .await?;
            }
            db.execute_unprepared(&format!(
                "ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_status_check CHECK (status IN ({to}))"
            ))
            .await?;
            Ok(())
        }
    }
}

async fn rebuild_sqlite(
    db: &SchemaManagerConnection<'_>,
    from: &str,
    to: &str,
) -> Result<(), DbErr> {
    let backend = DbBackend::Sqlite;
    let schema = |kind: &str| {
        Statement::from_string(
            backend,
            format!(
                "SELECT sql FROM sqlite_schema WHERE type = '{kind}' AND tbl_name = '{TABLE}' \
                 AND sql IS NOT NULL"
            ),
        )
    };
    let table: String = db
        .query_one_raw(schema("table"))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("no table {TABLE}")))?
        .try_get("", "sql")?;
    let mut indexes = Vec::new();
    for row in db.query_all_raw(schema("index")).await? {
        indexes.push(row.try_get::<String>("", "sql")?);
    }
    let old_check = format!(r#""status" IN ({from})"#);
    let old_head = format!(r#"CREATE TABLE "{TABLE}""#);
    if table.matches(&old_check).count() != 1 || !table.starts_with(&old_head) {
        return Err(DbErr::Migration(format!(
            "{TABLE}: expected one CHECK ({old_check}) in {table}"
        )));
    }
    let widened = format!("{TABLE}_widened");
    let new_table = table
        .replacen(&old_head, &format!(r#"CREATE TABLE "{widened}""#), 1)
        .replacen(&old_check, &format!(r#""status" IN ({to})"#), 1);
    // One statement batch, so that it runs on one connection: the pragma is per connection
    // and cannot change inside a transaction.
    let script = format!(
        "PRAGMA foreign_keys = OFF; BEGIN; {new_table}; \
         INSERT INTO \"{widened}\" SELECT * FROM \"{TABLE}\"; DROP TABLE \"{TABLE}\"; \
         ALTER TABLE \"{widened}\" RENAME TO \"{TABLE}\"; {}; COMMIT; PRAGMA foreign_keys = ON;",
        indexes.join("; ")
    );
    if let Err(e) = db.execute_unprepared(&script).await {
        // Leave the connection as it was found; the rebuild left nothing behind.
        let _ = db
            .execute_unprepared("ROLLBACK; PRAGMA foreign_keys = ON;")
            .await;
        return Err(e);
    }
    Ok(())
}

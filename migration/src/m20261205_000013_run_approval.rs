//! Runs a team's policy holds for System5's approval: the `awaiting_approval` run status, and
//! the approval on the run (the rule that required it, then who decided what, when and why).
//!
//! Widening the status CHECK is a constraint swap on Postgres; SQLite cannot alter a
//! constraint, so the table is rebuilt as its documentation prescribes (foreign keys off, new
//! table, copy, drop, rename, indexes again), in one transaction.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLE: &str = "procedure_run";
const BEFORE: &str = "'started', 'completed', 'failed', 'canceled'";
const AFTER: &str = "'awaiting_approval', 'started', 'completed', 'failed', 'canceled'";

fn verdict() -> ColumnDef {
    let mut col = string_len_null("approval_verdict", 24);
    col.check(Expr::col("approval_verdict").is_in(["approve", "reject"]));
    col
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            string_len_null("approval_rule", 200),
            verdict(),
            uuid_null("approval_by_system_id"),
            timestamp_with_time_zone_null("approval_at"),
            text_null("approval_note"),
        ] {
            let mut col = col;
            m.alter_table(Table::alter().table(TABLE).add_column(&mut col).to_owned())
                .await?;
        }
        set_statuses(m, BEFORE, AFTER).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(&format!(
            "UPDATE {TABLE} SET status = 'canceled', completed_at = started_at, \
             reason = 'awaiting approval when the approval migration was undone' \
             WHERE status = 'awaiting_approval'"
        ))
        .await?;
        set_statuses(m, AFTER, BEFORE).await?;
        for col in [
            "approval_note",
            "approval_at",
            "approval_by_system_id",
            "approval_verdict",
            "approval_rule",
        ] {
            m.alter_table(Table::alter().table(TABLE).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Replaces the allowed values of `procedure_run.status`: `from` must be the list in force.
async fn set_statuses(m: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
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

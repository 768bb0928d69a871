//! A System1's task list over every status reads one range per status of
//! `ix_task_assignee_status_id` and merges them in id order, so `ix_task_assignee_id` goes: it
//! took a new entry at every status change of every task, a tenth of a run's bytes on
//! Postgres.
//!
//! On Postgres, the tables whose rows change status are vacuumed once 1 % of their rows are
//! dead instead of autovacuum's default 20 %: a status change leaves an index entry under the
//! old status until `VACUUM`, and a list of one status (a System1's ready tasks) steps over
//! every such entry, which at 20 % of a year's tasks is more than a day's work.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables vacuumed at 1 % dead rows on Postgres.
const CHURNING: [&str; 2] = ["task", "procedure_run"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS ix_task_assignee_id")
            .await?;
        if db.get_database_backend() == DbBackend::Postgres {
            for table in CHURNING {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.01)"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for table in CHURNING {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor)"
                ))
                .await?;
            }
        }
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_task_assignee_id ON task (assignee_system_id, id)",
        )
        .await?;
        Ok(())
    }
}

//! Indexes that serve each read's filter and order together, so that no read grows with the
//! history behind it: an execute's policy check counts a series' open runs and its runs in a
//! window by index range; `run.list`, `task.list` and `procedure.list` read a page in index
//! order instead of sorting every match. Each replaced index is a prefix of one that replaces
//! it.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, index, columns) added.
const ADDED: [(&str, &str, &str); 10] = [
    ("procedure_run", "ix_run_series_status", "series_id, status, id"),
    ("procedure_run", "ix_run_series_started", "series_id, started_at"),
    ("procedure_run", "ix_run_series_id", "series_id, id"),
    ("procedure_run", "ix_run_team_id", "team_id, id"),
    ("procedure_run", "ix_run_team_status_id", "team_id, status, id"),
    ("task", "ix_task_assignee_id", "assignee_system_id, id"),
    ("task", "ix_task_assignee_status_id", "assignee_system_id, status, id"),
    ("procedure", "ix_procedure_team_series", "team_id, series_id, version"),
    ("procedure", "ix_procedure_team_status_series", "team_id, status, series_id, version"),
    ("procedure", "ix_procedure_digest", "digest"),
];

/// (table, index, columns) dropped, as they were.
const DROPPED: [(&str, &str, &str); 4] = [
    ("procedure_run", "ix_run_series", "series_id"),
    ("procedure_run", "ix_run_team_status", "team_id, status"),
    ("task", "ix_task_assignee_status", "assignee_system_id, status"),
    ("procedure", "ix_procedure_team_status", "team_id, status"),
];

async fn create(m: &SchemaManager<'_>, indexes: &[(&str, &str, &str)]) -> Result<(), DbErr> {
    for (table, name, columns) in indexes {
        m.get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"
            ))
            .await?;
    }
    Ok(())
}

async fn drop(m: &SchemaManager<'_>, indexes: &[(&str, &str, &str)]) -> Result<(), DbErr> {
    for (_, name, _) in indexes {
        m.get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create(m, &ADDED).await?;
        drop(m, &DROPPED).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create(m, &DROPPED).await?;
        drop(m, &ADDED).await
    }
}

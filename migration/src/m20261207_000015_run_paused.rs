//! Runs System3 pauses: the `paused` run status.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

use crate::run_statuses::{TABLE, set_statuses};

#[derive(DeriveMigrationName)]
pub struct Migration;

const BEFORE: &str = "'awaiting_approval', 'started', 'completed', 'failed', 'canceled'";
const AFTER: &str = "'awaiting_approval', 'started', 'paused', 'completed', 'failed', 'canceled'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set_statuses(m, BEFORE, AFTER).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(&format!(
                "UPDATE {TABLE} SET status = 'started' WHERE status = 'paused'"
            ))
            .await?;
        set_statuses(m, AFTER, BEFORE).await
    }
}

//! Runs a team's policy holds for System5's approval: the `awaiting_approval` run status, and
//! the approval on the run (the rule that required it, then who decided what, when and why).

use sea_orm::ConnectionTrait;
use sea_orm_migration::{prelude::*, schema::*};

use crate::run_statuses::{TABLE, set_statuses};

#[derive(DeriveMigrationName)]
pub struct Migration;

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

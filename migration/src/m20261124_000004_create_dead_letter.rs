//! Dead letters: messages given up on (not a command at all, or failing persistently), kept
//! with their bytes and the reason, for an operator to look at.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("dead_letter")
                .if_not_exists()
                .col(uuid("command_id").primary_key())
                .col(string_len("subject", 400))
                .col(string_len("reason", 64))
                .col(text("message"))
                .col(text("payload"))
                .col(integer("payload_bytes"))
                .col(timestamp_with_time_zone("received_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("dead_letter").if_exists().to_owned())
            .await
    }
}

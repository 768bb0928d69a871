//! `outbox_parked`: messages the relay set aside because the server will never accept them
//! as they are (too large, refused by a stream), so that they stop holding up every message
//! behind them. A parked message is off `outbox_pending` and its outbox row stays; an operator
//! lists it again (`sop outbox republish`) once the cause is fixed.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("outbox_parked")
                .if_not_exists()
                .col(big_integer("seq").primary_key())
                .col(text("reason"))
                .col(timestamp_with_time_zone("parked_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_outbox_parked_seq")
                        .from("outbox_parked", "seq")
                        .to("outbox", "seq"),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("outbox_parked").if_exists().to_owned())
            .await
    }
}

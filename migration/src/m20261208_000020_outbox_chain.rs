//! `outbox_chain`: each team's event chain, as the relay links it before publishing, a run of
//! a record's events per row (see `src/store/chain.rs`). The team's row keeps the head, and
//! the place through which the chain is published.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("outbox_chain")
                .if_not_exists()
                .col(uuid("team_id"))
                .col(big_integer("place"))
                .col(big_integer("seq"))
                .col(integer("first"))
                .col(integer("events"))
                .col(string_len("prev", 64))
                .primary_key(Index::create().col("team_id").col("place"))
                .to_owned(),
        )
        .await?;
        // The relay and every reader of records look links up by record.
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("ix_outbox_chain_seq")
                .table("outbox_chain")
                .col("seq")
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("team")
                .add_column(big_integer("chain_published").default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("team")
                .drop_column("chain_published")
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table("outbox_chain").if_exists().to_owned())
            .await
    }
}

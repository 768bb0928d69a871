//! Each team's event chain: how many events it holds and the hash of the last (see
//! `src/store/chain.rs`), moved on as its events are linked.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        m.alter_table(
            Table::alter()
                .table("team")
                .add_column(big_integer("chain_length").default(0))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("team")
                .add_column(string_len_null("chain_head", 64))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["chain_head", "chain_length"] {
            m.alter_table(Table::alter().table("team").drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

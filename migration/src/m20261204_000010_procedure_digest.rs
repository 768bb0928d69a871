//! A version's digest (SHA-256 of its canonical content). Existing versions get theirs from
//! the worker's start-up, which computes what SQL cannot (`store::migrate`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("procedure")
                .add_column(string_len("digest", 71).default(""))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("procedure")
                .drop_column("digest")
                .to_owned(),
        )
        .await
    }
}

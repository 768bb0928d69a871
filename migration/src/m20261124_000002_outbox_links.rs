//! Links each outbox message to the series and run it concerns, so the audit trail of a
//! series or a run is an indexed read of the outbox.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in ["series_id", "run_id"] {
            m.alter_table(
                Table::alter()
                    .table("outbox")
                    .add_column(uuid_null(column))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .if_not_exists()
                    .name(format!("ix_outbox_{column}"))
                    .table("outbox")
                    .col(column)
                    .col("seq")
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["series_id", "run_id"] {
            m.drop_index(
                Index::drop()
                    .name(format!("ix_outbox_{column}"))
                    .table("outbox")
                    .to_owned(),
            )
            .await?;
            m.alter_table(
                Table::alter()
                    .table("outbox")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

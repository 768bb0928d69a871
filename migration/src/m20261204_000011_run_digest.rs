//! The digest of the approved content each run executes, on the run, its initiative and its
//! review. Existing rows take their version's digest at the worker's start-up
//! (`store::migrate`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 3] = ["procedure_run", "initiative", "run_review"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            m.alter_table(
                Table::alter()
                    .table(table)
                    .add_column(string_len("procedure_digest", 71).default(""))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            m.alter_table(
                Table::alter()
                    .table(table)
                    .drop_column("procedure_digest")
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

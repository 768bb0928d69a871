//! Drops `ix_outbox_team`: no query reads the outbox by team (the audit trail reads it by
//! series or by run, the relay by `seq`), so the index was write cost alone, one B-tree insert
//! more for every event and outcome. A 1,000-row outbox insert on its own took 11–12 ms
//! without it against 13–24 ms with it on Postgres; in the whole service the difference is
//! within the machine's noise (`docs/benchmarks.md`, design decisions).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_outbox_team")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("ix_outbox_team")
                .table("outbox")
                .col("team_id")
                .col("seq")
                .to_owned(),
        )
        .await
    }
}

//! What is left to publish moves from `outbox.published_at` to a narrow `outbox_pending` table
//! the relay deletes from. Marking a message published used to rewrite its outbox row (about
//! 1 KB) and, as the partial index on `published_at` forbade a HOT update, every index of the
//! table: about as much work as inserting it. Outbox rows are now written once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("outbox_pending")
                .if_not_exists()
                .col(big_integer("seq").primary_key())
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "INSERT INTO outbox_pending (seq) SELECT seq FROM outbox WHERE published_at IS NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS ix_outbox_unpublished")
            .await?;
        m.alter_table(
            Table::alter()
                .table("outbox")
                .drop_column("published_at")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("outbox")
                .add_column(timestamp_with_time_zone_null("published_at"))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE outbox SET published_at = created_at \
             WHERE seq NOT IN (SELECT seq FROM outbox_pending)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_outbox_unpublished ON outbox (seq) WHERE published_at IS NULL",
        )
        .await?;
        m.drop_table(Table::drop().table("outbox_pending").to_owned())
            .await
    }
}

//! The outbox keeps each message as the exact bytes the relay publishes (binary), instead of
//! JSON the database parses on insert and the relay decodes and re-encodes on every publish.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let to_bytes = match m.get_database_backend() {
            DbBackend::Postgres => "convert_to(payload::text, 'UTF8')",
            _ => "CAST(payload AS BLOB)",
        };
        swap_payload(m, binary("body").default(""), to_bytes).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let to_json = match m.get_database_backend() {
            DbBackend::Postgres => "convert_from(payload, 'UTF8')::jsonb",
            _ => "CAST(payload AS TEXT)",
        };
        swap_payload(m, json_binary("body").default("{}"), to_json).await
    }
}

/// Replaces `payload` with `column` (of another type), converting every row with `convert`.
/// The column comes with a default (SQLite adds NOT NULL columns only with one) that the update
/// then overwrites in every row.
async fn swap_payload(
    m: &SchemaManager<'_>,
    column: &mut ColumnDef,
    convert: &str,
) -> Result<(), DbErr> {
    m.alter_table(Table::alter().table("outbox").add_column(column).to_owned())
        .await?;
    m.get_connection()
        .execute_unprepared(&format!("UPDATE outbox SET body = {convert}"))
        .await?;
    m.alter_table(
        Table::alter()
            .table("outbox")
            .drop_column("payload")
            .to_owned(),
    )
    .await?;
    m.alter_table(
        Table::alter()
            .table("outbox")
            .rename_column("body", "payload")
            .to_owned(),
    )
    .await
}

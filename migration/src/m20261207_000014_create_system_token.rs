//! `system_token`: the bearer tokens an operator issued for systems, to reach `sop mcp` over
//! HTTP. A token is a NATS user seed; only its public key is kept, so the table holds nothing
//! that acts as a system, and the worker checks a token's signatures against that key.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("system_token")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("system_id"))
                .col(string_len_uniq("public_key", 64))
                .col(string_len_null("label", 200))
                .col(timestamp_with_time_zone("issued_at"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_system_token_system")
                        .from("system_token", "system_id")
                        .to("system", "id"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_system_token_system")
                .table("system_token")
                .col("system_id")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("system_token").if_exists().to_owned())
            .await
    }
}

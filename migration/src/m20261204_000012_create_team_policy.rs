//! `team_policy`: every version of each team's execution policy, as System5 set it. The
//! newest version is in force; the older ones are its history.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("team_policy")
                .if_not_exists()
                .col(uuid("team_id"))
                .col(integer("version"))
                .col(json_binary("document"))
                .col(uuid("set_by_system_id"))
                .col(timestamp_with_time_zone("set_at"))
                .primary_key(Index::create().col("team_id").col("version"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_team_policy_team")
                        .from("team_policy", "team_id")
                        .to("team", "id"),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("team_policy").if_exists().to_owned())
            .await
    }
}

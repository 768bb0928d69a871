use sea_orm::entity::prelude::*;

/// One version of a team's execution policy; the newest is in force.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "team_policy")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub team_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i32,
    /// The policy document as System5 set it.
    pub document: Json,
    pub set_by_system_id: Uuid,
    pub set_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

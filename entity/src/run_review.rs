use sea_orm::entity::prelude::*;

/// The post-run review: one per run.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "run_review")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub run_id: Uuid,
    pub initiative_id: Uuid,
    pub procedure_id: Uuid,
    pub procedure_version: i32,
    pub procedure_digest: String,
    pub team_id: Uuid,
    pub reviewer_system_id: Uuid,
    pub outcome: String,
    pub summary: String,
    pub lessons: Json,
    pub follow_ups: Json,
    /// Procedure context frozen at review time: risk, impact, rollback plan, task outcomes.
    pub context: Json,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

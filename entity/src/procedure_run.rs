use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "procedure_run")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub procedure_id: Uuid,
    pub series_id: Uuid,
    pub procedure_version: i32,
    /// The digest of the approved content the run executes.
    pub procedure_digest: String,
    pub team_id: Uuid,
    #[sea_orm(unique)]
    pub initiative_id: Uuid,
    pub status: String,
    pub started_by_system_id: Uuid,
    pub started_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// Why the run was canceled.
    pub reason: Option<String>,
    /// The policy rule that held the run for System5's approval.
    pub approval_rule: Option<String>,
    pub approval_verdict: Option<String>,
    pub approval_by_system_id: Option<Uuid>,
    pub approval_at: Option<DateTimeUtc>,
    pub approval_note: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}

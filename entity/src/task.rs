use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub team_id: Uuid,
    pub initiative_id: Uuid,
    /// The template this task was made from.
    pub procedure_task_id: Option<Uuid>,
    /// Creation order within the initiative (replacements come after the originals).
    pub seq: i32,
    pub position: i32,
    pub status: String,
    pub ready: bool,
    pub assignee_system_id: Uuid,
    pub assignee_type: String,
    pub name: String,
    pub content: String,
    pub result: Option<String>,
    pub reasoning: Option<String>,
    pub review_verdict: Option<String>,
    pub review_reasoning: Option<String>,
    /// JSON array of `task.id`s of the same initiative.
    pub depends_on: Json,
    pub default_assignee_system_type: Option<String>,
    pub required_skills: Json,
    pub replaces_task_id: Option<Uuid>,
    pub follow_up_task_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

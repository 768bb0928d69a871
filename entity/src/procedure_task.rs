use sea_orm::entity::prelude::*;

/// A task template of one procedure version.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "procedure_task")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub procedure_id: Uuid,
    pub position: i32,
    pub name: String,
    pub description: String,
    /// JSON array of `procedure_task.id`s of the same version.
    pub depends_on: Json,
    pub default_assignee_system_type: Option<String>,
    /// JSON array of skill names.
    pub required_skills: Json,
}

impl ActiveModelBehavior for ActiveModel {}

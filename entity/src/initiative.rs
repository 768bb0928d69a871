use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "initiative")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub team_id: Uuid,
    pub strategy_id: Option<Uuid>,
    pub status: String,
    pub name: String,
    pub description: String,
    pub result: Option<String>,
    pub procedure_id: Option<Uuid>,
    pub procedure_version: Option<i32>,
    pub procedure_digest: String,
    pub run_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "system")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub team_id: Uuid,
    /// The agent identity, e.g. `System3/root`; unique within the team.
    pub name: String,
    pub kind: String,
    /// JSON array of skill names.
    pub skills: Json,
    /// NATS user public key (`U…`); when set, the system's commands must be signed with it.
    pub public_key: Option<String>,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

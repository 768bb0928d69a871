use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "team")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Unique; also the trailing token of every event subject of the team.
    #[sea_orm(unique)]
    pub name: String,
    pub created_at: DateTimeUtc,
    /// Events in the team's chain so far (its last event's index; 0: none yet).
    pub chain_length: i64,
    /// The hash of the chain's last event, lowercase hex; `None` while it is empty.
    pub chain_head: Option<String>,
    /// Postgres: the place through which the relay has published the chain. Below
    /// `chain_length`, the events after it are linked and still to be published, before any
    /// other is linked. (SQLite's one relay links and publishes in one pass.)
    pub chain_published: i64,
}

impl ActiveModelBehavior for ActiveModel {}

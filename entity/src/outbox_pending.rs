use sea_orm::entity::prelude::*;

/// The outbox messages not yet published, by `seq`: the relay's work list. Publishing deletes
/// a message's row here; the outbox row itself is written once and never updated.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_pending")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
}

impl ActiveModelBehavior for ActiveModel {}

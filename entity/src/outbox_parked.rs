use sea_orm::entity::prelude::*;

/// Outbox messages the relay set aside: the server refused them for good, so they no longer
/// hold up the messages behind them. Parking moves a message here from `outbox_pending`, and
/// republishing moves it back; the outbox row itself never changes.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_parked")]
pub struct Model {
    /// The parked message's `outbox.seq`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// Why the server refused it, as the relay saw it (the publish error).
    pub reason: String,
    pub parked_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

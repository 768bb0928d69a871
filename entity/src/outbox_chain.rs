use sea_orm::entity::prelude::*;

/// Where a team's events stand in its hash chain, a run of them at a time: the `events`
/// events of record `seq` from its message `first` on hold the chain's places `place` …
/// `place + events - 1`, and the event before the first had the hash `prev`. The relay writes
/// a run as it links the events, before it publishes them; the rest of each link (every later
/// event's predecessor) follows from the record's own events.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_chain")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub team_id: Uuid,
    /// The run's first place in the team's chain, from 1.
    #[sea_orm(primary_key, auto_increment = false)]
    pub place: i64,
    /// The record (`outbox.seq`) the events are in.
    pub seq: i64,
    /// The index of the run's first message in its record.
    pub first: i32,
    pub events: i32,
    /// The hash of the event at `place - 1`, lowercase hex (64 zeros before the first).
    pub prev: String,
}

impl Model {
    /// Whether the message at `position` is one of the run's events.
    pub fn covers(&self, position: i64) -> bool {
        let (seq, index) = crate::outbox::record_of(position);
        let index = index as i64;
        seq == self.seq
            && index >= i64::from(self.first)
            && index < i64::from(self.first) + i64::from(self.events)
    }
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// Messages committed with the state change that caused them and published afterwards by the
/// relay, in `seq` order (what is left to publish is listed in `outbox_pending`). Rows are
/// written once and kept: they are the audit log.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// Also the `Nats-Msg-Id` of the publish, so a re-publish after a crash is deduplicated.
    #[sea_orm(unique)]
    pub message_id: Uuid,
    /// `event.<type>` for domain events, `outcome` for command outcomes.
    pub kind: String,
    pub subject: String,
    pub team_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// The procedure series the message concerns (audit trail of a series).
    pub series_id: Option<Uuid>,
    /// The run the message concerns (audit trail of a run).
    pub run_id: Option<Uuid>,
    /// The message exactly as published (JSON bytes).
    pub payload: Vec<u8>,
    /// NATS headers to publish with the message (e.g. `traceparent`), as a JSON object.
    pub headers: Option<Json>,
    /// Core-NATS reply inbox the outcome is also sent to (request/reply feel).
    pub reply_to: Option<String>,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

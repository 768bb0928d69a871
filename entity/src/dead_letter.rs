use sea_orm::entity::prelude::*;

/// A message given up on: its rejection outcome was published, and it is kept here as well.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letter")]
pub struct Model {
    /// The id its rejection outcome carries.
    #[sea_orm(primary_key, auto_increment = false)]
    pub command_id: Uuid,
    pub subject: String,
    /// The rejection code (`invalid_payload`, `unknown_command`, `unsupported_schema`, `internal`).
    pub reason: String,
    pub message: String,
    /// The message body as text (invalid UTF-8 replaced), at most 64 KiB of it.
    pub payload: String,
    /// The body's real size.
    pub payload_bytes: i32,
    pub received_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

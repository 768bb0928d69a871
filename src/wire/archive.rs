//! The archive: history older than a horizon, taken out of the database (`sop archive create`)
//! as JSON Lines, oldest first, each line an [`ArchivedMessage`] or an [`ArchivedDeadLetter`]
//! (told apart by `archived`). A message line holds the event or outcome exactly as it was
//! published, with what publishing it again takes (`sop archive replay`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// What a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Message,
    DeadLetter,
}

/// Any line, read for its kind only.
#[derive(Debug, Deserialize)]
pub struct Head {
    pub archived: Kind,
}

/// An event or an outcome, as published.
#[derive(Debug, Serialize, Deserialize)]
pub struct ArchivedMessage {
    /// [`Kind::Message`].
    pub archived: Kind,
    /// Its position in the event log (`audit.get`'s `seq`).
    pub seq: i64,
    /// `event.<type>` or `outcome`.
    pub kind: String,
    pub subject: String,
    /// Its `Nats-Msg-Id`: the event id, or the command id of an outcome.
    pub message_id: Uuid,
    /// The NATS headers it was published with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Value>,
    pub at: DateTime<Utc>,
    /// The event envelope or outcome, byte for byte.
    pub message: Box<RawValue>,
}

/// A message given up on (`sop dead-letters`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ArchivedDeadLetter {
    /// [`Kind::DeadLetter`].
    pub archived: Kind,
    pub command_id: Uuid,
    pub subject: String,
    /// The rejection code.
    pub reason: String,
    pub detail: String,
    /// The body as text (at most 64 KiB of it), and its real size.
    pub payload: String,
    pub payload_bytes: i32,
    pub received_at: DateTime<Utc>,
}

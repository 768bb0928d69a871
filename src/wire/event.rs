//! The envelope every domain event is published in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Events share the commands' schema version.
pub use super::command::SCHEMA_VERSION;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Event_{D}")]
pub struct EventEnvelope<D> {
    pub schema_version: u32,
    pub event_id: Uuid,
    /// `task.ready`, `procedure.approved`, … (the subject without prefix and team).
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub team_id: Uuid,
    pub team: String,
    /// The command that caused the event.
    pub causation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The system whose command caused the event.
    pub actor: Uuid,
    pub data: D,
}

//! Command messages as they travel: a versioned envelope around a typed payload per command.
//! Payloads refuse unknown fields, so a misspelt field is an `invalid_payload` rejection
//! rather than a silently ignored value.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::run::Verdict;

/// The envelope schema version this worker speaks.
pub const SCHEMA_VERSION: u32 = 1;

/// The largest command, envelope and headers, the commands stream stores.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

/// Header carrying a core-NATS inbox the outcome is also sent to.
pub const REPLY_TO_HEADER: &str = "Sop-Reply-To";
/// W3C trace context: taken from a command and set on every event it causes.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// JetStream's de-duplication header; set to the command id.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

subject_names!(
    /// Every command, named as its subject (without prefix).
    CommandName {
        DraftProcedure = "procedure.draft",
        ReviseProcedure = "procedure.revise",
        EditProcedure = "procedure.edit",
        DiscardProcedure = "procedure.discard",
        ApproveProcedure = "procedure.approve",
        RejectProcedure = "procedure.reject",
        RetireProcedure = "procedure.retire",
        ExecuteProcedure = "procedure.execute",
        StartTask = "task.start",
        CompleteTask = "task.complete",
        BlockTask = "task.block",
        UnblockTask = "task.unblock",
        ReviewTask = "task.review",
        CancelTask = "task.cancel",
        ReplaceTask = "task.replace",
        CancelRun = "run.cancel",
        ReviewInitiative = "initiative.review",
    }
);

/// The envelope as read leniently: every field optional, so that even a broken command yields
/// its id and actor for the rejection outcome.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RawEnvelope {
    pub schema_version: Option<u32>,
    pub command_id: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub correlation_id: Option<String>,
    pub payload: Option<serde_json::Value>,
}

/// The envelope as sent by clients.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Command_{P}")]
pub struct Envelope<P> {
    pub schema_version: u32,
    pub command_id: Uuid,
    /// The acting system's id.
    pub actor: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub payload: P,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateDto {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub depends_on: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_assignee_type: Option<String>,
    #[serde(default)]
    pub required_skills: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftProcedure {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub risk_level: String,
    pub impact: String,
    pub rollback_plan: String,
    pub tasks: Vec<TemplateDto>,
}

/// Revise (new draft from the latest version) and edit (change the draft in place): the fields
/// given replace the current ones; `tasks`, when given, replaces the whole template list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeProcedure {
    pub procedure_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TemplateDto>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcedureRef {
    pub procedure_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcedureWithReason {
    pub procedure_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteProcedure {
    /// The series to run (its first version's id); the approved version is taken.
    pub series_id: Uuid,
    /// Refuse with `conflict` unless this is still the approved version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    pub task_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteTask {
    pub task_id: Uuid,
    pub result: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskWithReason {
    pub task_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnblockTask {
    pub task_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewTask {
    pub task_id: Uuid,
    pub verdict: Verdict,
    #[serde(default)]
    pub reasoning: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceTask {
    pub task_id: Uuid,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRun {
    pub run_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInitiative {
    pub initiative_id: Uuid,
    pub outcome: String,
    pub summary: String,
    #[serde(default)]
    pub lessons: Vec<String>,
    #[serde(default)]
    pub follow_ups: Vec<String>,
}

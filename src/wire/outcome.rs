//! The one outcome every command ends in, published on `command.outcome.<id>` (and to the
//! command's reply inbox when it named one), and stored in the inbox for duplicates.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::receipt::Receipt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcome {
    pub schema_version: u32,
    pub command_id: Uuid,
    /// The command name, or the subject it arrived on when that names no command.
    pub command: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub processed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    #[schemars(title = "AcceptedOutcome")]
    Accepted { result: Accepted },
    #[schemars(title = "RejectedOutcome")]
    Rejected { error: ErrorBody },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// Stable, documented code (`validation_failed`, `forbidden`, …).
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// What an accepted command created or changed; only the fields that apply are present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Accepted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The version's digest (what `procedure.approve` names); on execute, the approved
    /// content the run executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// On approve: the version this approval retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_procedure_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiative_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_ids: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_id: Option<Uuid>,
    /// On `policy.set`: the version of the team's policy now in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u32>,
}

impl Outcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self.verdict, Verdict::Accepted { .. })
    }

    pub fn error_code(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Rejected { error } => Some(&error.code),
            Verdict::Accepted { .. } => None,
        }
    }
}

impl From<Receipt> for Accepted {
    fn from(receipt: Receipt) -> Accepted {
        match receipt {
            Receipt::Procedure {
                procedure,
                series,
                version,
                status,
                digest,
                superseded,
            } => Accepted {
                procedure_id: Some(procedure.0),
                series_id: Some(series.0),
                version: Some(version.0),
                status: Some(status.as_str().to_owned()),
                digest: Some(digest.to_string()),
                superseded_procedure_id: superseded.map(|s| s.0),
                ..Accepted::default()
            },
            Receipt::Executed {
                procedure,
                series,
                version,
                digest,
                run,
                initiative,
                status,
                tasks,
            } => Accepted {
                procedure_id: Some(procedure.0),
                series_id: Some(series.0),
                version: Some(version.0),
                digest: Some(digest.to_string()),
                status: Some(status.as_str().to_owned()),
                run_id: Some(run.0),
                initiative_id: Some(initiative.0),
                task_ids: tasks.into_iter().map(|t| t.0).collect(),
                ..Accepted::default()
            },
            Receipt::Task {
                run,
                initiative,
                task,
                status,
            } => Accepted {
                run_id: Some(run.0),
                initiative_id: Some(initiative.0),
                task_id: Some(task.0),
                status: status.map(|s| s.as_str().to_owned()),
                ..Accepted::default()
            },
            Receipt::Run {
                run,
                initiative,
                status,
            } => Accepted {
                run_id: Some(run.0),
                initiative_id: Some(initiative.0),
                status: Some(status.as_str().to_owned()),
                ..Accepted::default()
            },
            Receipt::Policy { version } => Accepted {
                policy_version: Some(version),
                ..Accepted::default()
            },
            Receipt::Review {
                run,
                initiative,
                review,
                outcome,
            } => Accepted {
                run_id: Some(run.0),
                initiative_id: Some(initiative.0),
                review_id: Some(review.0),
                status: Some(outcome.as_str().to_owned()),
                ..Accepted::default()
            },
        }
    }
}

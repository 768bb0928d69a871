//! What queries answer: one type per question, serialised on the wire and read back by the
//! client and the CLI.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::diff::Diff;
use crate::domain::event::{InitiativeView, ProcedureView, ReviewView, RunView, TaskView};
use crate::domain::ids::*;
use crate::domain::policy::PolicyDocument;
use crate::domain::system::SystemKind;
use crate::domain::template::TaskTemplate;
use crate::wire::outcome::Outcome;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcedureDetail {
    pub procedure: ProcedureView,
    pub tasks: Vec<TaskTemplate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcedureList {
    /// By series, then version.
    pub procedures: Vec<ProcedureView>,
    /// The `cursor` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct History {
    pub series_id: SeriesId,
    /// Oldest first; each says who drafted, approved, rejected or retired it, and when.
    pub versions: Vec<ProcedureView>,
    /// The `cursor` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VersionDiff {
    pub from: ProcedureView,
    pub to: ProcedureView,
    #[serde(flatten)]
    pub diff: Diff,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PreviewTask {
    pub position: u32,
    pub name: String,
    pub description: String,
    pub depends_on: Vec<u32>,
    /// Ready as soon as the run starts (no dependencies).
    pub ready_at_start: bool,
    pub assignee_type: SystemKind,
    pub assignee_system_id: Option<SystemId>,
    pub assignee_name: Option<String>,
    pub required_skills: Vec<String>,
}

/// What executing a version would create, without creating it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Preview {
    pub procedure: ProcedureView,
    /// Whether `procedure.execute` would run this version now.
    pub executable: bool,
    /// Why it would not (not approved, no system to assign a task to, the team's policy).
    pub blocked_by: Option<String>,
    /// The policy rule that would refuse it now: the `field` of the `policy_denied` an
    /// execute would meet (`night.freeze`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_rule: Option<String>,
    /// The policy rule that would hold the run for System5's approval: the execute would
    /// create it `awaiting_approval`, no task ready until `run.approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_rule: Option<String>,
    pub initiative_name: String,
    pub initiative_description: String,
    pub tasks: Vec<PreviewTask>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunDetail {
    pub run: RunView,
    pub initiative: InitiativeView,
    /// A page of the run's tasks, in creation order (by position, replacements after).
    pub tasks: Vec<TaskView>,
    pub review: Option<ReviewView>,
    /// The `cursor` of the next page of tasks; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A team's runs, in creation order (`run.list`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunList {
    pub runs: Vec<RunView>,
    /// The `cursor` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Tasks assigned to one system, in creation order (`task.list`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskList {
    pub assignee_system_id: SystemId,
    pub tasks: Vec<TaskView>,
    /// The `cursor` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// From an initiative back to the procedure version and run that made it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Trace {
    pub initiative_id: InitiativeId,
    pub run: RunView,
    pub procedure: ProcedureView,
    pub review_id: Option<ReviewId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// The message's position in the event log: increasing in commit order, with gaps.
    pub seq: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub published: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Audit {
    /// In commit (`seq`) order.
    pub entries: Vec<AuditEntry>,
    /// The `cursor` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A system as `system.get` answers it: names and ids, never its key.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SystemIdentity {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SystemKind,
    pub team_id: Uuid,
    pub team: String,
    pub skills: Vec<String>,
    /// Whether it has a registered key, so that its commands and queries must be signed.
    pub has_key: bool,
}

/// One system of a team (`team.get`, `team.apply`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Member {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SystemKind,
    pub skills: Vec<String>,
    pub has_key: bool,
}

/// A team and its systems, by name.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TeamIdentity {
    pub id: Uuid,
    pub name: String,
    pub systems: Vec<Member>,
}

/// The team's execution policy in force: version 0 and no rules when it never set one.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicyAnswer {
    pub version: u32,
    pub policy: PolicyDocument,
    pub set_by_system_id: Option<SystemId>,
    pub set_at: Option<DateTime<Utc>>,
}

/// Any answer, as the service serialises it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Answer {
    Procedure(Box<ProcedureDetail>),
    Procedures(ProcedureList),
    History(History),
    Diff(Box<VersionDiff>),
    Preview(Box<Preview>),
    Run(Box<RunDetail>),
    Runs(RunList),
    Tasks(TaskList),
    Trace(Box<Trace>),
    Audit(Audit),
    Outcome(Box<Outcome>),
    System(SystemIdentity),
    Team(TeamIdentity),
    Policy(Box<PolicyAnswer>),
}

/// An answer that comes in pages: each page's items after the previous page's `next_cursor`.
pub trait Paged: serde::de::DeserializeOwned {
    /// How many items it holds.
    fn items(&self) -> usize;
    /// Takes the cursor of the next page, leaving none.
    fn take_cursor(&mut self) -> Option<String>;
    /// Appends the next page's items (and its cursor).
    fn append(&mut self, next: Self);
    fn truncate(&mut self, n: usize);
}

macro_rules! paged {
    ($($answer:ty => $items:ident),* $(,)?) => {$(
        impl Paged for $answer {
            fn items(&self) -> usize {
                self.$items.len()
            }
            fn take_cursor(&mut self) -> Option<String> {
                self.next_cursor.take()
            }
            fn append(&mut self, next: Self) {
                self.$items.extend(next.$items);
                self.next_cursor = next.next_cursor;
            }
            fn truncate(&mut self, n: usize) {
                self.$items.truncate(n);
            }
        }
    )*};
}

paged!(
    ProcedureList => procedures,
    History => versions,
    RunDetail => tasks,
    RunList => runs,
    TaskList => tasks,
    Audit => entries,
);

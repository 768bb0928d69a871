//! Domain events: what changed, in past tense, with a payload complete enough that a listener
//! never has to query back. The wire envelope (ids, time, causation) is added by the outbox.

use chrono::{DateTime, Utc};
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::*;
use super::policy::PolicyDocument;
use super::procedure::{Impact, Procedure, ProcedureState, RetireReason, RiskLevel};
use super::system::Party;
use super::system::Party::{Assignee, Role};
use super::system::SystemKind::{self, System3, System4, System5};
use super::template::TaskTemplate;

/// Declares every event once: its name (the first two tokens of its subject,
/// `task.ready.<team>`), the view its data is, whom it is for (the systems that act on it) and
/// what happened, in a sentence. From it come [`EventKind`], its list and the contract's event
/// messages ([`visit_events`]).
macro_rules! events {
    ($($variant:ident = $name:literal ($view:ty) for [$($party:expr),+]: $summary:literal;)*) => {
        subject_names!(
            /// Every event type; `as_str` is the first two tokens of its subject.
            EventKind { $($variant = $name,)* }
        );

        impl EventKind {
            /// The systems that act on it (any member may read every event of its team).
            pub fn audience(self) -> &'static [Party] {
                match self { $(EventKind::$variant => &[$($party),+],)* }
            }

            /// What happened, in a sentence.
            pub fn summary(self) -> &'static str {
                match self { $(EventKind::$variant => $summary,)* }
            }
        }

        /// Each event type with the type of its data (the contract describes them).
        pub trait EventVisitor {
            fn visit<D: schemars::JsonSchema>(&mut self, kind: EventKind);
        }

        pub fn visit_events(visitor: &mut impl EventVisitor) {
            $(visitor.visit::<$view>(EventKind::$variant);)*
        }
    };
}

events! {
    ProcedureDrafted = "procedure.drafted" (ProcedureEvent) for [Role(System5)]:
        "A new series' first version was drafted.";
    ProcedureRevised = "procedure.revised" (ProcedureEvent) for [Role(System5)]:
        "A new draft version was made from the series' latest.";
    ProcedureEdited = "procedure.edited" (ProcedureEvent) for [Role(System5)]:
        "A draft was changed in place.";
    ProcedureDiscarded = "procedure.discarded" (ProcedureEvent) for [Role(System5)]:
        "A draft was abandoned by System4: retired without approval.";
    ProcedureApproved = "procedure.approved" (ProcedureEvent) for [Role(System3), Role(System4)]:
        "A draft was approved: the series' version to execute.";
    ProcedureRejected = "procedure.rejected" (ProcedureEvent) for [Role(System4)]:
        "A draft was sent back to System4 with a reason.";
    ProcedureRetired = "procedure.retired" (ProcedureEvent) for [Role(System3), Role(System4)]:
        "A version was taken out of service.";
    RunAwaitingApproval = "run.awaiting_approval" (RunView) for [Role(System5)]:
        "A policy rule held a new run for System5's approval.";
    RunApproved = "run.approved" (RunView) for [Role(System3)]:
        "System5 let a held run start.";
    RunRejected = "run.rejected" (RunView) for [Role(System3)]:
        "System5 refused a held run: it ended canceled.";
    RunStarted = "run.started" (RunView) for [Role(System3)]:
        "A run started: its first tasks are ready.";
    RunPaused = "run.paused" (RunView) for [Role(System3)]:
        "System3 paused a run: no task is ready or starts until it is resumed.";
    RunResumed = "run.resumed" (RunView) for [Role(System3)]:
        "System3 resumed a paused run: its tasks whose dependencies are approved are ready.";
    RunCompleted = "run.completed" (RunView) for [Role(System3), Role(System4)]:
        "Every task of a run was approved (or replaced).";
    RunFailed = "run.failed" (RunView) for [Role(System3), Role(System4)]:
        "A run ended with work canceled and not replaced.";
    RunCanceled = "run.canceled" (RunView) for [Role(System3), Role(System4)]:
        "System3 canceled a run.";
    InitiativeCreated = "initiative.created" (InitiativeView) for [Role(System3)]:
        "An execute made an initiative and its tasks.";
    InitiativeStarted = "initiative.started" (InitiativeView) for [Role(System3)]:
        "The first task of an initiative was started.";
    InitiativeCompleted = "initiative.completed" (InitiativeView) for [Role(System3)]:
        "An initiative's run ended completed or failed.";
    InitiativeCanceled = "initiative.canceled" (InitiativeView) for [Role(System3)]:
        "An initiative's run was canceled or rejected.";
    InitiativeReviewed = "initiative.reviewed" (ReviewView) for [Role(System4), Role(System5)]:
        "System3 recorded the post-run review.";
    TaskCreated = "task.created" (TaskView) for [Assignee]:
        "A task was made, by an execute or a replacement.";
    TaskReady = "task.ready" (TaskView) for [Assignee]:
        "A task's dependencies are all approved: its assignee may start it.";
    TaskStarted = "task.started" (TaskView) for [Role(System3)]:
        "The assignee started a task.";
    TaskCompleted = "task.completed" (TaskView) for [Role(System3)]:
        "The assignee completed a task: it awaits System3's review.";
    TaskBlocked = "task.blocked" (TaskView) for [Role(System3)]:
        "The assignee blocked a task, with what it needs.";
    TaskUnblocked = "task.unblocked" (TaskView) for [Assignee, Role(System3)]:
        "A blocked task was put back to pending.";
    TaskApproved = "task.approved" (TaskView) for [Assignee]:
        "System3 approved a completed task.";
    TaskRejected = "task.rejected" (TaskView) for [Assignee, Role(System3)]:
        "System3 rejected a completed task: to be replaced or canceled.";
    TaskCanceled = "task.canceled" (TaskView) for [Assignee]:
        "A task was canceled, or replaced by a new one.";
    PolicyChanged = "policy.changed" (PolicyEvent) for [Role(System3)]:
        "System5 replaced the team's execution policy.";
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Event {
    #[serde(skip)]
    pub kind: EventKind,
    #[serde(skip)]
    pub team_id: TeamId,
    #[serde(flatten)]
    pub data: EventData,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum EventData {
    Procedure(Box<ProcedureEvent>),
    Run(Box<RunView>),
    Initiative(Box<InitiativeView>),
    Task(Box<TaskView>),
    Review(Box<ReviewView>),
    Policy(Box<PolicyEvent>),
}

impl Event {
    /// The series and run this event concerns (for the audit trail).
    pub fn links(&self) -> (Option<SeriesId>, Option<RunId>) {
        match &self.data {
            EventData::Procedure(p) => (Some(p.procedure.series_id), None),
            EventData::Run(r) => (Some(r.provenance.series_id), Some(r.provenance.run_id)),
            EventData::Initiative(i) => (Some(i.provenance.series_id), Some(i.provenance.run_id)),
            EventData::Task(t) => (Some(t.provenance.series_id), Some(t.provenance.run_id)),
            EventData::Review(r) => (Some(r.provenance.series_id), Some(r.provenance.run_id)),
            EventData::Policy(_) => (None, None),
        }
    }

    pub fn new(kind: EventKind, team_id: TeamId, data: EventData) -> Event {
        Event {
            kind,
            team_id,
            data,
        }
    }
}

/// A team's policy replaced (data of `policy.changed`): both versions, whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicyEvent {
    /// The version now in force (1 for a team's first policy).
    pub version: u32,
    pub policy: PolicyDocument,
    /// The version it replaced; none before the first.
    pub previous: Option<PolicyDocument>,
    pub set_by_system_id: SystemId,
}

/// A procedure version and what happened to it (data of `procedure.*` events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcedureEvent {
    pub procedure: ProcedureView,
    /// Present when the templates changed (drafted, revised, edited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskTemplate>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// On `procedure.revised`: the version this draft was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub based_on: Option<ProcedureId>,
    /// On `procedure.approved`: the version this approval retired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded: Option<ProcedureId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcedureView {
    pub procedure_id: ProcedureId,
    pub series_id: SeriesId,
    pub team_id: TeamId,
    pub version: Version,
    pub status: Cow<'static, str>,
    pub name: String,
    pub description: String,
    pub risk_level: RiskLevel,
    pub impact: Impact,
    pub rollback_plan: String,
    /// `sha256:<hex>` of the version's canonical content (name, description, risk level,
    /// impact, rollback plan, templates): what `procedure.approve` must name.
    pub digest: String,
    pub created_by_system_id: SystemId,
    pub approved_by_system_id: Option<SystemId>,
    pub approved_at: Option<DateTime<Utc>>,
    pub retired_by_system_id: Option<SystemId>,
    pub retired_at: Option<DateTime<Utc>>,
    pub retired_reason: Option<String>,
    pub rejected_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProcedureView {
    pub fn of(p: &Procedure) -> ProcedureView {
        let (approval, retirement, rejection) = match &p.state {
            ProcedureState::Draft { rejection } => (None, None, rejection.as_ref()),
            ProcedureState::Approved(a) => (Some(a), None, None),
            ProcedureState::Retired {
                approval,
                retirement,
            } => (approval.as_ref(), Some(retirement), None),
        };
        ProcedureView {
            procedure_id: p.id,
            series_id: p.series_id,
            team_id: p.team_id,
            version: p.version,
            status: p.status().as_str().into(),
            name: p.meta.name.clone(),
            description: p.meta.description.clone(),
            risk_level: p.meta.risk_level,
            impact: p.meta.impact,
            rollback_plan: p.meta.rollback_plan.clone(),
            digest: p.digest.as_str().to_owned(),
            created_by_system_id: p.created_by,
            approved_by_system_id: approval.map(|a| a.by),
            approved_at: approval.map(|a| a.at),
            retired_by_system_id: retirement.map(|r| r.by),
            retired_at: retirement.map(|r| r.at),
            retired_reason: retirement.map(|r| r.reason.describe()),
            rejected_reason: rejection.map(|r| r.reason.clone()),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }

    pub fn superseded_by(p: &Procedure) -> Option<ProcedureId> {
        match &p.state {
            ProcedureState::Retired { retirement, .. } => match retirement.reason {
                RetireReason::Superseded { by } => Some(by),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Where a run came from: carried by every run, initiative, task and review event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Provenance {
    pub run_id: RunId,
    pub initiative_id: InitiativeId,
    pub procedure_id: ProcedureId,
    pub series_id: SeriesId,
    pub procedure_version: Version,
    /// The digest of the approved content the run executes.
    pub procedure_digest: String,
}

/// A run: its provenance, status and task counts (data of `run.*` events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunView {
    #[serde(flatten)]
    pub provenance: Provenance,
    pub status: Cow<'static, str>,
    pub started_by_system_id: SystemId,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it was canceled or rejected, why it is paused, or the note it was resumed with.
    pub reason: Option<String>,
    /// System5's gate, when a policy rule held the run for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalView>,
    /// Task counts by status, so a listener sees the outcome at a glance.
    pub task_counts: std::collections::BTreeMap<Cow<'static, str>, usize>,
}

/// A run's approval: the rule that required it and, once made, System5's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalView {
    /// The policy rule that held the run for approval.
    pub rule: String,
    /// `approve` or `reject`; absent while the run awaits approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::domain::run::Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by_system_id: Option<SystemId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// The approver's note, or the reason for a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The initiative a run materialised, with the procedure's risk context (data of `initiative.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InitiativeView {
    #[serde(flatten)]
    pub provenance: Provenance,
    pub team_id: TeamId,
    pub strategy_id: Option<Uuid>,
    pub status: Cow<'static, str>,
    pub name: String,
    pub description: String,
    pub result: Option<String>,
    pub risk_level: RiskLevel,
    pub impact: Impact,
    pub rollback_plan: String,
    pub task_ids: Vec<TaskId>,
}

/// A task in full, so a System1 listener never queries back (data of `task.*` events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskView {
    pub task_id: TaskId,
    #[serde(flatten)]
    pub provenance: Provenance,
    pub position: u32,
    pub name: String,
    pub content: String,
    pub status: Cow<'static, str>,
    pub ready: bool,
    pub assignee_system_id: SystemId,
    pub assignee_type: SystemKind,
    pub depends_on: Vec<TaskId>,
    pub default_assignee_type: Option<SystemKind>,
    pub required_skills: Vec<String>,
    pub result: Option<String>,
    pub reasoning: Option<String>,
    pub review_reasoning: Option<String>,
    pub replaces_task_id: Option<TaskId>,
    pub follow_up_task_id: Option<TaskId>,
}

/// A post-run review with its frozen procedure context (data of `initiative.reviewed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewView {
    pub review_id: ReviewId,
    #[serde(flatten)]
    pub provenance: Provenance,
    pub reviewer_system_id: SystemId,
    pub run_status: Cow<'static, str>,
    pub outcome: Cow<'static, str>,
    pub summary: String,
    pub lessons: Vec<String>,
    pub follow_ups: Vec<String>,
    pub context: super::review::ReviewContext,
    pub recorded_at: DateTime<Utc>,
}

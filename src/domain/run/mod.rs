//! A procedure run: the initiative it materialised, its tasks, and the rules that move them.
//!
//! Readiness: a task is *ready* when every task it depends on is `approved`; only a ready
//! `pending` task can be started, and `task.ready` is published when a task becomes ready.
//!
//! The run's status is derived, never set by hand (except by System5's decision and
//! `run.cancel`):
//! - `awaiting_approval` from the execute, when a rule of the team's policy holds the run for
//!   System5: its initiative and tasks exist, none is ready and no task command is accepted;
//!   `run.approve` makes it `started` (the first tasks become ready), `run.reject` ends it
//!   `canceled` with the reason;
//! - `started` while any task is not terminal (terminal = `approved` or `canceled`);
//! - `paused` by System3 (`run.pause`) until `run.resume`: no task is ready or starts
//!   meanwhile, tasks in progress may be completed and reviewed;
//! - once every task is terminal: `completed` when every task that was not replaced is
//!   `approved`, else `failed` (some work was canceled without a replacement);
//! - `canceled` when System3 cancels the run (started, paused or awaiting approval) or System5 rejects
//!   it: its open tasks are canceled with it.
//!
//! Canceling a task cancels, transitively, the tasks that depend on it (they could never become
//! ready); replacing a task points its dependents at the replacement instead.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::DomainError;
use super::event::Provenance;
use super::ids::*;
use super::procedure::{Impact, RiskLevel};
use super::system::{Actor, SystemKind};

mod materialise;
mod transitions;
mod views;

pub use materialise::{NewRunIds, assign};
pub use views::{task_counts, task_view};

/// Tasks one run may hold, replacements included: a template's tasks and as many again. Every
/// run view, review context and initiative event lists them, so a System3 that keeps replacing
/// tasks meets a limit instead of growing them without end.
pub const MAX_RUN_TASKS: usize = 2 * super::template::MAX_TEMPLATES;

closed_set! {
    pub enum TaskStatus {
        Pending,
        InProgress,
        Blocked,
        Completed,
        Approved,
        Rejected,
        Canceled,
    }
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Approved | TaskStatus::Canceled)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

closed_set! {
    /// Derived from the tasks, never set by hand except by the commands of [`RUN_MOVES`]. Each
    /// variant's documentation is the reference's.
    pub enum RunStatus {
        /// From the execute while a `run_approval` rule holds it for System5: its tasks
        /// exist, none is ready and no task command is accepted.
        AwaitingApproval,
        /// While any task is not terminal (`approved` or `canceled`).
        Started,
        /// System3 paused it: no task is ready or starts, work already started may be
        /// completed and reviewed; it counts as open. `run.resume` makes ready again what was
        /// ready, and what became ready meanwhile.
        Paused,
        /// Every task is terminal and every task that was not replaced is `approved`.
        Completed,
        /// Every task is terminal and some work was canceled without a replacement.
        Failed,
        /// System3 canceled the run or System5 rejected it: its open tasks were canceled with
        /// it.
        Canceled,
    }
}

/// Every move of a run's status and what makes it (from `None`: the execute that makes the
/// run). The reference's diagram is drawn from this list, and the property test holds the
/// rules to it.
pub const RUN_MOVES: &[(Option<RunStatus>, RunStatus, &str)] = {
    use RunStatus::*;
    &[
        (None, Started, "execute"),
        (
            None,
            AwaitingApproval,
            "execute, where a run_approval rule applies",
        ),
        (Some(AwaitingApproval), Started, "run.approve (System5)"),
        (
            Some(AwaitingApproval),
            Canceled,
            "run.reject (System5) / run.cancel (System3)",
        ),
        (
            Some(Started),
            Completed,
            "every task approved (or replaced)",
        ),
        (
            Some(Started),
            Failed,
            "every task terminal, one canceled unreplaced",
        ),
        (Some(Started), Canceled, "run.cancel (System3)"),
        (Some(Started), Paused, "run.pause (System3)"),
        (Some(Paused), Started, "run.resume (System3)"),
        (
            Some(Paused),
            Completed,
            "the last task approved while paused",
        ),
        (
            Some(Paused),
            Failed,
            "every task terminal while paused, one canceled unreplaced",
        ),
        (Some(Paused), Canceled, "run.cancel (System3)"),
    ]
};

impl RunStatus {
    /// Not ended (it has a move out): what a policy's `max_open_runs` counts.
    pub fn is_open(self) -> bool {
        RUN_MOVES.iter().any(|(from, _, _)| *from == Some(self))
    }
}

closed_set! {
    pub enum InitiativeStatus {
        Pending,
        InProgress,
        Completed,
        Canceled,
    }
}

closed_set! {
    /// System3's judgement of a completed task.
    pub enum Verdict {
        Approve,
        Reject,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub position: u32,
    pub name: String,
    pub content: String,
    pub status: TaskStatus,
    pub ready: bool,
    pub assignee: SystemId,
    pub assignee_type: SystemKind,
    pub depends_on: Vec<TaskId>,
    pub default_assignee_type: Option<SystemKind>,
    pub required_skills: Vec<String>,
    pub result: Option<String>,
    /// Why it is blocked, canceled or replaced.
    pub reasoning: Option<String>,
    pub review_verdict: Option<Verdict>,
    pub review_reasoning: Option<String>,
    pub replaces: Option<TaskId>,
    pub follow_up: Option<TaskId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiative {
    pub id: InitiativeId,
    pub strategy_id: Option<Uuid>,
    pub status: InitiativeStatus,
    pub name: String,
    pub description: String,
    pub result: Option<String>,
}

/// Procedure fields copied onto the run so its events and review carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunProcedure {
    pub risk_level: RiskLevel,
    pub impact: Impact,
    pub rollback_plan: String,
}

/// System5's gate on a run a policy rule held for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunApproval {
    /// The rule that required it.
    pub rule: String,
    /// None while the run awaits it.
    pub decision: Option<ApprovalDecision>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDecision {
    pub verdict: Verdict,
    pub by: SystemId,
    pub at: DateTime<Utc>,
    /// The approver's note, or the reason for a rejection.
    pub note: Option<String>,
}

/// What an execute asks for beyond the version, and what the team's policy adds.
#[derive(Debug, Clone, Default)]
pub struct RunTerms {
    pub strategy_id: Option<Uuid>,
    /// The policy rule that holds the run for System5's approval, if one does.
    pub approval_rule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub provenance: Provenance,
    pub team_id: TeamId,
    pub status: RunStatus,
    pub started_by: SystemId,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// Present when a policy rule held the run for System5's approval.
    pub approval: Option<RunApproval>,
    pub procedure: RunProcedure,
    pub initiative: Initiative,
    /// In creation order (position order at execute, replacements appended).
    pub tasks: Vec<Task>,
    pub reviewed: bool,
}

/// What System3 may change when it replaces a task.
#[derive(Debug, Clone, Default)]
pub struct TaskChange {
    pub reason: String,
    pub name: Option<String>,
    pub content: Option<String>,
}

/// What every rule checks first.
impl Execution {
    fn index(&self, id: TaskId) -> Result<usize, DomainError> {
        self.tasks
            .iter()
            .position(|t| t.id == id)
            .ok_or_else(|| DomainError::invalid("task_id", "not a task of this run"))
    }

    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// Starting a task needs the run started: not held, paused or ended.
    fn require_started(&self, action: &'static str) -> Result<(), DomainError> {
        self.require(self.status == RunStatus::Started, action)
    }

    /// Other task commands need the run started or paused: work begun may finish.
    fn require_working(&self, action: &'static str) -> Result<(), DomainError> {
        self.require(
            matches!(self.status, RunStatus::Started | RunStatus::Paused),
            action,
        )
    }

    fn require_open(&self, action: &'static str) -> Result<(), DomainError> {
        self.require(self.status.is_open(), action)
    }

    fn require(&self, allowed: bool, action: &'static str) -> Result<(), DomainError> {
        if allowed {
            Ok(())
        } else {
            Err(DomainError::transition(
                format!("run {}", self.provenance.run_id),
                self.status.as_str(),
                action,
            ))
        }
    }

    /// Only the task's assignee works it.
    fn require_assignee(&self, i: usize, actor: &Actor) -> Result<(), DomainError> {
        actor.same_team(self.team_id)?;
        let task = &self.tasks[i];
        if actor.id != task.assignee {
            return Err(DomainError::NotAssignee {
                task: task.id,
                assignee: task.assignee,
            });
        }
        Ok(())
    }

    fn require_status(
        &self,
        i: usize,
        allowed: &[TaskStatus],
        action: &'static str,
    ) -> Result<(), DomainError> {
        let task = &self.tasks[i];
        if allowed.contains(&task.status) {
            Ok(())
        } else {
            Err(DomainError::transition(
                format!("task {}", task.id),
                task.status,
                action,
            ))
        }
    }

    fn set_status(&mut self, i: usize, status: TaskStatus, now: DateTime<Utc>) {
        self.tasks[i].status = status;
        self.tasks[i].updated_at = now;
    }
}

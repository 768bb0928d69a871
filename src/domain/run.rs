//! A procedure run: the initiative it materialised, its tasks, and the rules that move them.
//!
//! Readiness: a task is *ready* when every task it depends on is `approved`; only a ready
//! `pending` task can be started, and `task.ready` is published when a task becomes ready.
//!
//! The run's status is derived, never set by hand (except by `run.cancel`):
//! - `started` while any task is not terminal (terminal = `approved` or `canceled`);
//! - once every task is terminal: `completed` when every task that was not replaced is
//!   `approved`, else `failed` (some work was canceled without a replacement);
//! - `canceled` when System3 cancels the run: its open tasks are canceled with it.
//!
//! Canceling a task cancels, transitively, the tasks that depend on it (they could never become
//! ready); replacing a task points its dependents at the replacement instead.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::DomainError;
use super::event::{Event, EventData, EventKind, InitiativeView, Provenance, RunView, TaskView};
use super::ids::*;
use super::procedure::{ApprovedProcedure, Impact, RiskLevel};
use super::system::{Actor, SystemKind};
use super::template::Templates;

/// Tasks one run may hold, replacements included: a template's tasks and as many again. Every
/// run view, review context and initiative event lists them, so a System3 that keeps replacing
/// tasks meets a limit instead of growing them without end.
pub const MAX_RUN_TASKS: usize = 2 * super::template::MAX_TEMPLATES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    InProgress,
    Blocked,
    Completed,
    Approved,
    Rejected,
    Canceled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Pending,
        TaskStatus::InProgress,
        TaskStatus::Blocked,
        TaskStatus::Completed,
        TaskStatus::Approved,
        TaskStatus::Rejected,
        TaskStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Completed => "completed",
            TaskStatus::Approved => "approved",
            TaskStatus::Rejected => "rejected",
            TaskStatus::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Approved | TaskStatus::Canceled)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Started,
    Completed,
    Failed,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Started,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Started => "started",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InitiativeStatus {
    Pending,
    InProgress,
    Completed,
    Canceled,
}

impl InitiativeStatus {
    pub const ALL: [InitiativeStatus; 4] = [
        InitiativeStatus::Pending,
        InitiativeStatus::InProgress,
        InitiativeStatus::Completed,
        InitiativeStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InitiativeStatus::Pending => "pending",
            InitiativeStatus::InProgress => "in_progress",
            InitiativeStatus::Completed => "completed",
            InitiativeStatus::Canceled => "canceled",
        }
    }
}

/// System3's judgement of a completed task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub provenance: Provenance,
    pub team_id: TeamId,
    pub status: RunStatus,
    pub started_by: SystemId,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub procedure: RunProcedure,
    pub initiative: Initiative,
    /// In creation order (position order at execute, replacements appended).
    pub tasks: Vec<Task>,
    pub reviewed: bool,
}

/// Ids minted by the caller for a new run.
#[derive(Debug, Clone)]
pub struct NewRunIds {
    pub run: RunId,
    pub initiative: InitiativeId,
    /// One per template, in position order.
    pub tasks: Vec<TaskId>,
}

/// Chooses the system that works each task: the template's default assignee type (System1 when
/// absent); among the team's systems of that type, those having every required skill (all of
/// them when none has); among those, the one with the fewest tasks of this run so far, then by
/// name. Deterministic, so a preview shows exactly who an execution would pick.
///
/// Returns one assignee per template, in template order.
pub fn assign(
    templates: &Templates,
    team: &[Actor],
) -> Result<Vec<(SystemId, SystemKind)>, DomainError> {
    let mut load: BTreeMap<SystemId, usize> = BTreeMap::new();
    let mut chosen = Vec::with_capacity(templates.len());
    for template in templates.as_slice() {
        let kind = template
            .default_assignee_type
            .unwrap_or(SystemKind::System1);
        let of_kind: Vec<&Actor> = team.iter().filter(|s| s.kind == kind).collect();
        let skilled: Vec<&Actor> = of_kind
            .iter()
            .copied()
            .filter(|s| {
                template
                    .required_skills
                    .iter()
                    .all(|r| s.skills.contains(r))
            })
            .collect();
        let pool = if skilled.is_empty() { of_kind } else { skilled };
        let pick = pool
            .into_iter()
            .min_by(|a, b| {
                let la = load.get(&a.id).copied().unwrap_or(0);
                let lb = load.get(&b.id).copied().unwrap_or(0);
                la.cmp(&lb).then_with(|| a.name.cmp(&b.name))
            })
            .ok_or(DomainError::NoAssignee {
                kind,
                position: template.position,
            })?;
        *load.entry(pick.id).or_insert(0) += 1;
        chosen.push((pick.id, pick.kind));
    }
    Ok(chosen)
}

impl Execution {
    /// System3 executes the approved version: one initiative, one task per template, the
    /// dependencies carried over as task ids. Returns the run and its events, in the order a
    /// listener should see them.
    pub fn materialise(
        approved: ApprovedProcedure<'_>,
        templates: &Templates,
        team: &[Actor],
        ids: NewRunIds,
        strategy_id: Option<Uuid>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(Execution, Vec<Event>), DomainError> {
        let procedure = approved.procedure();
        actor.authorise(SystemKind::System3, procedure.team_id)?;
        assert_eq!(ids.tasks.len(), templates.len(), "one task id per template");
        let task_of: BTreeMap<u32, TaskId> = templates
            .as_slice()
            .iter()
            .zip(&ids.tasks)
            .map(|(t, id)| (t.position, *id))
            .collect();
        let assignees = assign(templates, team)?;
        let mut tasks = Vec::with_capacity(templates.len());
        for ((template, id), (assignee, assignee_type)) in
            templates.as_slice().iter().zip(&ids.tasks).zip(assignees)
        {
            tasks.push(Task {
                id: *id,
                position: template.position,
                name: template.name.clone(),
                content: template.description.clone(),
                status: TaskStatus::Pending,
                ready: template.depends_on.is_empty(),
                assignee,
                assignee_type,
                depends_on: template.depends_on.iter().map(|p| task_of[p]).collect(),
                default_assignee_type: template.default_assignee_type,
                required_skills: template.required_skills.clone(),
                result: None,
                reasoning: None,
                review_verdict: None,
                review_reasoning: None,
                replaces: None,
                follow_up: None,
                created_at: now,
                updated_at: now,
            });
        }
        let run = Execution {
            provenance: Provenance {
                run_id: ids.run,
                initiative_id: ids.initiative,
                procedure_id: procedure.id,
                series_id: procedure.series_id,
                procedure_version: procedure.version,
            },
            team_id: procedure.team_id,
            status: RunStatus::Started,
            started_by: actor.id,
            started_at: now,
            completed_at: None,
            reason: None,
            procedure: RunProcedure {
                risk_level: procedure.meta.risk_level,
                impact: procedure.meta.impact,
                rollback_plan: procedure.meta.rollback_plan.clone(),
            },
            initiative: Initiative {
                id: ids.initiative,
                strategy_id,
                status: InitiativeStatus::Pending,
                name: procedure.meta.name.clone(),
                description: procedure.meta.description.clone(),
                result: None,
            },
            tasks,
            reviewed: false,
        };
        let mut events = vec![
            run.run_event(EventKind::RunStarted),
            run.initiative_event(EventKind::InitiativeCreated),
        ];
        events.extend(
            run.tasks
                .iter()
                .map(|t| run.task_event(EventKind::TaskCreated, t)),
        );
        events.extend(
            run.tasks
                .iter()
                .filter(|t| t.ready)
                .map(|t| run.task_event(EventKind::TaskReady, t)),
        );
        Ok((run, events))
    }

    fn index(&self, id: TaskId) -> Result<usize, DomainError> {
        self.tasks
            .iter()
            .position(|t| t.id == id)
            .ok_or_else(|| DomainError::invalid("task_id", "not a task of this run"))
    }

    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    fn require_open(&self, action: &'static str) -> Result<(), DomainError> {
        if self.status == RunStatus::Started {
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

    /// The assignee starts a ready pending task; the initiative goes in progress with it.
    pub fn start_task(
        &mut self,
        id: TaskId,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let i = self.index(id)?;
        self.require_assignee(i, actor)?;
        self.require_open("start a task")?;
        self.require_status(i, &[TaskStatus::Pending], "start")?;
        if !self.tasks[i].ready {
            let waiting_on = self.tasks[i]
                .depends_on
                .iter()
                .copied()
                .filter(|d| {
                    self.task(*d)
                        .is_some_and(|t| t.status != TaskStatus::Approved)
                })
                .collect();
            return Err(DomainError::NotReady {
                task: id,
                waiting_on,
            });
        }
        self.set_status(i, TaskStatus::InProgress, now);
        let mut events = vec![self.task_event(EventKind::TaskStarted, &self.tasks[i])];
        if self.initiative.status == InitiativeStatus::Pending {
            self.initiative.status = InitiativeStatus::InProgress;
            events.push(self.initiative_event(EventKind::InitiativeStarted));
        }
        Ok(events)
    }

    pub fn complete_task(
        &mut self,
        id: TaskId,
        result: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let i = self.index(id)?;
        self.require_assignee(i, actor)?;
        self.require_open("complete a task")?;
        self.require_status(i, &[TaskStatus::InProgress], "complete")?;
        self.set_status(i, TaskStatus::Completed, now);
        self.tasks[i].result = Some(result);
        Ok(vec![
            self.task_event(EventKind::TaskCompleted, &self.tasks[i]),
        ])
    }

    pub fn block_task(
        &mut self,
        id: TaskId,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let i = self.index(id)?;
        self.require_assignee(i, actor)?;
        self.require_open("block a task")?;
        self.require_status(i, &[TaskStatus::InProgress], "block")?;
        self.set_status(i, TaskStatus::Blocked, now);
        self.tasks[i].reasoning = Some(reason);
        Ok(vec![
            self.task_event(EventKind::TaskBlocked, &self.tasks[i]),
        ])
    }

    /// The assignee (its blocker cleared) or System3 (having resolved it) puts a blocked task
    /// back to pending.
    pub fn unblock_task(
        &mut self,
        id: TaskId,
        note: Option<String>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let i = self.index(id)?;
        if actor.kind == SystemKind::System3 {
            actor.same_team(self.team_id)?;
        } else {
            self.require_assignee(i, actor)?;
        }
        self.require_open("unblock a task")?;
        self.require_status(i, &[TaskStatus::Blocked], "unblock")?;
        self.set_status(i, TaskStatus::Pending, now);
        if note.is_some() {
            self.tasks[i].reasoning = note;
        }
        Ok(vec![
            self.task_event(EventKind::TaskUnblocked, &self.tasks[i]),
        ])
    }

    /// System3 judges a completed task. Approval may make dependents ready and end the run.
    pub fn review_task(
        &mut self,
        id: TaskId,
        verdict: Verdict,
        reasoning: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        actor.authorise(SystemKind::System3, self.team_id)?;
        let i = self.index(id)?;
        self.require_open("review a task")?;
        self.require_status(i, &[TaskStatus::Completed], "review")?;
        let status = match verdict {
            Verdict::Approve => TaskStatus::Approved,
            Verdict::Reject => TaskStatus::Rejected,
        };
        self.set_status(i, status, now);
        self.tasks[i].review_verdict = Some(verdict);
        self.tasks[i].review_reasoning = Some(reasoning);
        let kind = match verdict {
            Verdict::Approve => EventKind::TaskApproved,
            Verdict::Reject => EventKind::TaskRejected,
        };
        let mut events = vec![self.task_event(kind, &self.tasks[i])];
        events.extend(self.refresh_readiness(now));
        events.extend(self.settle(now));
        Ok(events)
    }

    /// System3 cancels a task that is not in progress, with the tasks that depend on it.
    pub fn cancel_task(
        &mut self,
        id: TaskId,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        actor.authorise(SystemKind::System3, self.team_id)?;
        let i = self.index(id)?;
        self.require_open("cancel a task")?;
        self.require_status(
            i,
            &[
                TaskStatus::Pending,
                TaskStatus::Blocked,
                TaskStatus::Rejected,
            ],
            "cancel",
        )?;
        let mut doomed = BTreeSet::from([id]);
        // Dependents of a canceled task can never become ready: cancel them too. They are all
        // pending, because a task only starts once its dependencies are approved.
        loop {
            let more: Vec<TaskId> = self
                .tasks
                .iter()
                .filter(|t| !t.status.is_terminal() && !doomed.contains(&t.id))
                .filter(|t| t.depends_on.iter().any(|d| doomed.contains(d)))
                .map(|t| t.id)
                .collect();
            if more.is_empty() {
                break;
            }
            doomed.extend(more);
        }
        let mut events = Vec::new();
        for j in 0..self.tasks.len() {
            if doomed.contains(&self.tasks[j].id) {
                let why = if self.tasks[j].id == id {
                    reason.clone()
                } else {
                    format!("depends on canceled task {id}: {reason}")
                };
                self.set_status(j, TaskStatus::Canceled, now);
                self.tasks[j].ready = false;
                self.tasks[j].reasoning = Some(why);
                events.push(self.task_event(EventKind::TaskCanceled, &self.tasks[j]));
            }
        }
        events.extend(self.settle(now));
        Ok(events)
    }

    /// System3 replaces a rejected or blocked task: the original is canceled and points to a
    /// new pending task (same position, assignee and dependencies, optionally new name and
    /// content), and every dependent of the original now waits for the replacement.
    pub fn replace_task(
        &mut self,
        id: TaskId,
        new_id: TaskId,
        change: TaskChange,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        actor.authorise(SystemKind::System3, self.team_id)?;
        let i = self.index(id)?;
        self.require_open("replace a task")?;
        self.require_status(i, &[TaskStatus::Rejected, TaskStatus::Blocked], "replace")?;
        if self.tasks.len() >= MAX_RUN_TASKS {
            return Err(DomainError::RunFull {
                limit: MAX_RUN_TASKS,
            });
        }
        let old = self.tasks[i].clone();
        self.set_status(i, TaskStatus::Canceled, now);
        self.tasks[i].follow_up = Some(new_id);
        self.tasks[i].reasoning = Some(change.reason.clone());
        for t in &mut self.tasks {
            for d in &mut t.depends_on {
                if *d == id {
                    *d = new_id;
                }
            }
        }
        let mut replacement = Task {
            id: new_id,
            name: change.name.unwrap_or(old.name),
            content: change.content.unwrap_or(old.content),
            status: TaskStatus::Pending,
            ready: false,
            result: None,
            reasoning: Some(change.reason),
            review_verdict: None,
            review_reasoning: None,
            replaces: Some(id),
            follow_up: None,
            created_at: now,
            updated_at: now,
            ..old
        };
        replacement.ready = self.dependencies_approved(&replacement);
        self.tasks.push(replacement);
        let new = self.tasks.len() - 1;
        let mut events = vec![
            self.task_event(EventKind::TaskCanceled, &self.tasks[i]),
            self.task_event(EventKind::TaskCreated, &self.tasks[new]),
        ];
        if self.tasks[new].ready {
            events.push(self.task_event(EventKind::TaskReady, &self.tasks[new]));
        }
        Ok(events)
    }

    /// System3 stops the whole run: every open task is canceled, the initiative too.
    pub fn cancel(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        actor.authorise(SystemKind::System3, self.team_id)?;
        self.require_open("cancel")?;
        let mut events = Vec::new();
        for j in 0..self.tasks.len() {
            if !self.tasks[j].status.is_terminal() {
                self.set_status(j, TaskStatus::Canceled, now);
                self.tasks[j].ready = false;
                self.tasks[j].reasoning = Some(format!("run canceled: {reason}"));
                events.push(self.task_event(EventKind::TaskCanceled, &self.tasks[j]));
            }
        }
        self.status = RunStatus::Canceled;
        self.completed_at = Some(now);
        self.reason = Some(reason);
        self.initiative.status = InitiativeStatus::Canceled;
        self.initiative.result = Some(self.summary());
        events.push(self.initiative_event(EventKind::InitiativeCanceled));
        events.push(self.run_event(EventKind::RunCanceled));
        Ok(events)
    }

    fn dependencies_approved(&self, task: &Task) -> bool {
        task.depends_on.iter().all(|d| {
            self.task(*d)
                .is_some_and(|t| t.status == TaskStatus::Approved)
        })
    }

    /// Marks pending tasks whose dependencies are now all approved, one event each.
    fn refresh_readiness(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        let newly: Vec<usize> = (0..self.tasks.len())
            .filter(|&j| {
                let t = &self.tasks[j];
                t.status == TaskStatus::Pending && !t.ready && self.dependencies_approved(t)
            })
            .collect();
        newly
            .into_iter()
            .map(|j| {
                self.tasks[j].ready = true;
                self.tasks[j].updated_at = now;
                self.task_event(EventKind::TaskReady, &self.tasks[j])
            })
            .collect()
    }

    /// Applies the derived-status rule (module doc) once every task is terminal.
    fn settle(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        if self.status != RunStatus::Started || !self.tasks.iter().all(|t| t.status.is_terminal()) {
            return Vec::new();
        }
        let failed = self
            .tasks
            .iter()
            .any(|t| t.status == TaskStatus::Canceled && t.follow_up.is_none());
        let (status, kind) = if failed {
            (RunStatus::Failed, EventKind::RunFailed)
        } else {
            (RunStatus::Completed, EventKind::RunCompleted)
        };
        self.status = status;
        self.completed_at = Some(now);
        self.initiative.status = InitiativeStatus::Completed;
        self.initiative.result = Some(self.summary());
        vec![
            self.initiative_event(EventKind::InitiativeCompleted),
            self.run_event(kind),
        ]
    }

    pub fn task_counts(&self) -> BTreeMap<Cow<'static, str>, usize> {
        let mut counts = BTreeMap::new();
        for t in &self.tasks {
            *counts.entry(Cow::Borrowed(t.status.as_str())).or_insert(0) += 1;
        }
        counts
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .task_counts()
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        format!("run {}: {}", self.status.as_str(), parts.join(", "))
    }

    pub fn run_view(&self) -> RunView {
        RunView {
            provenance: self.provenance.clone(),
            status: self.status.as_str().into(),
            started_by_system_id: self.started_by,
            started_at: self.started_at,
            completed_at: self.completed_at,
            reason: self.reason.clone(),
            task_counts: self.task_counts(),
        }
    }

    pub fn task_view(&self, t: &Task) -> TaskView {
        TaskView {
            task_id: t.id,
            provenance: self.provenance.clone(),
            position: t.position,
            name: t.name.clone(),
            content: t.content.clone(),
            status: t.status.as_str().into(),
            ready: t.ready,
            assignee_system_id: t.assignee,
            assignee_type: t.assignee_type,
            depends_on: t.depends_on.clone(),
            default_assignee_type: t.default_assignee_type,
            required_skills: t.required_skills.clone(),
            result: t.result.clone(),
            reasoning: t.reasoning.clone(),
            review_reasoning: t.review_reasoning.clone(),
            replaces_task_id: t.replaces,
            follow_up_task_id: t.follow_up,
        }
    }

    fn run_event(&self, kind: EventKind) -> Event {
        Event::new(
            kind,
            self.team_id,
            EventData::Run(Box::new(self.run_view())),
        )
    }

    fn task_event(&self, kind: EventKind, t: &Task) -> Event {
        Event::new(
            kind,
            self.team_id,
            EventData::Task(Box::new(self.task_view(t))),
        )
    }

    fn initiative_event(&self, kind: EventKind) -> Event {
        let view = self.initiative_view();
        Event::new(kind, self.team_id, EventData::Initiative(Box::new(view)))
    }

    pub fn initiative_view(&self) -> InitiativeView {
        InitiativeView {
            provenance: self.provenance.clone(),
            team_id: self.team_id,
            strategy_id: self.initiative.strategy_id,
            status: self.initiative.status.as_str().into(),
            name: self.initiative.name.clone(),
            description: self.initiative.description.clone(),
            result: self.initiative.result.clone(),
            risk_level: self.procedure.risk_level,
            impact: self.procedure.impact,
            rollback_plan: self.procedure.rollback_plan.clone(),
            task_ids: self.tasks.iter().map(|t| t.id).collect(),
        }
    }
}

/// What System3 may change when it replaces a task.
#[derive(Debug, Clone, Default)]
pub struct TaskChange {
    pub reason: String,
    pub name: Option<String>,
    pub content: Option<String>,
}

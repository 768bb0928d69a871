//! The rules that move a run's tasks, and through them the run and its initiative.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{
    ApprovalDecision, Execution, InitiativeStatus, MAX_RUN_TASKS, RunStatus, Task, TaskChange,
    TaskStatus, Verdict,
};
use crate::domain::error::DomainError;
use crate::domain::event::{Event, EventKind};
use crate::domain::ids::*;
use crate::domain::system::{Actor, SystemKind};

impl Execution {
    /// The assignee starts a ready pending task; the initiative goes in progress with it.
    pub fn start_task(
        &mut self,
        id: TaskId,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let i = self.index(id)?;
        self.require_assignee(i, actor)?;
        self.require_started("start a task (a paused run's tasks start once System3 resumes it)")?;
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
        self.require_working("complete a task")?;
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
        self.require_working("block a task")?;
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
        self.require_working("unblock a task")?;
        self.require_status(i, &[TaskStatus::Blocked], "unblock")?;
        self.set_status(i, TaskStatus::Pending, now);
        // A pause in between took its readiness away; it is ready again once the run is started.
        self.tasks[i].ready =
            self.status == RunStatus::Started && self.dependencies_approved(&self.tasks[i]);
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
        self.require_working("review a task")?;
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
        self.require_working("cancel a task")?;
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
        self.require_working("replace a task")?;
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
        replacement.ready =
            self.status == RunStatus::Started && self.dependencies_approved(&replacement);
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

    /// System3 stops the whole run, started, paused or awaiting approval: every open task is
    /// canceled, the initiative too.
    pub fn cancel(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        actor.authorise(SystemKind::System3, self.team_id)?;
        self.require_open("cancel")?;
        Ok(self.end_canceled("run canceled", reason, EventKind::RunCanceled, now))
    }

    /// System3 pauses a started run: nothing is ready or starts until it resumes it. Ready
    /// tasks are ready no more, so that an assignee waiting for ready work is not offered
    /// what it cannot start; resuming makes them ready again.
    pub fn pause(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        actor.authorise(SystemKind::System3, self.team_id)?;
        self.require(self.status == RunStatus::Started, "pause")?;
        self.status = RunStatus::Paused;
        self.reason = Some(reason);
        for task in self.tasks.iter_mut().filter(|t| t.ready) {
            task.ready = false;
            task.updated_at = now;
        }
        Ok(vec![self.run_event(EventKind::RunPaused)])
    }

    /// System3 resumes a paused run: the tasks that became ready meanwhile are made ready.
    pub fn resume(
        &mut self,
        note: Option<String>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        actor.authorise(SystemKind::System3, self.team_id)?;
        self.require(self.status == RunStatus::Paused, "resume")?;
        self.status = RunStatus::Started;
        self.reason = note;
        let mut events = vec![self.run_event(EventKind::RunResumed)];
        events.extend(self.refresh_readiness(now));
        Ok(events)
    }

    /// System5 lets a run held for approval start: its first tasks become ready. The approver
    /// is never the system that executed the run: executes are System3's, approvals System5's.
    pub fn approve(
        &mut self,
        note: Option<String>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        self.decide(Verdict::Approve, note, actor, now)?;
        self.status = RunStatus::Started;
        let mut events = vec![self.run_event(EventKind::RunApproved)];
        events.extend(self.refresh_readiness(now));
        Ok(events)
    }

    /// System5 refuses a run held for approval: it ends canceled, with the reason.
    pub fn reject(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        self.decide(Verdict::Reject, Some(reason.clone()), actor, now)?;
        Ok(self.end_canceled("run rejected", reason, EventKind::RunRejected, now))
    }

    fn decide(
        &mut self,
        verdict: Verdict,
        note: Option<String>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        actor.authorise(SystemKind::System5, self.team_id)?;
        self.require(self.status == RunStatus::AwaitingApproval, verdict.as_str())?;
        if let Some(approval) = &mut self.approval {
            approval.decision = Some(ApprovalDecision {
                verdict,
                by: actor.id,
                at: now,
                note,
            });
        }
        Ok(())
    }

    /// Cancels every open task and ends the run and its initiative canceled.
    fn end_canceled(
        &mut self,
        why: &str,
        reason: String,
        kind: EventKind,
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for j in 0..self.tasks.len() {
            if !self.tasks[j].status.is_terminal() {
                self.set_status(j, TaskStatus::Canceled, now);
                self.tasks[j].ready = false;
                self.tasks[j].reasoning = Some(format!("{why}: {reason}"));
                events.push(self.task_event(EventKind::TaskCanceled, &self.tasks[j]));
            }
        }
        self.status = RunStatus::Canceled;
        self.completed_at = Some(now);
        self.reason = Some(reason);
        self.initiative.status = InitiativeStatus::Canceled;
        self.initiative.result = Some(self.summary());
        events.push(self.initiative_event(EventKind::InitiativeCanceled));
        events.push(self.run_event(kind));
        events
    }

    fn dependencies_approved(&self, task: &Task) -> bool {
        task.depends_on.iter().all(|d| {
            self.task(*d)
                .is_some_and(|t| t.status == TaskStatus::Approved)
        })
    }

    /// Marks pending tasks whose dependencies are now all approved, one event each; none
    /// while the run is not started.
    fn refresh_readiness(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        if self.status != RunStatus::Started {
            return Vec::new();
        }
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
        let working = matches!(self.status, RunStatus::Started | RunStatus::Paused);
        if !working || !self.tasks.iter().all(|t| t.status.is_terminal()) {
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
        self.reason = None;
        self.initiative.status = InitiativeStatus::Completed;
        self.initiative.result = Some(self.summary());
        vec![
            self.initiative_event(EventKind::InitiativeCompleted),
            self.run_event(kind),
        ]
    }
}

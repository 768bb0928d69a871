//! What a run shows of itself: the views its events carry and queries answer.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{Execution, RunApproval, Task, TaskStatus};
use crate::domain::event::{
    ApprovalView, Event, EventData, EventKind, InitiativeView, Provenance, RunView, TaskView,
};

/// A task as events and queries show it, with the provenance of its run.
pub fn task_view(provenance: &Provenance, t: &Task) -> TaskView {
    TaskView {
        task_id: t.id,
        provenance: provenance.clone(),
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

/// How many tasks have each status, as a run's view counts them.
pub fn task_counts(
    statuses: impl IntoIterator<Item = TaskStatus>,
) -> BTreeMap<Cow<'static, str>, usize> {
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(Cow::Borrowed(status.as_str())).or_insert(0) += 1;
    }
    counts
}

impl RunApproval {
    pub fn view(&self) -> ApprovalView {
        let decision = self.decision.as_ref();
        ApprovalView {
            rule: self.rule.clone(),
            verdict: decision.map(|d| d.verdict),
            decided_by_system_id: decision.map(|d| d.by),
            decided_at: decision.map(|d| d.at),
            note: decision.and_then(|d| d.note.clone()),
        }
    }
}

impl Execution {
    pub fn task_counts(&self) -> BTreeMap<Cow<'static, str>, usize> {
        task_counts(self.tasks.iter().map(|t| t.status))
    }

    pub(super) fn summary(&self) -> String {
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
            approval: self.approval.as_ref().map(RunApproval::view),
            task_counts: self.task_counts(),
        }
    }

    pub fn task_view(&self, t: &Task) -> TaskView {
        task_view(&self.provenance, t)
    }

    pub(super) fn run_event(&self, kind: EventKind) -> Event {
        Event::new(
            kind,
            self.team_id,
            EventData::Run(Box::new(self.run_view())),
        )
    }

    pub(super) fn task_event(&self, kind: EventKind, t: &Task) -> Event {
        Event::new(
            kind,
            self.team_id,
            EventData::Task(Box::new(self.task_view(t))),
        )
    }

    pub(super) fn initiative_event(&self, kind: EventKind) -> Event {
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

//! A run made from an approved version: who works each task, and the run with its first events.

use std::collections::BTreeMap;

use super::{
    Execution, Initiative, InitiativeStatus, RunApproval, RunProcedure, RunStatus, RunTerms, Task,
    TaskStatus,
};
use crate::domain::error::DomainError;
use crate::domain::event::{Event, EventKind, Provenance};
use crate::domain::ids::*;
use crate::domain::procedure::ApprovedProcedure;
use crate::domain::system::{Actor, SystemKind};
use crate::domain::template::Templates;
use chrono::{DateTime, Utc};

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
    /// dependencies carried over as task ids. Held for approval (`terms.approval_rule`), the
    /// run awaits System5 and no task is ready yet. Returns the run and its events, in the
    /// order a listener should see them.
    pub fn materialise(
        approved: ApprovedProcedure<'_>,
        templates: &Templates,
        team: &[Actor],
        ids: NewRunIds,
        terms: RunTerms,
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
        let held = terms.approval_rule.is_some();
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
                ready: !held && template.depends_on.is_empty(),
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
                procedure_digest: procedure.digest.to_string(),
            },
            team_id: procedure.team_id,
            status: if held {
                RunStatus::AwaitingApproval
            } else {
                RunStatus::Started
            },
            started_by: actor.id,
            started_at: now,
            completed_at: None,
            reason: None,
            approval: terms.approval_rule.map(|rule| RunApproval {
                rule,
                decision: None,
            }),
            procedure: RunProcedure {
                risk_level: procedure.meta.risk_level,
                impact: procedure.meta.impact,
                rollback_plan: procedure.meta.rollback_plan.clone(),
            },
            initiative: Initiative {
                id: ids.initiative,
                strategy_id: terms.strategy_id,
                status: InitiativeStatus::Pending,
                name: procedure.meta.name.clone(),
                description: procedure.meta.description.clone(),
                result: None,
            },
            tasks,
            reviewed: false,
        };
        let opened = if held {
            EventKind::RunAwaitingApproval
        } else {
            EventKind::RunStarted
        };
        let mut events = vec![
            run.run_event(opened),
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
}

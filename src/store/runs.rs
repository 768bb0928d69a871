//! Runs with their initiative and tasks, loaded and saved as one aggregate.

use std::collections::{BTreeMap, HashMap};

use entity::{initiative, procedure, procedure_run, procedure_task, run_review, task};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::mapping::{from_json, read, read_opt, to_json};
use crate::domain::event::{Provenance, RunView};
use crate::domain::ids::*;
use crate::domain::run::*;

fn task_row(
    team: TeamId,
    initiative: InitiativeId,
    seq: usize,
    t: &Task,
    template: Option<Uuid>,
) -> task::ActiveModel {
    task::ActiveModel {
        id: Set(t.id.0),
        team_id: Set(team.0),
        initiative_id: Set(initiative.0),
        procedure_task_id: Set(template),
        seq: Set(seq as i32),
        position: Set(t.position as i32),
        status: Set(t.status.into()),
        ready: Set(t.ready),
        assignee_system_id: Set(t.assignee.0),
        assignee_type: Set(t.assignee_type.into()),
        name: Set(t.name.clone()),
        content: Set(t.content.clone()),
        result: Set(t.result.clone()),
        reasoning: Set(t.reasoning.clone()),
        review_verdict: Set(t.review_verdict.map(Into::into)),
        review_reasoning: Set(t.review_reasoning.clone()),
        depends_on: Set(to_json(&t.depends_on)),
        default_assignee_system_type: Set(t.default_assignee_type.map(Into::into)),
        required_skills: Set(to_json(&t.required_skills)),
        replaces_task_id: Set(t.replaces.map(|r| r.0)),
        follow_up_task_id: Set(t.follow_up.map(|r| r.0)),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    }
}

fn run_row(e: &Execution) -> procedure_run::ActiveModel {
    let decision = e.approval.as_ref().and_then(|a| a.decision.as_ref());
    procedure_run::ActiveModel {
        id: Set(e.provenance.run_id.0),
        procedure_id: Set(e.provenance.procedure_id.0),
        series_id: Set(e.provenance.series_id.0),
        procedure_version: Set(e.provenance.procedure_version.0 as i32),
        procedure_digest: Set(e.provenance.procedure_digest.clone()),
        team_id: Set(e.team_id.0),
        initiative_id: Set(e.initiative.id.0),
        status: Set(e.status.into()),
        started_by_system_id: Set(e.started_by.0),
        started_at: Set(e.started_at),
        completed_at: Set(e.completed_at),
        reason: Set(e.reason.clone()),
        approval_rule: Set(e.approval.as_ref().map(|a| a.rule.clone())),
        approval_verdict: Set(decision.map(|d| d.verdict.into())),
        approval_by_system_id: Set(decision.map(|d| d.by.0)),
        approval_at: Set(decision.map(|d| d.at)),
        approval_note: Set(decision.and_then(|d| d.note.clone())),
    }
}

fn initiative_row(
    e: &Execution,
    updated_at: chrono::DateTime<chrono::Utc>,
) -> initiative::ActiveModel {
    initiative::ActiveModel {
        id: Set(e.initiative.id.0),
        team_id: Set(e.team_id.0),
        strategy_id: Set(e.initiative.strategy_id),
        status: Set(e.initiative.status.into()),
        name: Set(e.initiative.name.clone()),
        description: Set(e.initiative.description.clone()),
        result: Set(e.initiative.result.clone()),
        procedure_id: Set(Some(e.provenance.procedure_id.0)),
        procedure_version: Set(Some(e.provenance.procedure_version.0 as i32)),
        procedure_digest: Set(e.provenance.procedure_digest.clone()),
        run_id: Set(Some(e.provenance.run_id.0)),
        created_at: Set(e.started_at),
        updated_at: Set(updated_at),
    }
}

/// New runs (run row, initiative, tasks) gathered over a group and written together at its
/// end: one statement per table on Postgres whatever the number of runs, power-of-two pieces
/// on SQLite, all in the group's [`super::writes::Writes`].
#[derive(Debug, Default)]
pub struct NewRuns {
    runs: Vec<procedure_run::ActiveModel>,
    initiatives: Vec<initiative::ActiveModel>,
    tasks: Vec<task::ActiveModel>,
}

impl NewRuns {
    pub fn add(&mut self, e: &Execution, template_ids: &BTreeMap<u32, Uuid>) {
        self.runs.push(run_row(e));
        self.initiatives.push(initiative_row(e, e.started_at));
        self.tasks
            .extend(e.tasks.iter().enumerate().map(|(seq, t)| {
                task_row(
                    e.team_id,
                    e.initiative.id,
                    seq,
                    t,
                    template_ids.get(&t.position).copied(),
                )
            }));
    }

    /// Runs first: initiatives refer to them, and tasks to initiatives.
    pub fn write_into(self, writes: &mut super::writes::Writes) -> Result<(), super::StoreError> {
        writes.insert(self.runs, None)?;
        writes.insert(self.initiatives, None)?;
        writes.insert(self.tasks, None)
    }
}

/// How many runs of `series` have not ended, and when those since `since` started.
pub async fn activity(
    db: &impl ConnectionTrait,
    series: SeriesId,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<(u32, Vec<chrono::DateTime<chrono::Utc>>), DbErr> {
    let open = procedure_run::Entity::find()
        .filter(procedure_run::Column::SeriesId.eq(series.0))
        .filter(
            procedure_run::Column::Status.is_in(
                RunStatus::ALL
                    .iter()
                    .copied()
                    .filter(|s| s.is_open())
                    .map(RunStatus::as_str),
            ),
        )
        .count(db)
        .await?;
    let started = procedure_run::Entity::find()
        .select_only()
        .column(procedure_run::Column::StartedAt)
        .filter(procedure_run::Column::SeriesId.eq(series.0))
        .filter(procedure_run::Column::StartedAt.gt(since))
        .into_tuple::<chrono::DateTime<chrono::Utc>>()
        .all(db)
        .await?;
    Ok((open as u32, started))
}

pub async fn run_of_task(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<RunId>, DbErr> {
    let Some(t) = task::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    run_of_initiative(db, t.initiative_id).await
}

pub async fn run_of_initiative(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<RunId>, DbErr> {
    Ok(initiative::Entity::find_by_id(id)
        .one(db)
        .await?
        .and_then(|i| i.run_id)
        .map(RunId))
}

fn task_of(r: task::Model) -> Result<Task, DbErr> {
    Ok(Task {
        id: TaskId(r.id),
        position: r.position as u32,
        name: r.name,
        content: r.content,
        status: read("task.status", &r.status)?,
        ready: r.ready,
        assignee: SystemId(r.assignee_system_id),
        assignee_type: read("task.assignee_type", &r.assignee_type)?,
        depends_on: from_json("task.depends_on", r.depends_on)?,
        default_assignee_type: read_opt(
            "task.default_assignee_system_type",
            r.default_assignee_system_type.as_deref(),
        )?,
        required_skills: from_json("task.required_skills", r.required_skills)?,
        result: r.result,
        reasoning: r.reasoning,
        review_verdict: read_opt("task.review_verdict", r.review_verdict.as_deref())?,
        review_reasoning: r.review_reasoning,
        replaces: r.replaces_task_id.map(TaskId),
        follow_up: r.follow_up_task_id.map(TaskId),
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// Up to `limit` runs of `team` after `after`, in id (creation) order, by status and series,
/// as lists show them: two statements, the runs and their tasks' statuses, whatever the page.
pub async fn page(
    db: &impl ConnectionTrait,
    team: TeamId,
    status: Option<RunStatus>,
    series: Option<SeriesId>,
    after: Option<RunId>,
    limit: u64,
) -> Result<Vec<RunView>, DbErr> {
    use procedure_run::Column;
    let mut query = procedure_run::Entity::find().filter(Column::TeamId.eq(team.0));
    if let Some(status) = status {
        query = query.filter(Column::Status.eq(status.as_str()));
    }
    if let Some(series) = series {
        query = query.filter(Column::SeriesId.eq(series.0));
    }
    if let Some(after) = after {
        query = query.filter(Column::Id.gt(after.0));
    }
    let runs = query.order_by_asc(Column::Id).limit(limit).all(db).await?;
    let mut statuses: HashMap<Uuid, Vec<TaskStatus>> = HashMap::new();
    if !runs.is_empty() {
        let rows = task::Entity::find()
            .select_only()
            .column(task::Column::InitiativeId)
            .column(task::Column::Status)
            .filter(task::Column::InitiativeId.is_in(runs.iter().map(|r| r.initiative_id)))
            .into_tuple::<(Uuid, String)>()
            .all(db)
            .await?;
        for (initiative, status) in rows {
            statuses
                .entry(initiative)
                .or_default()
                .push(read("task.status", &status)?);
        }
    }
    runs.into_iter()
        .map(|run| {
            let statuses = statuses.remove(&run.initiative_id).unwrap_or_default();
            Ok(RunView {
                provenance: provenance_of(&run),
                status: read::<RunStatus>("procedure_run.status", &run.status)?
                    .as_str()
                    .into(),
                started_by_system_id: SystemId(run.started_by_system_id),
                started_at: run.started_at,
                completed_at: run.completed_at,
                approval: approval_of(&run)?.as_ref().map(RunApproval::view),
                reason: run.reason,
                task_counts: task_counts(statuses),
            })
        })
        .collect()
}

fn provenance_of(run: &procedure_run::Model) -> Provenance {
    Provenance {
        run_id: RunId(run.id),
        initiative_id: InitiativeId(run.initiative_id),
        procedure_id: ProcedureId(run.procedure_id),
        series_id: SeriesId(run.series_id),
        procedure_version: Version(run.procedure_version as u32),
        procedure_digest: run.procedure_digest.clone(),
    }
}

fn approval_of(run: &procedure_run::Model) -> Result<Option<RunApproval>, DbErr> {
    let verdict = read_opt(
        "procedure_run.approval_verdict",
        run.approval_verdict.as_deref(),
    )?;
    Ok(run.approval_rule.clone().map(|rule| RunApproval {
        rule,
        decision: match (verdict, run.approval_by_system_id, run.approval_at) {
            (Some(verdict), Some(by), Some(at)) => Some(ApprovalDecision {
                verdict,
                by: SystemId(by),
                at,
                note: run.approval_note.clone(),
            }),
            _ => None,
        },
    }))
}

/// Which of a team's tasks `task.list` answers.
#[derive(Debug, Clone)]
pub struct TaskFilter {
    pub team: TeamId,
    pub assignee: SystemId,
    pub status: Option<TaskStatus>,
    /// `true`: pending and ready; `false`: every other task.
    pub ready: Option<bool>,
}

/// Up to `limit` tasks the filter selects after `after`, in id (creation) order, each with the
/// provenance of its run.
pub async fn assigned_tasks(
    db: &impl ConnectionTrait,
    filter: &TaskFilter,
    after: Option<TaskId>,
    limit: u64,
) -> Result<Vec<(Provenance, Task)>, DbErr> {
    use task::Column;
    let mut query = task::Entity::find()
        .filter(Column::TeamId.eq(filter.team.0))
        .filter(Column::AssigneeSystemId.eq(filter.assignee.0));
    if let Some(after) = after {
        query = query.filter(Column::Id.gt(after.0));
    }
    let pending = TaskStatus::Pending.as_str();
    let statuses: Vec<&'static str> = match filter.status {
        Some(status) => vec![status.as_str()],
        None => TaskStatus::ALL.iter().map(|s| s.as_str()).collect(),
    }
    .into_iter()
    // Startable: pending and ready; `ready: false` is every other task.
    .filter(|s| filter.ready != Some(true) || *s == pending)
    .collect();
    let rows = super::by_status::page(
        db,
        query,
        Column::Status,
        &statuses,
        Column::Id,
        limit,
        |status, arm| match filter.ready {
            Some(ready) if status == pending => arm.filter(Column::Ready.eq(ready)),
            _ => arm,
        },
    )
    .await?;
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let initiatives: BTreeMap<Uuid, initiative::Model> = initiative::Entity::find()
        .filter(initiative::Column::Id.is_in(rows.iter().map(|r| r.initiative_id)))
        .all(db)
        .await?
        .into_iter()
        .map(|i| (i.id, i))
        .collect();
    let series: BTreeMap<Uuid, Uuid> = procedure_run::Entity::find()
        .filter(procedure_run::Column::InitiativeId.is_in(initiatives.keys().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.initiative_id, r.series_id))
        .collect();
    rows.into_iter()
        .map(|r| {
            let missing = |what: &str| DbErr::RecordNotFound(format!("{what} of task {}", r.id));
            let ini = initiatives
                .get(&r.initiative_id)
                .ok_or_else(|| missing("initiative"))?;
            let provenance = Provenance {
                run_id: RunId(ini.run_id.ok_or_else(|| missing("run"))?),
                initiative_id: InitiativeId(ini.id),
                procedure_id: ProcedureId(ini.procedure_id.ok_or_else(|| missing("procedure"))?),
                series_id: SeriesId(*series.get(&ini.id).ok_or_else(|| missing("series"))?),
                procedure_version: Version(
                    ini.procedure_version.ok_or_else(|| missing("version"))? as u32,
                ),
                procedure_digest: ini.procedure_digest.clone(),
            };
            Ok((provenance, task_of(r)?))
        })
        .collect()
}

/// Loads a run as one aggregate to decide on; its run row is locked for the transaction
/// (Postgres), so decisions on one run are serialised.
pub async fn load_for_update(
    db: &impl ConnectionTrait,
    run_id: RunId,
) -> Result<Option<Execution>, DbErr> {
    load_with(db, run_id, true).await
}

/// Loads a run to read it.
pub async fn load(db: &impl ConnectionTrait, run_id: RunId) -> Result<Option<Execution>, DbErr> {
    load_with(db, run_id, false).await
}

async fn load_with(
    db: &impl ConnectionTrait,
    run_id: RunId,
    for_update: bool,
) -> Result<Option<Execution>, DbErr> {
    let mut query = procedure_run::Entity::find_by_id(run_id.0);
    if for_update {
        query = query.lock_exclusive();
    }
    let Some(run) = query.one(db).await? else {
        return Ok(None);
    };
    let missing = |what: &str| DbErr::RecordNotFound(format!("{what} of run {}", run.id));
    let ini = initiative::Entity::find_by_id(run.initiative_id)
        .one(db)
        .await?
        .ok_or_else(|| missing("initiative"))?;
    let proc_row = procedure::Entity::find_by_id(run.procedure_id)
        .one(db)
        .await?
        .ok_or_else(|| missing("procedure"))?;
    let rows = task::Entity::find()
        .filter(task::Column::InitiativeId.eq(run.initiative_id))
        .order_by_asc(task::Column::Seq)
        .all(db)
        .await?;
    let tasks = rows
        .into_iter()
        .map(task_of)
        .collect::<Result<Vec<_>, DbErr>>()?;
    let reviewed = run_review::Entity::find()
        .filter(run_review::Column::RunId.eq(run.id))
        .count(db)
        .await?
        > 0;
    Ok(Some(Execution {
        provenance: provenance_of(&run),
        team_id: TeamId(run.team_id),
        status: read("procedure_run.status", &run.status)?,
        started_by: SystemId(run.started_by_system_id),
        started_at: run.started_at,
        completed_at: run.completed_at,
        approval: approval_of(&run)?,
        reason: run.reason,
        procedure: RunProcedure {
            risk_level: read("procedure.risk_level", &proc_row.risk_level)?,
            impact: read("procedure.impact", &proc_row.impact)?,
            rollback_plan: proc_row.rollback_plan,
        },
        initiative: Initiative {
            id: InitiativeId(ini.id),
            strategy_id: ini.strategy_id,
            status: read("initiative.status", &ini.status)?,
            name: ini.name,
            description: ini.description,
            result: ini.result,
        },
        tasks,
        reviewed,
    }))
}

/// Writes what a decision changed: the run and initiative rows when they differ, changed tasks,
/// and new tasks (replacements) with their template link.
pub async fn save(
    db: &impl ConnectionTrait,
    before: &Execution,
    after: &Execution,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    // Rows compared whole, so a field added to the run is saved without a list to extend.
    let run = run_row(after);
    if run != run_row(before) {
        run.reset_all().update(db).await?;
    }
    if before.initiative != after.initiative {
        let mut row = initiative_row(after, now).reset_all();
        // created_at never changes
        row.created_at = sea_orm::ActiveValue::NotSet;
        row.update(db).await?;
    }
    let old: BTreeMap<TaskId, &Task> = before.tasks.iter().map(|t| (t.id, t)).collect();
    for (seq, t) in after.tasks.iter().enumerate() {
        match old.get(&t.id) {
            Some(prev) if *prev == t => {}
            Some(_) => {
                let mut row =
                    task_row(after.team_id, after.initiative.id, seq, t, None).reset_all();
                row.procedure_task_id = sea_orm::ActiveValue::NotSet;
                row.created_at = sea_orm::ActiveValue::NotSet;
                row.update(db).await?;
            }
            None => {
                let template = procedure_task::Entity::find()
                    .filter(procedure_task::Column::ProcedureId.eq(after.provenance.procedure_id.0))
                    .filter(procedure_task::Column::Position.eq(t.position as i32))
                    .one(db)
                    .await?
                    .map(|r| r.id);
                task::Entity::insert(task_row(
                    after.team_id,
                    after.initiative.id,
                    seq,
                    t,
                    template,
                ))
                .exec_without_returning(db)
                .await?;
            }
        }
    }
    Ok(())
}

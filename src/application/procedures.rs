//! Procedure use cases: draft, revise, edit, discard, approve, reject, retire, execute.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::command::{Execute, SeriesCommand};
use super::{
    CommandError, Effect, GroupReads, ProcedureChanges, Rejection, UseCaseTxn, within_team,
};
use crate::domain::event::{Event, EventData, EventKind, ProcedureEvent, ProcedureView};
use crate::domain::ids::*;
use crate::domain::procedure::{MetaDraft, Procedure, ProcedureMeta, Series};
use crate::domain::run::{Execution, NewRunIds};
use crate::domain::system::{Actor, SystemKind};
use crate::domain::template::{TaskTemplate, TemplateDraft, Templates};
use crate::domain::text;
use crate::store;
use crate::store::procedures::SeriesLock;
use crate::wire::outcome::Accepted;

fn accepted(p: &Procedure) -> Accepted {
    Accepted {
        procedure_id: Some(p.id.0),
        series_id: Some(p.series_id.0),
        version: Some(p.version.0),
        status: Some(p.status().as_str().to_owned()),
        ..Default::default()
    }
}

fn data(p: &Procedure) -> ProcedureEvent {
    ProcedureEvent {
        procedure: ProcedureView::of(p),
        tasks: None,
        reason: None,
        based_on: None,
        superseded: None,
    }
}

fn emit(kind: EventKind, p: &Procedure, data: ProcedureEvent) -> Event {
    Event::new(kind, p.team_id, EventData::Procedure(Box::new(data)))
}

fn tasks_of(templates: &Templates) -> Option<Vec<TaskTemplate>> {
    Some(templates.as_slice().to_vec())
}

/// The series of a version of the actor's team, locked for a change.
async fn series_for(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    procedure_id: Uuid,
) -> Result<Series, CommandError> {
    let series = store::procedures::series_of(txn, procedure_id)
        .await?
        .ok_or_else(|| Rejection::not_found("procedure", procedure_id))?;
    let series = store::procedures::load_series(txn, series, SeriesLock::Exclusive)
        .await?
        .ok_or_else(|| Rejection::not_found("procedure", procedure_id))?;
    within_team(actor, series.latest().team_id, "procedure", procedure_id)?;
    Ok(series)
}

/// A command that changes a series, to its use case.
pub async fn handle(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    command: SeriesCommand,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    use SeriesCommand::*;
    match command {
        DraftProcedure { meta, tasks } => draft(txn, actor, meta, tasks, now).await,
        ReviseProcedure {
            procedure_id,
            changes,
        } => revise(txn, actor, procedure_id, changes, now).await,
        EditProcedure {
            procedure_id,
            changes,
        } => edit(txn, actor, procedure_id, changes, now).await,
        DiscardProcedure {
            procedure_id,
            reason,
        } => discard(txn, actor, procedure_id, reason, now).await,
        ApproveProcedure { procedure_id } => approve(txn, actor, procedure_id, now).await,
        RejectProcedure {
            procedure_id,
            reason,
        } => reject(txn, actor, procedure_id, reason, now).await,
        RetireProcedure {
            procedure_id,
            reason,
        } => retire(txn, actor, procedure_id, reason, now).await,
    }
}

async fn draft(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    meta: MetaDraft,
    tasks: Vec<TemplateDraft>,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    // Authorise before validating: a system that may not draft learns only that.
    actor.authorise(SystemKind::System4, actor.team_id)?;
    let meta = ProcedureMeta::parse(meta)?;
    let templates = Templates::parse(tasks)?;
    let p = Procedure::draft(ProcedureId(Uuid::now_v7()), meta, actor, now)?;
    store::procedures::insert(txn, &p).await?;
    store::procedures::insert_templates(txn, p.id, &templates).await?;
    let mut data = data(&p);
    data.tasks = tasks_of(&templates);
    Ok(Effect {
        accepted: accepted(&p),
        events: vec![emit(EventKind::ProcedureDrafted, &p, data)],
    })
}

async fn revise(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    base_id: Uuid,
    changes: ProcedureChanges,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    let series = series_for(txn, actor, base_id).await?;
    actor.authorise(SystemKind::System4, series.latest().team_id)?;
    let base = series
        .get(ProcedureId(base_id))
        .ok_or_else(|| Rejection::not_found("procedure", base_id))?;
    let meta = ProcedureMeta::parse(changes.over(base.meta.to_draft()))?;
    let templates = match changes.tasks {
        Some(tasks) => Templates::parse(tasks)?,
        // Copied from the base version; the store mints new ids and remaps dependencies.
        None => store::procedures::templates(txn, base.id).await?.0,
    };
    let p = series.revise(base.id, meta, ProcedureId(Uuid::now_v7()), actor, now)?;
    store::procedures::insert(txn, &p).await?;
    store::procedures::insert_templates(txn, p.id, &templates).await?;
    let mut data = data(&p);
    data.tasks = tasks_of(&templates);
    data.based_on = Some(base.id);
    Ok(Effect {
        accepted: accepted(&p),
        events: vec![emit(EventKind::ProcedureRevised, &p, data)],
    })
}

async fn edit(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    id: Uuid,
    changes: ProcedureChanges,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    let mut series = series_for(txn, actor, id).await?;
    let p = series
        .get_mut(ProcedureId(id))
        .ok_or_else(|| Rejection::not_found("procedure", id))?;
    actor.authorise(SystemKind::System4, p.team_id)?;
    let meta = ProcedureMeta::parse(changes.over(p.meta.to_draft()))?;
    let templates = changes.tasks.map(Templates::parse).transpose()?;
    p.edit(meta, actor, now)?;
    store::procedures::update(txn, p).await?;
    if let Some(templates) = &templates {
        store::procedures::delete_templates(txn, p.id).await?;
        store::procedures::insert_templates(txn, p.id, templates).await?;
    }
    let mut data = data(p);
    data.tasks = templates.as_ref().and_then(tasks_of);
    Ok(Effect {
        accepted: accepted(p),
        events: vec![emit(EventKind::ProcedureEdited, p, data)],
    })
}

/// Discard, reject and retire: one version changes state for a reason.
async fn with_reason(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    id: Uuid,
    raw_reason: &str,
    kind: EventKind,
    decide: impl FnOnce(&mut Procedure, String) -> Result<(), crate::domain::error::DomainError>,
) -> Result<Effect, CommandError> {
    let mut series = series_for(txn, actor, id).await?;
    let p = series
        .get_mut(ProcedureId(id))
        .ok_or_else(|| Rejection::not_found("procedure", id))?;
    // The domain authorises before the reason is checked: an unauthorised system learns only
    // that it is `forbidden`.
    let checked = text::required("reason", raw_reason, text::MAX_TEXT);
    decide(p, checked.clone().unwrap_or_default())?;
    let reason = checked?;
    store::procedures::update(txn, p).await?;
    let mut data = data(p);
    data.reason = Some(reason);
    Ok(Effect {
        accepted: accepted(p),
        events: vec![emit(kind, p, data)],
    })
}

async fn discard(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    id: Uuid,
    reason: String,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    with_reason(
        txn,
        actor,
        id,
        &reason,
        EventKind::ProcedureDiscarded,
        |p, r| p.discard(r, actor, now),
    )
    .await
}

async fn reject(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    id: Uuid,
    reason: String,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    with_reason(
        txn,
        actor,
        id,
        &reason,
        EventKind::ProcedureRejected,
        |p, r| p.reject(r, actor, now),
    )
    .await
}

async fn retire(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    id: Uuid,
    reason: String,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    with_reason(
        txn,
        actor,
        id,
        &reason,
        EventKind::ProcedureRetired,
        |p, r| p.retire(r, actor, now),
    )
    .await
}

async fn approve(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    let mut series = series_for(txn, actor, id).await?;
    let out = series.approve(ProcedureId(id), actor, now)?;
    let p = series
        .get(out.approved)
        .ok_or_else(|| Rejection::not_found("procedure", id))?;
    let mut events = Vec::new();
    // The superseded version is written first: the database allows one approved version per
    // series at every moment, not only at commit.
    let mut superseded_event = None;
    if let Some(old) = out.superseded.and_then(|old| series.get(old)) {
        store::procedures::update(txn, old).await?;
        let mut data = data(old);
        data.reason = ProcedureView::of(old).retired_reason;
        superseded_event = Some(emit(EventKind::ProcedureRetired, old, data));
    }
    store::procedures::update(txn, p).await?;
    let mut data = data(p);
    data.superseded = out.superseded;
    events.push(emit(EventKind::ProcedureApproved, p, data));
    events.extend(superseded_event);
    let mut result = accepted(p);
    result.superseded_procedure_id = out.superseded.map(|s| s.0);
    Ok(Effect {
        accepted: result,
        events,
    })
}

pub async fn execute(
    txn: &UseCaseTxn<'_>,
    (reads, new_runs): (&mut GroupReads, &mut store::runs::NewRuns),
    actor: &Actor,
    Execute {
        series_id,
        expected_version,
        strategy_id,
    }: Execute,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    let series = reads
        .series_to_execute(txn, SeriesId(series_id))
        .await?
        .ok_or_else(|| Rejection::not_found("procedure series", series_id))?;
    within_team(
        actor,
        series.latest().team_id,
        "procedure series",
        series_id,
    )?;
    let approved = series.executable(actor, expected_version.map(Version))?;
    let procedure = approved.procedure();
    let stored = store::procedures::approved_templates(txn, procedure.id).await?;
    let (templates, template_ids) = (&stored.0, &stored.1);
    let team = reads.members(txn, procedure.team_id).await?;
    let ids = NewRunIds {
        run: RunId(Uuid::now_v7()),
        initiative: InitiativeId(Uuid::now_v7()),
        tasks: (0..templates.len())
            .map(|_| TaskId(Uuid::now_v7()))
            .collect(),
    };
    let (run, events) =
        Execution::materialise(approved, templates, &team, ids, strategy_id, actor, now)?;
    // Written at the end of the group, with the group's other new runs: no other command of
    // the group can refer to this run, whose ids are minted here and told only after commit.
    new_runs.add(&run, template_ids);
    Ok(Effect {
        accepted: Accepted {
            procedure_id: Some(procedure.id.0),
            series_id: Some(procedure.series_id.0),
            version: Some(procedure.version.0),
            status: Some(run.status.as_str().to_owned()),
            run_id: Some(run.provenance.run_id.0),
            initiative_id: Some(run.initiative.id.0),
            task_ids: run.tasks.iter().map(|t| t.id.0).collect(),
            ..Default::default()
        },
        events,
    })
}

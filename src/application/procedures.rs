//! Procedure use cases: draft, revise, edit, discard, approve, reject, retire, execute. Each
//! reads, lets the domain decide, and returns its plan.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::policies::Judgement;
use super::reads::Reads;
use super::{CommandError, Plan, Rejection, within_team};
use crate::domain::error::ErrorCode;
use crate::domain::event::Event;
use crate::domain::ids::*;
use crate::domain::procedure::{Procedure, ProcedureMeta, Series};
use crate::domain::receipt::Receipt;
use crate::domain::run::{Execution, NewRunIds, RunTerms};
use crate::domain::system::{Actor, SystemKind};
use crate::domain::template::Templates;
use crate::domain::text;
use crate::store::changes::Change;
use crate::store::procedures::SeriesLock;
use crate::wire::command::{
    ApproveProcedure, ChangeProcedure, DraftProcedure, ExecuteProcedure, ProcedureCommand,
    ProcedureWithReason,
};

/// The plan of a command that leaves one version in a new state.
fn version_changed(p: &Procedure, event: Event) -> Plan {
    Plan {
        changes: vec![Change::Version(Box::new(p.clone()))],
        events: vec![event],
        receipt: Receipt::procedure(p),
    }
}

/// The series of a version of the actor's team, locked for a change.
async fn series_for(
    reads: &Reads<'_>,
    actor: &Actor,
    procedure_id: Uuid,
) -> Result<Series, CommandError> {
    let series = reads
        .series_to_change(procedure_id)
        .await?
        .ok_or_else(|| Rejection::not_found("procedure", procedure_id))?;
    within_team(actor, series.latest().team_id, "procedure", procedure_id)?;
    Ok(series)
}

/// A procedure command, to its use case.
pub async fn handle(
    reads: &mut Reads<'_>,
    actor: &Actor,
    command: ProcedureCommand,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    use ProcedureCommand::*;
    match command {
        DraftProcedure(draft) => self::draft(actor, draft, now),
        ReviseProcedure(changes) => revise(reads, actor, changes, now).await,
        EditProcedure(changes) => edit(reads, actor, changes, now).await,
        DiscardProcedure(c) => with_reason(reads, actor, c, |p, r| p.discard(r, actor, now)).await,
        ApproveProcedure(c) => approve(reads, actor, c, now).await,
        RejectProcedure(c) => with_reason(reads, actor, c, |p, r| p.reject(r, actor, now)).await,
        RetireProcedure(c) => with_reason(reads, actor, c, |p, r| p.retire(r, actor, now)).await,
        ExecuteProcedure(execute) => self::execute(reads, actor, execute, now).await,
    }
}

fn draft(actor: &Actor, draft: DraftProcedure, now: DateTime<Utc>) -> Result<Plan, CommandError> {
    // Authorise before validating: a system that may not draft learns only that.
    actor.authorise(SystemKind::System4, actor.team_id)?;
    let (meta, tasks) = draft.into_drafts();
    let meta = ProcedureMeta::parse(meta)?;
    let templates = Templates::parse(tasks)?;
    let (p, event) = Procedure::draft(ProcedureId(Uuid::now_v7()), meta, &templates, actor, now)?;
    Ok(Plan {
        events: vec![event],
        receipt: Receipt::procedure(&p),
        changes: vec![Change::NewVersion {
            procedure: Box::new(p),
            templates,
        }],
    })
}

async fn revise(
    reads: &Reads<'_>,
    actor: &Actor,
    mut changes: ChangeProcedure,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    let base_id = changes.procedure_id;
    let series = series_for(reads, actor, base_id).await?;
    actor.authorise(SystemKind::System4, series.latest().team_id)?;
    let base = series
        .get(ProcedureId(base_id))
        .ok_or_else(|| Rejection::not_found("procedure", base_id))?;
    let meta = ProcedureMeta::parse(changes.over(base.meta.to_draft()))?;
    let templates = match changes.take_tasks() {
        Some(tasks) => Templates::parse(tasks)?,
        // Copied from the base version; the store mints new ids and remaps dependencies.
        None => reads.templates(base.id).await?.0,
    };
    let (p, event) = series.revise(
        base.id,
        meta,
        &templates,
        ProcedureId(Uuid::now_v7()),
        actor,
        now,
    )?;
    Ok(Plan {
        events: vec![event],
        receipt: Receipt::procedure(&p),
        changes: vec![Change::NewVersion {
            procedure: Box::new(p),
            templates,
        }],
    })
}

async fn edit(
    reads: &Reads<'_>,
    actor: &Actor,
    mut changes: ChangeProcedure,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    let id = changes.procedure_id;
    let mut series = series_for(reads, actor, id).await?;
    let p = series
        .get_mut(ProcedureId(id))
        .ok_or_else(|| Rejection::not_found("procedure", id))?;
    actor.authorise(SystemKind::System4, p.team_id)?;
    // A call that forgot its changes must not leave an edit on the record.
    if changes.is_empty() {
        return Err(Rejection::new(
            ErrorCode::ValidationFailed,
            "an edit changes at least one of name, description, risk_level, impact, \
             rollback_plan or tasks: nothing was given",
        )
        .into());
    }
    let meta = ProcedureMeta::parse(changes.over(p.meta.to_draft()))?;
    let templates = changes.take_tasks().map(Templates::parse).transpose()?;
    // The digest covers the templates, whether the edit changes them or not.
    let kept;
    let all = match &templates {
        Some(changed) => changed,
        None => {
            kept = reads.templates(p.id).await?.0;
            &kept
        }
    };
    let event = p.edit(meta, all, templates.is_some(), actor, now)?;
    let mut plan = version_changed(p, event);
    if let Some(templates) = templates {
        plan.changes.push(Change::Templates {
            procedure: p.id,
            templates,
        });
    }
    Ok(plan)
}

/// Discard, reject and retire: one version changes state for a reason.
async fn with_reason(
    reads: &Reads<'_>,
    actor: &Actor,
    ProcedureWithReason {
        procedure_id: id,
        reason,
    }: ProcedureWithReason,
    decide: impl FnOnce(&mut Procedure, String) -> Result<Event, crate::domain::error::DomainError>,
) -> Result<Plan, CommandError> {
    let mut series = series_for(reads, actor, id).await?;
    let p = series
        .get_mut(ProcedureId(id))
        .ok_or_else(|| Rejection::not_found("procedure", id))?;
    // The domain authorises before the reason is checked: an unauthorised system learns only
    // that it is `forbidden`.
    let checked = text::required("reason", &reason, text::MAX_TEXT);
    let event = decide(p, checked.clone().unwrap_or_default())?;
    checked?;
    Ok(version_changed(p, event))
}

async fn approve(
    reads: &Reads<'_>,
    actor: &Actor,
    ApproveProcedure {
        procedure_id: id,
        digest,
    }: ApproveProcedure,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    let mut series = series_for(reads, actor, id).await?;
    let out = series.approve(ProcedureId(id), &digest, actor, now)?;
    let p = series
        .get(out.approved)
        .ok_or_else(|| Rejection::not_found("procedure", id))?;
    let mut changes = Vec::with_capacity(2);
    // The superseded version is written first: the database allows one approved version per
    // series at every moment, not only at commit.
    if let Some(old) = out.superseded.and_then(|old| series.get(old)) {
        changes.push(Change::Version(Box::new(old.clone())));
    }
    changes.push(Change::Version(Box::new(p.clone())));
    let mut receipt = Receipt::procedure(p);
    if let Receipt::Procedure { superseded, .. } = &mut receipt {
        *superseded = out.superseded;
    }
    Ok(Plan {
        changes,
        events: out.events,
        receipt,
    })
}

async fn execute(
    reads: &mut Reads<'_>,
    actor: &Actor,
    ExecuteProcedure {
        series_id,
        expected_version,
        strategy_id,
    }: ExecuteProcedure,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    let series_id = SeriesId(series_id);
    // Known before the series is locked, so that it is locked once, as strongly as needed.
    let policy = reads.policy(actor.team_id).await?;
    let lock = match &policy {
        Some(p) if p.rules.may_count(series_id) => SeriesLock::Exclusive,
        _ => SeriesLock::Share,
    };
    let series = reads
        .series_to_execute(series_id, lock)
        .await?
        .ok_or_else(|| Rejection::not_found("procedure series", series_id.0))?;
    within_team(
        actor,
        series.latest().team_id,
        "procedure series",
        series_id.0,
    )?;
    let approved = series.executable(actor, expected_version.map(Version))?;
    let procedure = approved.procedure();
    let mut terms = RunTerms {
        strategy_id,
        approval_rule: None,
    };
    if let Some(policy) = policy {
        let activity = async |since| reads.activity(series_id, since).await;
        match policy
            .judge(series_id, procedure.meta.risk_level, now, activity)
            .await?
        {
            Judgement::Refused(why) => return Err(why.into()),
            Judgement::Allowed { approval_rule } => terms.approval_rule = approval_rule,
        }
    }
    let stored = reads.approved_templates(procedure.id).await?;
    let team = reads.members(procedure.team_id).await?;
    let ids = NewRunIds {
        run: RunId(Uuid::now_v7()),
        initiative: InitiativeId(Uuid::now_v7()),
        tasks: (0..stored.0.len())
            .map(|_| TaskId(Uuid::now_v7()))
            .collect(),
    };
    let (run, events) = Execution::materialise(approved, &stored.0, &team, ids, terms, actor, now)?;
    Ok(Plan {
        receipt: Receipt::executed(&run),
        events,
        changes: vec![Change::NewRun {
            run: Box::new(run),
            templates: stored,
        }],
    })
}

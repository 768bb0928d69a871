//! Task, run and review use cases: each loads the run as one aggregate (its row locked),
//! decides in the domain, and saves what changed.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::command::RunCommand;
use super::{CommandError, Effect, Rejection, UseCaseTxn, within_team};
use crate::domain::ids::{ReviewId, RunId, TaskId};
use crate::domain::run::{Execution, TaskChange};
use crate::domain::system::Actor;
use crate::domain::text;
use crate::store;
use crate::wire::outcome::Accepted;

/// The run of the actor's team that `what` `id` belongs to, locked for a change.
async fn load(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    run: Option<RunId>,
    what: &str,
    id: Uuid,
) -> Result<Execution, CommandError> {
    let run = run.ok_or_else(|| Rejection::not_found(what, id))?;
    let run = store::runs::load_for_update(txn, run)
        .await?
        .ok_or_else(|| Rejection::not_found(what, id))?;
    within_team(actor, run.team_id, what, id)?;
    Ok(run)
}

fn required(field: &str, raw: &str) -> Result<String, CommandError> {
    Ok(text::required(field, raw, text::MAX_TEXT)?)
}

fn optional(field: &str, raw: &str) -> Result<String, CommandError> {
    Ok(text::optional(field, raw, text::MAX_TEXT)?)
}

fn task_accepted(run: &Execution, task: TaskId) -> Accepted {
    Accepted {
        run_id: Some(run.provenance.run_id.0),
        initiative_id: Some(run.initiative.id.0),
        task_id: Some(task.0),
        status: run.task(task).map(|t| t.status.as_str().to_owned()),
        ..Default::default()
    }
}

/// The run a task, run or review command concerns, loaded (and locked) once.
async fn target(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    command: &RunCommand,
) -> Result<Execution, CommandError> {
    use RunCommand::*;
    match command {
        StartTask { task_id }
        | CompleteTask { task_id, .. }
        | BlockTask { task_id, .. }
        | UnblockTask { task_id, .. }
        | ReviewTask { task_id, .. }
        | CancelTask { task_id, .. }
        | ReplaceTask { task_id, .. } => {
            let run = store::runs::run_of_task(txn, *task_id).await?;
            load(txn, actor, run, "task", *task_id).await
        }
        CancelRun { run_id, .. } => load(txn, actor, Some(RunId(*run_id)), "run", *run_id).await,
        ReviewInitiative { initiative_id, .. } => {
            let run = store::runs::run_of_initiative(txn, *initiative_id).await?;
            load(txn, actor, run, "initiative", *initiative_id).await
        }
    }
}

pub async fn handle(
    txn: &UseCaseTxn<'_>,
    actor: &Actor,
    command: RunCommand,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    use RunCommand::*;
    let before = target(txn, actor, &command).await?;
    let mut run = before.clone();
    let (events, accepted) = match command {
        StartTask { task_id } => {
            let events = run.start_task(TaskId(task_id), actor, now)?;
            (events, task_accepted(&run, TaskId(task_id)))
        }
        CompleteTask { task_id, result } => {
            let result = optional("result", &result)?;
            let events = run.complete_task(TaskId(task_id), result, actor, now)?;
            (events, task_accepted(&run, TaskId(task_id)))
        }
        BlockTask { task_id, reason } => {
            let reason = required("reason", &reason)?;
            let events = run.block_task(TaskId(task_id), reason, actor, now)?;
            (events, task_accepted(&run, TaskId(task_id)))
        }
        UnblockTask { task_id, note } => {
            let note = note.map(|n| optional("note", &n)).transpose()?;
            let events = run.unblock_task(TaskId(task_id), note, actor, now)?;
            (events, task_accepted(&run, TaskId(task_id)))
        }
        ReviewTask {
            task_id,
            verdict,
            reasoning,
        } => {
            let reasoning = optional("reasoning", &reasoning)?;
            let events = run.review_task(TaskId(task_id), verdict, reasoning, actor, now)?;
            (events, task_accepted(&run, TaskId(task_id)))
        }
        CancelTask { task_id, reason } => {
            let reason = required("reason", &reason)?;
            let events = run.cancel_task(TaskId(task_id), reason, actor, now)?;
            (events, task_accepted(&run, TaskId(task_id)))
        }
        ReplaceTask {
            task_id,
            reason,
            name,
            content,
        } => {
            let change = TaskChange {
                reason: required("reason", &reason)?,
                name: name
                    .map(|n| text::required("name", &n, text::MAX_NAME))
                    .transpose()?,
                content: content.map(|c| optional("content", &c)).transpose()?,
            };
            let new_id = TaskId(Uuid::now_v7());
            let events = run.replace_task(TaskId(task_id), new_id, change, actor, now)?;
            // The outcome names the replacement: it is the task to work next.
            (events, task_accepted(&run, new_id))
        }
        CancelRun { run_id, reason } => {
            let reason = required("reason", &reason)?;
            let events = run.cancel(reason, actor, now)?;
            let accepted = Accepted {
                run_id: Some(run_id),
                initiative_id: Some(run.initiative.id.0),
                status: Some(run.status.as_str().to_owned()),
                ..Default::default()
            };
            (events, accepted)
        }
        ReviewInitiative {
            initiative_id,
            review,
        } => {
            let (review, event) =
                run.record_review(ReviewId(Uuid::now_v7()), review, actor, now)?;
            store::reviews::insert(txn, run.team_id.0, &review).await?;
            let accepted = Accepted {
                run_id: Some(run.provenance.run_id.0),
                initiative_id: Some(initiative_id),
                review_id: Some(review.view.review_id.0),
                status: Some(review.outcome.as_str().to_owned()),
                ..Default::default()
            };
            (vec![event], accepted)
        }
    };
    store::runs::save(txn, &before, &run, now).await?;
    Ok(Effect { accepted, events })
}

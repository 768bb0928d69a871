//! Task, run and review use cases: each loads the run as one aggregate (its row locked),
//! decides in the domain, and saves what changed.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::{Command, CommandError, Effect, Rejection};
use crate::domain::ids::{ReviewId, RunId, TaskId};
use crate::domain::run::{Execution, TaskChange};
use crate::domain::system::Actor;
use crate::domain::text;
use crate::store;
use crate::wire::outcome::Accepted;

async fn load(
    txn: &DatabaseTransaction,
    run: Option<RunId>,
    what: &str,
    id: Uuid,
) -> Result<Execution, CommandError> {
    let run = run.ok_or_else(|| Rejection::not_found(what, id))?;
    Ok(store::runs::load(txn, run)
        .await?
        .ok_or_else(|| Rejection::not_found(what, id))?)
}

async fn load_by_task(txn: &DatabaseTransaction, task: Uuid) -> Result<Execution, CommandError> {
    let run = store::runs::run_of_task(txn, task).await?;
    load(txn, run, "task", task).await
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

pub async fn handle(
    txn: &DatabaseTransaction,
    actor: &Actor,
    command: Command,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    use Command::*;
    let (before, after, events, accepted) = match command {
        StartTask { task_id } => {
            let before = load_by_task(txn, task_id).await?;
            let mut run = before.clone();
            let events = run.start_task(TaskId(task_id), actor, now)?;
            let acc = task_accepted(&run, TaskId(task_id));
            (before, run, events, acc)
        }
        CompleteTask { task_id, result } => {
            let before = load_by_task(txn, task_id).await?;
            let mut run = before.clone();
            let result = optional("result", &result)?;
            let events = run.complete_task(TaskId(task_id), result, actor, now)?;
            let acc = task_accepted(&run, TaskId(task_id));
            (before, run, events, acc)
        }
        BlockTask { task_id, reason } => {
            let before = load_by_task(txn, task_id).await?;
            let mut run = before.clone();
            let reason = required("reason", &reason)?;
            let events = run.block_task(TaskId(task_id), reason, actor, now)?;
            let acc = task_accepted(&run, TaskId(task_id));
            (before, run, events, acc)
        }
        UnblockTask { task_id, note } => {
            let before = load_by_task(txn, task_id).await?;
            let mut run = before.clone();
            let note = note.map(|n| optional("note", &n)).transpose()?;
            let events = run.unblock_task(TaskId(task_id), note, actor, now)?;
            let acc = task_accepted(&run, TaskId(task_id));
            (before, run, events, acc)
        }
        ReviewTask {
            task_id,
            verdict,
            reasoning,
        } => {
            let before = load_by_task(txn, task_id).await?;
            let mut run = before.clone();
            let reasoning = optional("reasoning", &reasoning)?;
            let events = run.review_task(TaskId(task_id), verdict, reasoning, actor, now)?;
            let acc = task_accepted(&run, TaskId(task_id));
            (before, run, events, acc)
        }
        CancelTask { task_id, reason } => {
            let before = load_by_task(txn, task_id).await?;
            let mut run = before.clone();
            let reason = required("reason", &reason)?;
            let events = run.cancel_task(TaskId(task_id), reason, actor, now)?;
            let acc = task_accepted(&run, TaskId(task_id));
            (before, run, events, acc)
        }
        ReplaceTask {
            task_id,
            reason,
            name,
            content,
        } => {
            let before = load_by_task(txn, task_id).await?;
            let mut run = before.clone();
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
            let acc = task_accepted(&run, new_id);
            (before, run, events, acc)
        }
        CancelRun { run_id, reason } => {
            let before = load(txn, Some(RunId(run_id)), "run", run_id).await?;
            let mut run = before.clone();
            let reason = required("reason", &reason)?;
            let events = run.cancel(reason, actor, now)?;
            let acc = Accepted {
                run_id: Some(run_id),
                initiative_id: Some(run.initiative.id.0),
                status: Some(run.status.as_str().to_owned()),
                ..Default::default()
            };
            (before, run, events, acc)
        }
        ReviewInitiative {
            initiative_id,
            review,
        } => {
            let run_id = store::runs::run_of_initiative(txn, initiative_id).await?;
            let before = load(txn, run_id, "initiative", initiative_id).await?;
            let mut run = before.clone();
            let (review, event) =
                run.record_review(ReviewId(Uuid::now_v7()), review, actor, now)?;
            store::reviews::insert(txn, run.team_id.0, &review).await?;
            let acc = Accepted {
                run_id: Some(run.provenance.run_id.0),
                initiative_id: Some(initiative_id),
                review_id: Some(review.view.review_id.0),
                status: Some(review.outcome.as_str().to_owned()),
                ..Default::default()
            };
            (before, run, vec![event], acc)
        }
        other => unreachable!("procedure command {other:?} routed to runs"),
    };
    store::runs::save(txn, &before, &after, now).await?;
    Ok(Effect { accepted, events })
}

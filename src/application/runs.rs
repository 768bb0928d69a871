//! Task, run and review use cases: each loads the run as one aggregate (its row locked),
//! lets the domain decide, and returns the run as decided for the pipeline to save.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::reads::Reads;
use super::{CommandError, Plan, Rejection, within_team};
use crate::domain::ids::{ReviewId, RunId, TaskId};
use crate::domain::receipt::Receipt;
use crate::domain::run::{Execution, TaskChange};
use crate::domain::system::Actor;
use crate::domain::text;
use crate::store::changes::Change;
use crate::wire::command::RunCommand;

/// The run of the actor's team that `what` `id` belongs to, locked for a change.
async fn load(
    reads: &Reads<'_>,
    actor: &Actor,
    run: Option<RunId>,
    what: &str,
    id: Uuid,
) -> Result<Execution, CommandError> {
    let run = run.ok_or_else(|| Rejection::not_found(what, id))?;
    let run = reads
        .run_to_change(run)
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

/// The run a task, run or review command concerns, loaded (and locked) once.
async fn target(
    reads: &Reads<'_>,
    actor: &Actor,
    command: &RunCommand,
) -> Result<Execution, CommandError> {
    use RunCommand::*;
    let task = match command {
        StartTask(c) => c.task_id,
        CompleteTask(c) => c.task_id,
        BlockTask(c) | CancelTask(c) => c.task_id,
        UnblockTask(c) => c.task_id,
        ReviewTask(c) => c.task_id,
        ReplaceTask(c) => c.task_id,
        CancelRun(c) | RejectRun(c) | PauseRun(c) => {
            return load(reads, actor, Some(RunId(c.run_id)), "run", c.run_id).await;
        }
        ApproveRun(c) | ResumeRun(c) => {
            return load(reads, actor, Some(RunId(c.run_id)), "run", c.run_id).await;
        }
        ReviewInitiative(c) => {
            let run = reads.run_of_initiative(c.initiative_id).await?;
            return load(reads, actor, run, "initiative", c.initiative_id).await;
        }
    };
    let run = reads.run_of_task(task).await?;
    load(reads, actor, run, "task", task).await
}

pub async fn handle(
    reads: &mut Reads<'_>,
    actor: &Actor,
    command: RunCommand,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    use RunCommand::*;
    let before = target(reads, actor, &command).await?;
    let mut run = before.clone();
    let mut changes = Vec::with_capacity(2);
    let (events, receipt) = match command {
        StartTask(c) => {
            let task = TaskId(c.task_id);
            let events = run.start_task(task, actor, now)?;
            (events, Receipt::task(&run, task))
        }
        CompleteTask(c) => {
            let (task, result) = (TaskId(c.task_id), optional("result", &c.result)?);
            let events = run.complete_task(task, result, actor, now)?;
            (events, Receipt::task(&run, task))
        }
        BlockTask(c) => {
            let (task, reason) = (TaskId(c.task_id), required("reason", &c.reason)?);
            let events = run.block_task(task, reason, actor, now)?;
            (events, Receipt::task(&run, task))
        }
        UnblockTask(c) => {
            let note = c.note.map(|n| optional("note", &n)).transpose()?;
            let task = TaskId(c.task_id);
            let events = run.unblock_task(task, note, actor, now)?;
            (events, Receipt::task(&run, task))
        }
        ReviewTask(c) => {
            let (task, reasoning) = (TaskId(c.task_id), optional("reasoning", &c.reasoning)?);
            let events = run.review_task(task, c.verdict, reasoning, actor, now)?;
            (events, Receipt::task(&run, task))
        }
        CancelTask(c) => {
            let (task, reason) = (TaskId(c.task_id), required("reason", &c.reason)?);
            let events = run.cancel_task(task, reason, actor, now)?;
            (events, Receipt::task(&run, task))
        }
        ReplaceTask(c) => {
            let change = TaskChange {
                reason: required("reason", &c.reason)?,
                name: c
                    .name
                    .map(|n| text::required("name", &n, text::MAX_NAME))
                    .transpose()?,
                content: c.content.map(|c| optional("content", &c)).transpose()?,
            };
            let new_id = TaskId(Uuid::now_v7());
            let events = run.replace_task(TaskId(c.task_id), new_id, change, actor, now)?;
            // The receipt names the replacement: it is the task to work next.
            (events, Receipt::task(&run, new_id))
        }
        CancelRun(c) => {
            let events = run.cancel(required("reason", &c.reason)?, actor, now)?;
            (events, Receipt::run(&run))
        }
        PauseRun(c) => {
            let events = run.pause(required("reason", &c.reason)?, actor, now)?;
            (events, Receipt::run(&run))
        }
        ResumeRun(c) => {
            let note = c.note.map(|n| optional("note", &n)).transpose()?;
            let events = run.resume(note, actor, now)?;
            (events, Receipt::run(&run))
        }
        ApproveRun(c) => {
            let note = c.note.map(|n| optional("note", &n)).transpose()?;
            let events = run.approve(note, actor, now)?;
            (events, Receipt::run(&run))
        }
        RejectRun(c) => {
            let events = run.reject(required("reason", &c.reason)?, actor, now)?;
            (events, Receipt::run(&run))
        }
        ReviewInitiative(c) => {
            let draft = c.into_draft();
            let (review, event) = run.record_review(ReviewId(Uuid::now_v7()), draft, actor, now)?;
            let receipt = Receipt::review(&run, &review);
            changes.push(Change::NewReview {
                team: run.team_id,
                review: Box::new(review),
            });
            (vec![event], receipt)
        }
    };
    changes.push(Change::Run {
        before: Box::new(before),
        after: Box::new(run),
    });
    Ok(Plan {
        changes,
        events,
        receipt,
    })
}

//! `sop task`: what a task's assignee and System3 do with it.

use std::process::ExitCode;

use clap::Subcommand;

use super::ctx::{Ctx, Exit};
use super::send::SendArgs;
use crate::wire::command::CommandName as N;

#[derive(Subcommand)]
pub enum TaskCmd {
    /// Start a ready task (its assignee): `<task_id>`.
    Start(SendArgs),
    /// Complete a task (its assignee): `<task_id> result=…`.
    Complete(SendArgs),
    /// Block a task (its assignee): `<task_id> --reason …`.
    Block(SendArgs),
    /// Unblock a task (its assignee or System3): `<task_id> [note=…]`.
    Unblock(SendArgs),
    /// Review a completed task (System3): `<task_id> verdict=approve|reject [reasoning=…]`.
    Review(SendArgs),
    /// Cancel a task and its dependents (System3): `<task_id> --reason …`.
    Cancel(SendArgs),
    /// Replace a rejected or blocked task (System3): `<task_id> --reason … [name=…] [content=…]`.
    Replace(SendArgs),
}

pub async fn run(ctx: &Ctx, command: TaskCmd) -> Result<ExitCode, Exit> {
    let (name, args) = match command {
        TaskCmd::Start(a) => (N::StartTask, a),
        TaskCmd::Complete(a) => (N::CompleteTask, a),
        TaskCmd::Block(a) => (N::BlockTask, a),
        TaskCmd::Unblock(a) => (N::UnblockTask, a),
        TaskCmd::Review(a) => (N::ReviewTask, a),
        TaskCmd::Cancel(a) => (N::CancelTask, a),
        TaskCmd::Replace(a) => (N::ReplaceTask, a),
    };
    ctx.send(name, args).await
}

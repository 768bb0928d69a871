//! Operators' requests: dead letters and parked outbox messages.

use std::process::ExitCode;

use clap::Subcommand;

use super::ctx::{Ctx, EXIT_NOT_FOUND, Exit};
use super::render::{Columns, time};
use crate::bus::client::ClientError;
use crate::wire::admin::{
    AdminName, DeadLetter, DeadLetterRequest, DeadLetters, ParkedMessage, ParkedMessages,
    ParkedRequest, RepublishRequest,
};

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// The parked messages, oldest first, each with why the server refused it.
    Parked,
    /// Lists parked messages again for the relay to publish, once their cause is fixed.
    Republish {
        /// The `seq`s to republish, as `sop outbox parked` shows them.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        seqs: Vec<i64>,
        /// Every parked message.
        #[arg(long)]
        all: bool,
    },
}

pub async fn dead_letters(ctx: &Ctx, limit: u64) -> Result<ExitCode, Exit> {
    let answer: DeadLetters = ctx
        .client()
        .await?
        .admin(
            AdminName::DeadLetters,
            &DeadLetterRequest { limit: Some(limit) },
        )
        .await?;
    if answer.truncated {
        eprintln!("(older dead letters left out: the answer would exceed the server's limit)");
    }
    ctx.print(&answer.dead_letters, |letters| {
        Columns::new()
            .col("received_at", |d: &DeadLetter| time(&d.received_at))
            .col("reason", |d| d.reason.clone())
            .col("subject", |d| d.subject.clone())
            .col("command_id", |d| d.command_id.to_string())
            .col("message", |d| d.message.clone())
            .or("no dead letters")
            .render(letters)
    })?;
    Ok(ExitCode::SUCCESS)
}

pub async fn outbox(ctx: &Ctx, command: OutboxCmd) -> Result<ExitCode, Exit> {
    let client = ctx.client().await?;
    let answer: ParkedMessages = match command {
        OutboxCmd::Parked => {
            client
                .admin(AdminName::ParkedOutbox, &ParkedRequest {})
                .await?
        }
        OutboxCmd::Republish { seqs, all } => {
            match client
                .admin(AdminName::RepublishOutbox, &RepublishRequest { seqs, all })
                .await
            {
                Ok(moved) => moved,
                Err(ClientError::Refused(e)) if e.code == "not_found" => {
                    return Err(Exit(
                        EXIT_NOT_FOUND,
                        format!(
                            "{}; `sop outbox parked` lists the parked messages",
                            e.message
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    ctx.print(&answer.parked, |parked| {
        Columns::new()
            .col("seq", |p: &ParkedMessage| p.seq.to_string())
            .col("parked_at", |p| time(&p.parked_at))
            .col("kind", |p| p.kind.clone())
            .col("bytes", |p| p.bytes.to_string())
            .col("subject", |p| p.subject.clone())
            .col("reason", |p| p.reason.clone())
            .or("no parked messages")
            .render(parked)
    })?;
    Ok(ExitCode::SUCCESS)
}

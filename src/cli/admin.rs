//! Operators' requests: dead letters and parked outbox messages.

use std::process::ExitCode;

use clap::Subcommand;

use super::ctx::{Ctx, EXIT_NOT_FOUND, Exit};
use super::render::{Columns, time};
use crate::bus::client::ClientError;
use crate::config::WorkerSettings;
use crate::store::outbox::Relist;
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
    /// Lists stored messages again for the relay to publish, to rebuild a lost stream from
    /// the outbox (connects to the database; stop the workers first, see docs/operations.md).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["events", "outcomes_since"])))]
    Relist {
        /// Every stored event (for `SOP_EVENTS`), but for parked ones.
        #[arg(long)]
        events: bool,
        /// Only the events after this one (the last event id the stream still holds).
        #[arg(long, requires = "events")]
        after_event: Option<uuid::Uuid>,
        /// Every stored outcome since this time (for `SOP_OUTCOMES`), RFC 3339.
        #[arg(long)]
        outcomes_since: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        worker: WorkerSettings,
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
    let answer: ParkedMessages = match command {
        OutboxCmd::Relist {
            after_event,
            outcomes_since,
            ..
        } => return relist(ctx, after_event, outcomes_since).await,
        OutboxCmd::Parked => {
            ctx.client()
                .await?
                .admin(AdminName::ParkedOutbox, &ParkedRequest {})
                .await?
        }
        OutboxCmd::Republish { seqs, all } => {
            match ctx
                .client()
                .await?
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

async fn relist(
    ctx: &Ctx,
    after_event: Option<uuid::Uuid>,
    outcomes_since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<ExitCode, Exit> {
    let db = crate::app::connect_db(&ctx.settings).await?;
    let which = match (outcomes_since, after_event) {
        (Some(since), _) => Relist::OutcomesSince(since),
        (None, None) => Relist::EventsAfter(None),
        (None, Some(event)) => match crate::store::outbox::position_of(&db, event)
            .await
            .map_err(anyhow::Error::from)?
        {
            Some(position) => Relist::EventsAfter(Some(position)),
            None => {
                return Err(Exit(
                    EXIT_NOT_FOUND,
                    format!("event {event} is not in the outbox"),
                ));
            }
        },
    };
    let listed = crate::store::outbox::relist(&db, which)
        .await
        .map_err(anyhow::Error::from)?;
    ctx.print(&serde_json::json!({ "listed": listed }), |_| {
        format!("{listed} messages listed for the relay to publish")
    })?;
    Ok(ExitCode::SUCCESS)
}

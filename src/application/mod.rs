//! Use cases: one async function per command, each deciding inside the transaction the
//! pipeline opened for it. The pipeline ([`process`]) is the only place a command transaction
//! begins and commits:
//!
//! ```text
//! begin → inbox hit? → stored outcome (no effect)
//!       → load actor → use case (load, decide in the domain, write)
//!       → inbox + outbox outcome, then outbox events → commit
//! rejected? → roll back the effects, then record only the rejection (inbox + outcome)
//! ```
//!
//! Errors: a [`CommandError::Rejected`] is final and becomes the command's outcome; a database
//! error is returned as such, nothing is recorded, and the caller retries the message later.
//! No NATS and no JSON here.

mod command;
mod procedures;
pub mod queries;
mod runs;

pub use command::{Command, Incoming, ProcedureChanges, Signed};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use uuid::Uuid;

use crate::domain::error::{DomainError, ErrorCode};
use crate::domain::event::Event;
use crate::domain::system::Actor;
use crate::store::{self, outbox::Causation};
use crate::wire::command::SCHEMA_VERSION;
use crate::wire::outcome::{Accepted, ErrorBody, Outcome, Verdict};
use crate::wire::subjects::Subjects;

/// A command refused for a reason the sender can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn not_found(what: &str, id: Uuid) -> Rejection {
        Rejection::new(ErrorCode::NotFound, format!("no {what} {id}"))
    }
}

impl From<DomainError> for Rejection {
    fn from(e: DomainError) -> Rejection {
        Rejection {
            code: e.code(),
            field: e.field().map(str::to_owned),
            message: e.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("rejected: {}", .0.message)]
    Rejected(Rejection),
    #[error(transparent)]
    Store(#[from] DbErr),
}

impl From<DomainError> for CommandError {
    fn from(e: DomainError) -> CommandError {
        CommandError::Rejected(e.into())
    }
}

impl From<Rejection> for CommandError {
    fn from(r: Rejection) -> CommandError {
        CommandError::Rejected(r)
    }
}

/// What an accepted use case hands back to the pipeline.
#[derive(Debug, Default)]
pub struct Effect {
    pub accepted: Accepted,
    pub events: Vec<Event>,
}

/// The result of processing one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Processed {
    /// Processed now; the outcome is committed and queued for publication.
    Fresh(Outcome),
    /// Seen before: this is its stored outcome; nothing was applied again.
    Duplicate(Outcome),
}

impl Processed {
    pub fn outcome(&self) -> &Outcome {
        match self {
            Processed::Fresh(o) | Processed::Duplicate(o) => o,
        }
    }
}

/// Runs one decoded command through the pipeline (module doc).
pub async fn process(
    db: &DatabaseConnection,
    subjects: &Subjects,
    incoming: Incoming,
    now: DateTime<Utc>,
) -> Result<Processed, DbErr> {
    let txn = store::begin(db).await?;
    if let Some(stored) = store::inbox::find(&txn, incoming.command_id).await? {
        txn.rollback().await?;
        return Ok(Processed::Duplicate(stored));
    }
    let Some((actor, team_name)) = store::teams::actor(&txn, incoming.actor).await? else {
        txn.rollback().await?;
        let r = Rejection::new(
            ErrorCode::Forbidden,
            format!("no system {} is registered", incoming.actor),
        );
        return record_rejection(db, subjects, &incoming.meta(), r, now, None).await;
    };
    if let Err(r) = check_signature(&actor, incoming.signed.as_ref()) {
        txn.rollback().await?;
        let meta = MessageMeta {
            team: Some(actor.team_id.0),
            ..incoming.meta()
        };
        return record_rejection(db, subjects, &meta, r, now, None).await;
    }
    let name = incoming.name;
    let meta = incoming.meta();
    match dispatch(&txn, &actor, incoming.command, now).await {
        Ok(effect) => {
            let cause = Causation {
                command_id: incoming.command_id,
                correlation_id: incoming.correlation_id.as_deref(),
                traceparent: incoming.traceparent.as_deref(),
                actor: actor.id.0,
                team_name: &team_name,
                at: now,
            };
            let outcome = Outcome {
                schema_version: SCHEMA_VERSION,
                command_id: incoming.command_id,
                command: name.as_str().to_owned(),
                verdict: Verdict::Accepted {
                    result: effect.accepted,
                },
                processed_at: now,
            };
            if !store::inbox::insert(&txn, &outcome, Some(actor.id.0)).await? {
                // Another worker committed the same command id meanwhile: its effect stands.
                txn.rollback().await?;
                return stored_duplicate(db, incoming.command_id).await;
            }
            store::outbox::append_outcome(
                &txn,
                subjects,
                &outcome,
                Some(actor.team_id.0),
                meta.reply_to.as_deref(),
            )
            .await?;
            // After the outcome: a sender learns the ids it created (run, tasks) before the
            // events that mention them.
            store::outbox::append_events(&txn, subjects, &cause, &effect.events).await?;
            txn.commit().await?;
            Ok(Processed::Fresh(outcome))
        }
        Err(CommandError::Rejected(r)) => {
            txn.rollback().await?;
            let meta = MessageMeta {
                team: Some(actor.team_id.0),
                ..meta
            };
            record_rejection(db, subjects, &meta, r, now, None).await
        }
        Err(CommandError::Store(e)) => Err(e),
    }
}

/// A system with a registered key must sign each command with it; others may, unchecked.
fn check_signature(actor: &Actor, signed: Option<&Signed>) -> Result<(), Rejection> {
    let Some(key) = &actor.public_key else {
        return Ok(());
    };
    let Some(signed) = signed else {
        return Err(Rejection::new(
            ErrorCode::Forbidden,
            format!(
                "system {} signs its commands: this one carries no Sop-Signature",
                actor.id
            ),
        ));
    };
    crate::wire::signature::verify(key, &signed.body, &signed.signature).map_err(|e| {
        Rejection::new(
            ErrorCode::Forbidden,
            format!("command of system {}: {e}", actor.id),
        )
    })
}

async fn stored_duplicate(db: &DatabaseConnection, id: Uuid) -> Result<Processed, DbErr> {
    store::inbox::find(db, id)
        .await?
        .map(Processed::Duplicate)
        .ok_or_else(|| DbErr::RecordNotFound(format!("inbox row of command {id}")))
}

/// What a rejection outcome needs to know about the message, decoded or not.
#[derive(Debug, Clone)]
pub struct MessageMeta {
    pub command_id: Uuid,
    /// The command name, or the subject when it names no command.
    pub command: String,
    pub actor: Option<Uuid>,
    pub team: Option<Uuid>,
    pub reply_to: Option<String>,
}

/// Records a rejection as the command's one outcome (inbox + outbox), unless the id already
/// has one. Also the path for messages that never decoded into a command.
/// The body of a message given up on, kept as a dead letter with its rejection.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
}

pub async fn record_rejection(
    db: &DatabaseConnection,
    subjects: &Subjects,
    meta: &MessageMeta,
    rejection: Rejection,
    now: DateTime<Utc>,
    dead_letter: Option<DeadLetter<'_>>,
) -> Result<Processed, DbErr> {
    let txn = store::begin(db).await?;
    if let Some(stored) = store::inbox::find(&txn, meta.command_id).await? {
        txn.rollback().await?;
        return Ok(Processed::Duplicate(stored));
    }
    let outcome = Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: meta.command_id,
        command: meta.command.clone(),
        verdict: Verdict::Rejected {
            error: ErrorBody {
                code: rejection.code.as_str().to_owned(),
                message: rejection.message,
                field: rejection.field,
            },
        },
        processed_at: now,
    };
    if !store::inbox::insert(&txn, &outcome, meta.actor).await? {
        txn.rollback().await?;
        return stored_duplicate(db, meta.command_id).await;
    }
    if let (Some(dead), Verdict::Rejected { error }) = (dead_letter, &outcome.verdict) {
        store::dead_letters::record(
            &txn,
            meta.command_id,
            dead.subject,
            &error.code,
            &error.message,
            dead.payload,
            now,
        )
        .await?;
    }
    store::outbox::append_outcome(
        &txn,
        subjects,
        &outcome,
        meta.team,
        meta.reply_to.as_deref(),
    )
    .await?;
    txn.commit().await?;
    Ok(Processed::Fresh(outcome))
}

async fn dispatch(
    txn: &DatabaseTransaction,
    actor: &Actor,
    command: Command,
    now: DateTime<Utc>,
) -> Result<Effect, CommandError> {
    use Command::*;
    match command {
        DraftProcedure { meta, tasks } => procedures::draft(txn, actor, meta, tasks, now).await,
        ReviseProcedure {
            procedure_id,
            changes,
        } => procedures::revise(txn, actor, procedure_id, changes, now).await,
        EditProcedure {
            procedure_id,
            changes,
        } => procedures::edit(txn, actor, procedure_id, changes, now).await,
        DiscardProcedure {
            procedure_id,
            reason,
        } => procedures::discard(txn, actor, procedure_id, reason, now).await,
        ApproveProcedure { procedure_id } => {
            procedures::approve(txn, actor, procedure_id, now).await
        }
        RejectProcedure {
            procedure_id,
            reason,
        } => procedures::reject(txn, actor, procedure_id, reason, now).await,
        RetireProcedure {
            procedure_id,
            reason,
        } => procedures::retire(txn, actor, procedure_id, reason, now).await,
        ExecuteProcedure {
            series_id,
            expected_version,
            strategy_id,
        } => procedures::execute(txn, actor, series_id, expected_version, strategy_id, now).await,
        task_or_run => runs::handle(txn, actor, task_or_run, now).await,
    }
}

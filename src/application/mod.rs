//! Use cases decide; the pipeline applies. One async function per command reads through
//! [`Reads`] (which cannot write), lets the domain decide, and returns a [`Plan`]: the changes
//! to write, the events, the receipt for the sender. The pipeline ([`process_group`]) is the
//! only place a command transaction begins, is written to and commits:
//!
//! ```text
//! begin → inbox check of the whole group (one query)
//!       → for each message: seen (stored, or earlier in the group)? → its outcome (no effect)
//!             → load actor (reads shared in the group: [`Reads`])
//!             → use case: read, decide in the domain → plan, or rejection
//!             → plan: outcome + events encoded; one over the server's `max_payload` makes
//!               the command a `too_large` rejection, its plan dropped unwritten; otherwise
//!               its changes are applied (a new run is kept for the end of the group)
//!             → rejection: only its outcome is kept
//!       → new runs, inbox rows, then outbox messages (each outcome, then its events):
//!         one statement per table, sent together ([`store::writes`]) → commit
//! ```
//!
//! Errors: a [`CommandError::Rejected`] is final and becomes the command's outcome; a database
//! error is returned as such, nothing is recorded, and the caller retries the message later.
//! No NATS and no JSON here.

pub mod admin;
pub mod command;
mod decision;
pub mod pages;
mod policies;
mod procedures;
pub mod queries;
mod reads;
mod runs;

pub use command::{Incoming, Signed};
pub use decision::{CommandError, Plan, Rejection};
use reads::Reads;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tracing::{Instrument, info_span};
use uuid::Uuid;

use crate::domain::error::ErrorCode;
use crate::domain::ids::TeamId;
use crate::domain::system::Actor;
use crate::domain::text;
use crate::store::{self, outbox::Causation};
use crate::wire::command::{Command, SCHEMA_VERSION};
use crate::wire::outcome::{ErrorBody, Outcome, Verdict};
use crate::wire::subjects::Subjects;

/// Why a group committed nothing.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Store(#[from] DbErr),
    /// The pipeline broke one of its own rules: a retry would meet the same.
    #[error("bug: {0}")]
    Bug(String),
}

/// What a failure calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Goes away by itself (connection lost, pool exhausted, serialisation): retry.
    Transient,
    /// May or may not: retry a few times, then give up on the message.
    Persistent,
    /// A retry meets the same: give up on the message at once.
    Bug,
}

impl From<store::StoreError> for GroupError {
    fn from(e: store::StoreError) -> GroupError {
        match e {
            store::StoreError::Db(e) => GroupError::Store(e),
            store::StoreError::Bug(bug) => GroupError::Bug(bug),
        }
    }
}

impl GroupError {
    pub fn kind(&self) -> FailureKind {
        match self {
            GroupError::Store(e) => match store::kind(e) {
                store::ErrorKind::Transient => FailureKind::Transient,
                store::ErrorKind::Corrupt => FailureKind::Bug,
                store::ErrorKind::Conflict | store::ErrorKind::Other => FailureKind::Persistent,
            },
            GroupError::Bug(_) => FailureKind::Bug,
        }
    }
}

/// What a committed transaction hands back: one result per message, in order, and the
/// outbox messages it committed, in publication order (for the relay, in memory).
#[derive(Debug, Default)]
pub struct Committed {
    pub results: Vec<Processed>,
    pub messages: Vec<store::outbox::Publication>,
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

/// One message for the pipeline: a decoded command, or a message already refused (it did not
/// decode, or it kept failing) whose rejection only needs recording.
#[derive(Debug)]
pub enum Message<'a> {
    Command(Incoming),
    Refused {
        meta: MessageMeta,
        rejection: Rejection,
        /// The body, kept as a dead letter with the rejection.
        dead_letter: Option<DeadLetter<'a>>,
    },
}

impl Message<'_> {
    fn command_id(&self) -> Uuid {
        match self {
            Message::Command(incoming) => incoming.command_id,
            Message::Refused { meta, .. } => meta.command_id,
        }
    }

    /// What a rejection of this message needs to know.
    pub fn meta(&self) -> MessageMeta {
        match self {
            Message::Command(incoming) => incoming.meta(),
            Message::Refused { meta, .. } => meta.clone(),
        }
    }
}

/// What a group keeps for its end, besides its transaction: an inbox row per command, the
/// outbox messages (each outcome, then its events) and the new runs, written together.
struct Records<'t> {
    /// Outcome and sender of each command of the group, in order (the inbox rows).
    outcomes: Vec<(Outcome, Option<Uuid>)>,
    /// Position in `outcomes` by command id: a command id met twice in a group is a duplicate.
    by_id: HashMap<Uuid, usize>,
    messages: store::outbox::Messages,
    batch: store::changes::Batch,
    reads: Reads<'t>,
    /// The largest message payload the server takes (bytes).
    max_message: usize,
    signing: command::Signing,
}

impl Records<'_> {
    fn outcome_of(&self, id: Uuid) -> Option<&Outcome> {
        self.by_id.get(&id).map(|&i| &self.outcomes[i].0)
    }

    /// Keeps `outcome` as its command's one outcome; its message is already in `messages`.
    fn keep(&mut self, outcome: Outcome, sender: Option<Uuid>) -> Processed {
        self.by_id.insert(outcome.command_id, self.outcomes.len());
        self.outcomes.push((outcome.clone(), sender));
        Processed::Fresh(outcome)
    }
}

/// The command pipeline of a worker process: its database and subjects, and what it keeps in
/// memory from one group to the next (the templates of approved versions). Clones share it.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub db: DatabaseConnection,
    pub subjects: Subjects,
    signing: command::Signing,
    approved: store::procedures::ApprovedTemplates,
}

impl Pipeline {
    pub fn new(db: DatabaseConnection, subjects: Subjects, signing: command::Signing) -> Pipeline {
        Pipeline {
            db,
            subjects,
            signing,
            approved: Default::default(),
        }
    }

    /// Runs a group of messages through the pipeline (module doc) in one transaction, in order:
    /// one commit for the group (group commit), so the commit rate stops being the ceiling, and
    /// one statement each for the group's inbox check, inbox rows and outbox messages. A use case
    /// only reads and a rejection writes nothing, so no command needs a savepoint. Returns one
    /// result per message, in order, with the messages committed. A database error fails the
    /// whole group and commits nothing: the caller retries the messages (alone, to find the one
    /// that fails).
    ///
    /// `max_message` is the largest payload the server takes: an accepted command that would
    /// publish a larger message is rejected as `too_large` instead, with nothing written.
    pub async fn process_group(
        &self,
        messages: Vec<Message<'_>>,
        max_message: usize,
        now: DateTime<Utc>,
    ) -> Result<Committed, GroupError> {
        let (db, subjects) = (&self.db, &self.subjects);
        let txn = store::begin(db).await?;
        let ids: Vec<Uuid> = messages.iter().map(Message::command_id).collect();
        let stored = store::inbox::find_many(&txn, &ids).await?;
        let mut records = Records {
            outcomes: Vec::with_capacity(messages.len()),
            by_id: HashMap::with_capacity(messages.len()),
            messages: store::outbox::Messages::default(),
            batch: store::changes::Batch::default(),
            reads: Reads::new(&txn, &self.approved),
            max_message,
            signing: self.signing,
        };
        let mut processed = Vec::with_capacity(messages.len());
        for message in messages {
            let id = message.command_id();
            if let Some(outcome) = stored.get(&id).or(records.outcome_of(id)) {
                processed.push(Processed::Duplicate(outcome.clone()));
                continue;
            }
            processed.push(match message {
                Message::Command(incoming) => {
                    let span = info_span!("command", command = %incoming.name(), command_id = %incoming.command_id,
                        correlation_id = incoming.correlation_id.as_deref().unwrap_or(""),
                        traceparent = incoming.traceparent.as_deref().unwrap_or(""));
                    apply(&txn, subjects, &mut records, incoming, now)
                        .instrument(span)
                        .await?
                }
                Message::Refused {
                    meta,
                    rejection,
                    dead_letter,
                } => refuse(&txn, subjects, &mut records, &meta, rejection, now, dead_letter).await?,
            });
        }
        // The group's inserts, together (one round trip on SQLite). An inbox row another worker
        // committed meanwhile fails them: its effect stands, and this group, retried, answers
        // with its outcome.
        let Records {
            outcomes,
            messages,
            batch,
            ..
        } = records;
        let mut writes = store::writes::Writes::new(db.get_database_backend());
        batch.write_into(&mut writes)?;
        store::inbox::insert_into(&mut writes, &outcomes)?;
        let messages = messages.write_into(&mut writes)?;
        let returned = writes.run(&txn).await?;
        let messages = store::outbox::numbered(messages, &returned)?;
        txn.commit().await?;
        Ok(Committed {
            results: processed,
            messages,
        })
    }

    /// One message in a transaction of its own.
    pub async fn process_one(
        &self,
        message: Message<'_>,
        max_message: usize,
        now: DateTime<Utc>,
    ) -> Result<(Processed, Vec<store::outbox::Publication>), GroupError> {
        let mut committed = self.process_group(vec![message], max_message, now).await?;
        let processed = committed
            .results
            .pop()
            .ok_or_else(|| GroupError::Bug("a group of one gave no result".into()))?;
        Ok((processed, committed.messages))
    }
}

/// One command inside the group's transaction (not a duplicate: the group checked).
async fn apply(
    txn: &DatabaseTransaction,
    subjects: &Subjects,
    records: &mut Records<'_>,
    incoming: Incoming,
    now: DateTime<Utc>,
) -> Result<Processed, GroupError> {
    let Some((actor, team_name)) = records.reads.actor(incoming.actor).await? else {
        let r = Rejection::new(
            ErrorCode::Forbidden,
            format!("no system {} is registered", incoming.actor),
        );
        return refuse(txn, subjects, records, &incoming.meta(), r, now, None).await;
    };
    let meta = MessageMeta {
        team: Some(actor.team_id.0),
        ..incoming.meta()
    };
    let token = match incoming
        .signed
        .as_ref()
        .and_then(|s| s.token_key(actor.public_key.as_deref()))
    {
        Some(key) => Some(store::tokens::active(txn, actor.id.0, key, now).await?),
        None => None,
    };
    if let Err(r) = check_signature(&actor, incoming.signed.as_ref(), token, records.signing) {
        return refuse(txn, subjects, records, &meta, r, now, None).await;
    }
    let name = incoming.name();
    let plan = match decide(&mut records.reads, &actor, incoming.command, now).await {
        Ok(plan) => plan,
        Err(CommandError::Rejected(r)) => {
            return refuse(txn, subjects, records, &meta, r, now, None).await;
        }
        Err(CommandError::Store(e)) => return Err(e.into()),
    };
    let outcome = Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: incoming.command_id,
        command: name.as_str().to_owned(),
        verdict: Verdict::Accepted {
            result: plan.receipt.into(),
        },
        processed_at: now,
    };
    let cause = Causation {
        command_id: incoming.command_id,
        correlation_id: incoming.correlation_id.as_deref(),
        traceparent: incoming.traceparent.as_deref(),
        actor: actor.id.0,
        team_name: &team_name,
        at: now,
    };
    let first = records.messages.len();
    records
        .messages
        .outcome(subjects, &outcome, meta.team, meta.reply_to.as_deref())?;
    // After the outcome: a sender learns the ids it created (run, tasks) before the events
    // that mention them.
    records.messages.events(subjects, &cause, &plan.events)?;
    if let Some((kind, size)) = records.messages.oversized(first, records.max_message) {
        // Found before anything is written: the plan is dropped, the rejection is the outcome.
        let rejection = too_large(kind, size, records.max_message);
        records.messages.truncate(first);
        return refuse(txn, subjects, records, &meta, rejection, now, None).await;
    }
    for change in &plan.changes {
        records.reads.applied(change);
    }
    store::changes::apply(txn, &mut records.batch, plan.changes, now).await?;
    Ok(records.keep(outcome, Some(actor.id.0)))
}

/// The rejection of a command one of whose messages (`kind`: `outcome`, `event.<type>`) would
/// be `size` bytes, over the server's `limit`.
fn too_large(kind: &str, size: usize, limit: usize) -> Rejection {
    let what = kind.strip_prefix("event.").unwrap_or(kind);
    Rejection {
        code: ErrorCode::TooLarge,
        message: format!(
            "the {what} message this command would publish is {size} bytes of JSON; the NATS \
             server takes at most {limit}: nothing was applied, send less text"
        ),
        field: Some(what.to_owned()),
    }
}

/// Another team's entity answers exactly as one that does not exist (`not_found`, the same
/// message), so naming an id tells a system nothing about other teams.
fn within_team(actor: &Actor, team: TeamId, what: &str, id: Uuid) -> Result<(), Rejection> {
    if actor.team_id == team {
        Ok(())
    } else {
        Err(Rejection::not_found(what, id))
    }
}

/// A system with a registered key must sign each command with it; others may, unchecked. A
/// command signed by a token's key (`token`: whether that key is an active token of the
/// system) is checked against that key, whatever the system has registered.
fn check_signature(
    actor: &Actor,
    signed: Option<&Signed>,
    token: Option<bool>,
    signing: command::Signing,
) -> Result<(), Rejection> {
    let forbidden = |message: String| Rejection::new(ErrorCode::Forbidden, message);
    let Some(key) = command::verifying_key(signed, token, actor, signing)? else {
        return Ok(());
    };
    let Some(signed) = signed else {
        return Err(forbidden(format!(
            "system {} signs its commands: this one carries no Sop-Signature",
            actor.id
        )));
    };
    crate::wire::signature::verify(key, &signed.message, &signed.signature)
        .map_err(|e| forbidden(format!("command of system {}: {e}", actor.id)))
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

/// The body of a message given up on, kept as a dead letter with its rejection.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
}

/// Characters of a rejection's message kept in its outcome.
const MAX_REJECTION_TEXT: usize = 2_000;

/// Records a rejection as the command's one outcome. Also the path for messages that never
/// decoded into a command.
async fn refuse(
    txn: &DatabaseTransaction,
    subjects: &Subjects,
    records: &mut Records<'_>,
    meta: &MessageMeta,
    rejection: Rejection,
    now: DateTime<Utc>,
    dead_letter: Option<DeadLetter<'_>>,
) -> Result<Processed, GroupError> {
    // Messages and fields may quote what was sent (a risk level, a subject): bounded, so a
    // rejection outcome stays small whatever the command carried.
    let outcome = Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: meta.command_id,
        command: text::excerpt(&meta.command, MAX_REJECTION_TEXT, 4 * MAX_REJECTION_TEXT),
        verdict: Verdict::Rejected {
            error: ErrorBody {
                code: rejection.code.as_str().to_owned(),
                message: text::excerpt(
                    &rejection.message,
                    MAX_REJECTION_TEXT,
                    4 * MAX_REJECTION_TEXT,
                ),
                field: rejection
                    .field
                    .map(|f| text::excerpt(&f, text::MAX_NAME, 4 * text::MAX_NAME)),
            },
        },
        processed_at: now,
    };
    if let (Some(dead), Verdict::Rejected { error }) = (dead_letter, &outcome.verdict) {
        store::dead_letters::record(
            txn,
            meta.command_id,
            dead.subject,
            &error.code,
            &error.message,
            dead.payload,
            now,
        )
        .await?;
    }
    records
        .messages
        .outcome(subjects, &outcome, meta.team, meta.reply_to.as_deref())?;
    Ok(records.keep(outcome, meta.actor))
}

/// A command to its family's use case.
async fn decide(
    reads: &mut Reads<'_>,
    actor: &Actor,
    command: Command,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    match command {
        Command::Procedure(command) => procedures::handle(reads, actor, command, now).await,
        Command::Run(command) => runs::handle(reads, actor, command, now).await,
        Command::Policy(command) => policies::handle(reads, actor, command, now).await,
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnAcquireErr, DbErr};

    use super::{FailureKind, GroupError};

    #[test]
    fn a_failure_says_whether_a_retry_can_help() {
        let lost = GroupError::Store(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert_eq!(lost.kind(), FailureKind::Transient);
        let broken = GroupError::Store(DbErr::RecordNotInserted);
        assert_eq!(broken.kind(), FailureKind::Persistent);
        let corrupt = GroupError::Store(DbErr::Type("run status 'paused?'".into()));
        assert_eq!(
            corrupt.kind(),
            FailureKind::Bug,
            "a corrupt row is not retried"
        );
        let bug = GroupError::Bug("a group of one gave no result".into());
        assert_eq!(bug.kind(), FailureKind::Bug);
    }
}

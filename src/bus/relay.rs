//! The outbox relay: publishes committed events and outcomes to JetStream in commit order,
//! each with `Nats-Msg-Id` = its message id, awaits every PubAck, then takes the messages off
//! the pending list. A crash between the two re-publishes, and the stream's duplicate
//! window drops the copy; listeners can also de-duplicate on `event_id`.
//!
//! With several workers on Postgres, one relay publishes at a time (a transaction-scoped
//! advisory lock), which keeps the global order. SQLite deployments run one worker.
//!
//! The relay links each team's events into its hash chain ([`store::chain`]) in the order it
//! publishes them, and records the links before the events go out. On Postgres a pass
//! publishes what the pass before linked and links the next batch, in one transaction; on
//! SQLite a pass links and publishes, and the links are recorded with the take-off.
//!
//! The worker hands what it committed to its relay in memory ([`Handoff`]): outcomes reach
//! their senders right after the commit, and the relay reads back from the database only
//! the messages it was not handed (another process's, or after a restart).
//!
//! A failed publish stops the pass there: what was acknowledged before it is published, the
//! rest is sent again. A message the server will never accept is parked (see [`parking`]):
//! taken off the pending list onto `outbox_parked`, in the transaction that takes off what
//! was published, so that it holds up nothing behind it. Any other failure is retried, in
//! order, with backoff.

use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait,
};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::store::{
    self,
    outbox::{self, Publication},
};
use parking::{Failure, Strikes};

mod parking;

/// Messages per relay pass at most: one query, one pipelined publish, one delete.
const BATCH: u64 = 1024;
/// Messages of the first pass after a wait. Small, so the outcome of a large execute (its
/// first message) goes out without waiting for a read of all its events; passes then grow
/// fourfold while they come back full.
const FIRST_PASS: u64 = 64;
/// Fallback poll, for messages committed by another worker process.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("publishing outbox message {seq} to {subject}: {source}")]
    Publish {
        seq: i64,
        subject: String,
        #[source]
        source: PublishError,
    },
}

impl RelayError {
    fn publish(message: &Publication, source: PublishError) -> RelayError {
        RelayError::Publish {
            seq: message.seq,
            subject: message.subject.clone(),
            source,
        }
    }
}

/// Most payload bytes the handoff keeps: beyond them (a relay that cannot publish, or a huge
/// burst) messages are read back from the database instead.
const HANDOFF_MAX_BYTES: usize = 16 << 20;

/// Messages this process committed, handed from the worker to its relay in memory. Only a
/// shortcut: an outbox row never changes once written, so a message kept here is that row,
/// and one not kept here is read from the database.
#[derive(Default)]
pub struct Handoff {
    kept: Mutex<Kept>,
    wake: Notify,
}

#[derive(Default)]
struct Kept {
    messages: BTreeMap<i64, Publication>,
    bytes: usize,
}

impl Kept {
    fn remove(&mut self, seq: i64) -> Option<Publication> {
        let message = self.messages.remove(&seq)?;
        self.bytes -= message.payload.len();
        Some(message)
    }
}

impl Handoff {
    /// After a commit: sends each outcome to its sender at once, then keeps the messages for
    /// the relay and wakes it. The relay no longer answers a sender this did (a message read
    /// back from the database still has its sender, and answers it again: best effort, at
    /// least once).
    pub async fn committed(&self, nats: &async_nats::Client, mut messages: Vec<Publication>) {
        for message in &mut messages {
            if let Some(reply) = message.reply_to.take() {
                // The sender hears its outcome before the events that follow it on this
                // connection; the outcome is committed and goes to its stream anyway.
                let _ = nats.publish(reply, message.payload.clone()).await;
            }
        }
        self.keep(messages);
        self.wake.notify_one();
    }

    /// Keeps messages in order until [`HANDOFF_MAX_BYTES`]; the rest are read back.
    fn keep(&self, messages: Vec<Publication>) {
        let mut kept = self.lock();
        for message in messages {
            if kept.bytes + message.payload.len() > HANDOFF_MAX_BYTES {
                break;
            }
            kept.bytes += message.payload.len();
            if let Some(old) = kept.messages.insert(message.seq, message) {
                kept.bytes -= old.payload.len();
            }
        }
    }

    /// Takes out the kept messages of `seqs` (the oldest pending, ascending), and forgets
    /// those older than the first: not pending, so published meanwhile.
    fn take(&self, seqs: &[i64]) -> HashMap<i64, Publication> {
        let mut kept = self.lock();
        let Some(&first) = seqs.first() else {
            return HashMap::new();
        };
        let older: Vec<i64> = kept.messages.range(..first).map(|(&s, _)| s).collect();
        for seq in older {
            kept.remove(seq);
        }
        seqs.iter()
            .filter_map(|&seq| kept.remove(seq).map(|m| (seq, m)))
            .collect()
    }

    /// Forgets everything: another process's relay publishes these.
    fn clear(&self) {
        *self.lock() = Kept::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let kept = self.lock();
        (kept.messages.len(), kept.bytes)
    }
}

/// The pending messages of one pass (after `after`, when given), in the order to publish them.
async fn next_batch(
    db: &impl ConnectionTrait,
    handoff: &Handoff,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<Publication>, DbErr> {
    let seqs = outbox::pending(db, after, limit).await?;
    gather(db, handoff, &seqs).await
}

/// The messages at the positions `seqs` (ascending), handed over or read back with their
/// links, in the order to publish them ([`store::chain::in_chain_order`]).
async fn gather(
    db: &impl ConnectionTrait,
    handoff: &Handoff,
    seqs: &[i64],
) -> Result<Vec<Publication>, DbErr> {
    let mut handed = handoff.take(seqs);
    let missing: Vec<i64> = seqs
        .iter()
        .copied()
        .filter(|seq| !handed.contains_key(seq))
        .collect();
    let mut read: HashMap<i64, Publication> = outbox::by_seqs(db, &missing)
        .await?
        .into_iter()
        .map(|m| (m.publication.seq, m.publication))
        .collect();
    let mut batch = seqs
        .iter()
        .filter_map(|seq| handed.remove(seq).or_else(|| read.remove(seq)))
        .collect();
    store::chain::in_chain_order(&mut batch);
    Ok(batch)
}

/// The SQLite relay's side of the chain: the heads it has moved, and the runs it linked and
/// published that are not recorded yet, which it records with what it takes off the pending
/// list. Commands commit one at a time in position order there, so a relay that restarts
/// before recording them links the same messages again the same way.
#[derive(Default)]
struct Linking {
    heads: store::chain::Heads,
    unrecorded: Vec<entity::outbox_chain::Model>,
}

impl Linking {
    /// Links the batch's events, reading the heads of teams met for the first time.
    async fn link(
        &mut self,
        db: &impl ConnectionTrait,
        batch: &mut [Publication],
    ) -> Result<(), DbErr> {
        let unknown: std::collections::BTreeSet<uuid::Uuid> = store::chain::unlinked_teams(batch)
            .into_iter()
            .filter(|team| !self.heads.contains_key(team))
            .collect();
        if !unknown.is_empty() {
            let read = store::teams::chain_heads(db, &unknown).await?;
            self.heads.extend(read);
        }
        let runs = store::chain::link(batch, &mut self.heads)?;
        self.unrecorded.extend(runs);
        Ok(())
    }

    /// Records the runs not recorded yet (on `db`, a transaction); [`Linking::recorded`]
    /// once that is committed.
    async fn record_on(&self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        store::chain::record(db, &self.unrecorded, &self.heads).await
    }

    fn recorded(&mut self) {
        self.unrecorded.clear();
    }
}

/// What a Postgres relay linked and committed in one pass, to publish at the start of its
/// next: the chain stays in flight (linked, recorded, not yet published) between the two, so
/// one commit per pass both takes off what was published and records what was linked.
struct Prepared {
    batch: Vec<Publication>,
    /// Each team's chain as it left it: linked through this place, published through the one
    /// before its first link.
    linked: HashMap<uuid::Uuid, (i64, i64)>,
}

impl Prepared {
    /// Whether the chains in flight are the ones it linked: no other relay published them
    /// meanwhile.
    fn in_flight(&self, chains: &[(uuid::Uuid, i64, i64)]) -> bool {
        chains.len() == self.linked.len()
            && chains.iter().all(|(team, published, length)| {
                self.linked.get(team) == Some(&(*published, *length))
            })
    }
}

/// Postgres: links the batch's events and records them, in the relay's transaction `txn`,
/// which the caller commits before publishing any: whichever relay publishes them then sends
/// the same links. Returns each team's chain as published through and linked through.
async fn link_first(
    txn: &DatabaseTransaction,
    batch: &mut [Publication],
) -> Result<HashMap<uuid::Uuid, (i64, i64)>, DbErr> {
    let teams = store::chain::unlinked_teams(batch);
    if teams.is_empty() {
        return Ok(HashMap::new());
    }
    let mut heads = store::teams::chain_heads(txn, &teams).await?;
    let from: HashMap<uuid::Uuid, i64> = heads.iter().map(|(t, h)| (*t, h.length)).collect();
    let runs = store::chain::link(batch, &mut heads)?;
    store::chain::record(txn, &runs, &heads).await?;
    Ok(heads
        .iter()
        .map(|(team, head)| (*team, (from[team], head.length)))
        .collect())
}

/// How the publishes of one pass went.
struct Sent {
    batch: Vec<Publication>,
    /// How many of the batch, from its first, were acknowledged before any failure: those
    /// are published. The rest are sent again by the next pass (the streams drop copies).
    acked: usize,
    /// How many, from the first, were sent (and their senders answered).
    sent: usize,
    failure: Option<Failed>,
}

/// The first message of a pass that failed.
struct Failed {
    /// Its index in the batch.
    index: usize,
    error: PublishError,
    /// Whether a message sent after it in the same pass was acknowledged.
    later_acked: bool,
}

impl Sent {
    fn published(&self) -> Vec<i64> {
        self.batch[..self.acked].iter().map(|m| m.seq).collect()
    }

    /// What the next pass sends again, for the handoff to keep: from the failed message on
    /// (after it, when it was parked), each without the sender this pass answered.
    fn unpublished(self, parked: bool) -> Vec<Publication> {
        let sent = self.sent;
        self.batch
            .into_iter()
            .enumerate()
            .skip(self.acked + usize::from(parked))
            .map(|(i, mut message)| {
                if i < sent {
                    message.reply_to = None;
                }
                message
            })
            .collect()
    }
}

/// Publishes a batch of pending messages; taking them off the pending list, or parking, is
/// the caller's.
async fn publish_batch(js: &Context, nats: &async_nats::Client, batch: Vec<Publication>) -> Sent {
    // Send the whole batch, then await the acks: one round trip per batch, order kept.
    let mut acks = Vec::with_capacity(batch.len());
    let mut unsent = None;
    for message in &batch {
        let mut publish = PublishMessage::build()
            .payload(message.payload.clone())
            .message_id(message.message_id.to_string());
        for (name, value) in message
            .headers
            .iter()
            .filter_map(|h| h.as_object())
            .flatten()
        {
            if let Some(value) = value.as_str() {
                publish = publish.header(name.as_str(), value);
            }
        }
        match js.send_publish(message.subject.clone(), publish).await {
            Ok(ack) => acks.push(ack),
            Err(error) => {
                // Nothing after it is sent, so none overtakes it.
                unsent = Some(error);
                break;
            }
        }
        if let Some(reply) = &message.reply_to {
            // Read back, so maybe never answered (the worker stopped before it could): best
            // effort, and in line, before the events that follow on this connection.
            let _ = nats.publish(reply.clone(), message.payload.clone()).await;
        }
    }
    let sent = acks.len();
    let mut acks = acks.into_iter();
    let mut acked = 0;
    let mut failure = None;
    for ack in acks.by_ref() {
        match ack.await {
            Ok(_) => acked += 1,
            Err(error) => {
                failure = Some(Failed {
                    index: acked,
                    error,
                    later_acked: false,
                });
                break;
            }
        }
    }
    match &mut failure {
        Some(failed) => {
            if parking::classify(&failed.error) == Failure::Unanswered {
                // Awaited together, so the rest cost one timeout at most.
                failed.later_acked = futures::future::join_all(acks.map(IntoFuture::into_future))
                    .await
                    .iter()
                    .any(Result::is_ok);
            }
        }
        None => {
            failure = unsent.map(|error| Failed {
                index: sent,
                error,
                later_acked: false,
            });
        }
    }
    Sent {
        batch,
        acked,
        sent,
        failure,
    }
}

/// On SQLite, how long published messages may stay on the pending list before they are taken
/// off, all in one write: each write is a transaction with a sync of the WAL on the one
/// connection the commands also need. Well inside the streams' duplicate window, which drops
/// the copies a restart in between re-publishes.
const UNLIST_AFTER: Duration = Duration::from_millis(100);

/// SQLite: the messages published and still on the pending list, and when the first of those
/// was published. SQLite has one writer, so messages commit in `seq` order, and the relay
/// publishes in that order: every message pending above the last parked one (`floor`) and up
/// to the last one published (`through`) is published, and one range delete takes them off.
/// The relay reads only what is pending after `through`.
///
/// Only a parked message is ever listed again behind the relay's back (`sop outbox
/// republish`), and parked messages are at most `floor`: the range never covers one, and the
/// few published at or below `floor` (republished) are taken off one by one.
#[derive(Default)]
struct Unlisted {
    /// The highest `seq` parked, once read (`Some(None)`: none parked).
    floor: Option<Option<i64>>,
    /// The last message published, and when the first still listed was.
    through: Option<(i64, Instant)>,
    /// Published messages at or below `floor`.
    exact: Vec<i64>,
}

/// What taking the published messages off the list deletes.
#[derive(Debug, PartialEq, Eq)]
struct TakeOff {
    /// Every pending `seq` above `above` (when given) up to `through`…
    range: Option<(Option<i64>, i64)>,
    /// …and these.
    exact: Vec<i64>,
}

impl Unlisted {
    fn floor(&self) -> Option<i64> {
        self.floor.flatten()
    }

    /// Reads the highest parked `seq`, once.
    async fn know_floor(&mut self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        if self.floor.is_none() {
            self.floor = Some(outbox::last_parked(db).await?);
        }
        Ok(())
    }

    /// Where the next read starts: after everything published and still listed.
    fn after(&self) -> Option<i64> {
        let exact = self.exact.iter().copied().max();
        self.through.map(|(seq, _)| seq).max(exact)
    }

    fn published(&mut self, seqs: &[i64]) {
        let Some(&last) = seqs.last() else {
            return;
        };
        let since = self.through.map_or_else(Instant::now, |(_, since)| since);
        let floor = self.floor();
        let split = seqs.partition_point(|&seq| Some(seq) <= floor);
        self.exact.extend_from_slice(&seqs[..split]);
        self.through = Some((last, since));
    }

    /// When the published messages are due to be taken off the list, if there are any.
    fn due(&self) -> Option<Instant> {
        self.through.map(|(_, since)| since + UNLIST_AFTER)
    }

    fn take_off_plan(&self) -> TakeOff {
        let floor = self.floor();
        TakeOff {
            range: self
                .through
                .map(|(seq, _)| (floor, seq))
                .filter(|&(above, through)| Some(through) > above),
            exact: self.exact.clone(),
        }
    }

    /// Takes the published messages off the list (on `db`, a connection or a transaction);
    /// [`Unlisted::taken_off`] once that is committed.
    async fn take_off_on(&self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        let plan = self.take_off_plan();
        if let Some((above, through)) = plan.range {
            outbox::mark_published_through(db, above, through).await?;
        }
        outbox::mark_published(db, &plan.exact).await
    }

    fn taken_off(&mut self) {
        self.through = None;
        self.exact.clear();
    }

    /// `seq` was parked, and what was published taken off the list in the same transaction.
    fn parked(&mut self, seq: i64) {
        self.taken_off();
        self.floor = Some(self.floor().max(Some(seq)));
    }
}

/// What one relay pass did.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Published this many; on Postgres, read this many for the next pass to publish (`0`:
    /// nothing to do, or another relay holds the lock).
    Published(usize),
    /// Set a message aside; the messages behind it go in the next pass, at once.
    Parked,
}

/// Why to park the failed message of a pass, if it is to be parked; counts its strikes.
fn park_reason(failed: &Failed, seq: i64, strikes: &mut Strikes, now: Instant) -> Option<String> {
    match parking::classify(&failed.error) {
        Failure::Refused => {
            strikes.clear();
            Some(failed.error.to_string())
        }
        Failure::Unanswered => strikes.unanswered(seq, failed.later_acked, now),
        Failure::Transient => {
            strikes.clear();
            None
        }
    }
}

/// The relay's state between passes.
#[derive(Default)]
struct Relay {
    unlisted: Unlisted,
    linking: Linking,
    prepared: Option<Prepared>,
    strikes: Strikes,
}

impl Relay {
    /// SQLite: takes the published messages off the list and records the runs linked so far,
    /// together.
    async fn take_off(&mut self, db: &DatabaseConnection) -> Result<(), DbErr> {
        if self.linking.unrecorded.is_empty() {
            if self.unlisted.through.is_some() {
                self.unlisted.take_off_on(db).await?;
                self.unlisted.taken_off();
            }
            return Ok(());
        }
        let txn = store::begin(db).await?;
        self.unlisted.take_off_on(&txn).await?;
        self.linking.record_on(&txn).await?;
        txn.commit().await?;
        self.unlisted.taken_off();
        self.linking.recorded();
        Ok(())
    }
}

/// One relay pass of at most `limit` messages (on SQLite, first taking off the list what is
/// due). Messages acknowledged before a failure are taken off the list; a failed message the
/// server will never take is parked (in the same transaction); any other failure is returned
/// for the caller to retry.
async fn relay_once(
    db: &DatabaseConnection,
    js: &Context,
    nats: &async_nats::Client,
    handoff: &Handoff,
    relay: &mut Relay,
    limit: u64,
) -> Result<Pass, RelayError> {
    if db.get_database_backend() != DbBackend::Postgres {
        relay.unlisted.know_floor(db).await?;
        if relay
            .unlisted
            .due()
            .is_some_and(|due| due <= Instant::now())
        {
            // Should this fail, the messages are still read past (not published twice).
            relay.take_off(db).await?;
        }
        let mut batch = next_batch(db, handoff, relay.unlisted.after(), limit).await?;
        relay.linking.link(db, &mut batch).await?;
        let mut sent = publish_batch(js, nats, batch).await;
        relay.unlisted.published(&sent.published());
        let Some(failed) = sent.failure.take() else {
            relay.strikes.clear();
            return Ok(Pass::Published(sent.acked));
        };
        let message = sent.batch[failed.index].clone();
        let Some(reason) = park_reason(&failed, message.seq, &mut relay.strikes, Instant::now())
        else {
            handoff.keep(sent.unpublished(false));
            // Recorded now: the messages not published may be read back before the next
            // take-off, and must come back linked.
            relay.take_off(db).await?;
            return Err(RelayError::publish(&message, failed.error));
        };
        // The floor rises to this message: first take off what the range covers now.
        let txn = store::begin(db).await?;
        relay.unlisted.take_off_on(&txn).await?;
        relay.linking.record_on(&txn).await?;
        outbox::park(&txn, message.seq, &reason, Utc::now()).await?;
        txn.commit().await?;
        relay.unlisted.parked(message.seq);
        relay.linking.recorded();
        parked(&message, &reason);
        handoff.keep(sent.unpublished(true));
        return Ok(Pass::Parked);
    }
    let txn = db.begin().await?;
    if !outbox::take_relay_turn(&txn).await? {
        txn.rollback().await?;
        handoff.clear();
        // What it linked is in flight: the relay holding the turn publishes it.
        relay.prepared = None;
        return Ok(Pass::Published(0));
    }
    // Several relays may take turns here, and transactions commit out of `seq` order: each
    // pass takes off exactly what it published, before it lets go of the lock. Events linked
    // and not yet published go first, alone: nothing is linked after them until they are out.
    let in_flight = store::teams::chains_in_flight(&txn).await?;
    let batch = match relay.prepared.take() {
        Some(prepared) if prepared.in_flight(&in_flight) => prepared.batch,
        _ if in_flight.is_empty() => Vec::new(),
        _ => {
            let positions = store::chain::in_flight(&txn, &in_flight).await?;
            let mut batch = gather(&txn, handoff, &positions).await?;
            batch.retain(|p| p.chain_team.is_none() || p.link().is_some());
            batch
        }
    };
    let mut sent = publish_batch(js, nats, batch).await;
    outbox::mark_published(&txn, &sent.published()).await?;
    if let Some(failed) = sent.failure.take() {
        let message = sent.batch[failed.index].clone();
        return match park_reason(&failed, message.seq, &mut relay.strikes, Instant::now()) {
            Some(reason) => {
                outbox::park(&txn, message.seq, &reason, Utc::now()).await?;
                txn.commit().await?;
                parked(&message, &reason);
                handoff.keep(sent.unpublished(true));
                Ok(Pass::Parked)
            }
            None => {
                txn.commit().await?;
                handoff.keep(sent.unpublished(false));
                Err(RelayError::publish(&message, failed.error))
            }
        };
    }
    relay.strikes.clear();
    let through = in_flight.iter().map(|&(team, _, length)| (team, length));
    store::teams::chains_published(&txn, &through.collect()).await?;
    let mut next = next_batch(&txn, handoff, None, limit).await?;
    let linked = link_first(&txn, &mut next).await?;
    txn.commit().await?;
    let found = next.len();
    relay.prepared = (!next.is_empty()).then_some(Prepared {
        batch: next,
        linked,
    });
    Ok(Pass::Published(found))
}

/// Said once per parked message: it will not reach its stream until republished.
fn parked(message: &Publication, reason: &str) {
    warn!(
        seq = message.seq,
        subject = %message.subject,
        reason,
        "outbox message parked: the server refuses it; fix the cause, then `sop outbox republish {}`",
        message.seq
    );
}

/// Runs until `shutdown`; then drains what is left (bounded by `drain_for`) and returns.
pub async fn run(
    db: DatabaseConnection,
    js: Context,
    nats: async_nats::Client,
    handoff: Arc<Handoff>,
    mut shutdown: watch::Receiver<bool>,
    drain_for: Duration,
) {
    let mut failures = 0u32;
    let mut limit = FIRST_PASS;
    let mut relay = Relay::default();
    while !*shutdown.borrow() {
        match relay_once(&db, &js, &nats, &handoff, &mut relay, limit).await {
            Ok(Pass::Published(n)) if n as u64 == limit => limit = (limit * 4).min(BATCH),
            Ok(Pass::Parked) => failures = 0,
            Ok(Pass::Published(_)) if relay.prepared.is_some() => failures = 0,
            Ok(Pass::Published(n)) => {
                failures = 0;
                if n > 0 {
                    debug!(published = n, "relayed");
                }
                // Everything pending when this pass read was published. A commit since has
                // left its wake-up stored, so the wait below returns at once; no empty pass
                // to find that out (on Postgres a transaction of four statements per commit,
                // on SQLite a read on the writer's connection).
                limit = FIRST_PASS;
                let wait = relay
                    .unlisted
                    .due()
                    .map_or(POLL, |due| due.saturating_duration_since(Instant::now()));
                tokio::select! {
                    _ = handoff.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                failures += 1;
                let delay = super::backoff(
                    failures,
                    Duration::from_millis(200),
                    Duration::from_millis(6400),
                );
                warn!(error = %e, ?delay, "relay failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    let deadline = tokio::time::Instant::now() + drain_for;
    while tokio::time::Instant::now() < deadline {
        match relay_once(&db, &js, &nats, &handoff, &mut relay, BATCH).await {
            Ok(Pass::Published(0)) if relay.prepared.is_none() => break,
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "relay drain failed");
                break;
            }
        }
    }
    if let Err(e) = relay.take_off(&db).await {
        warn!(error = %e, "taking published messages off the pending list failed; a restart publishes them again, and the streams drop the copies");
    }
    info!("outbox relay stopped");
}

#[cfg(test)]
mod tests;

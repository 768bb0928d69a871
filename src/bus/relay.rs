//! The outbox relay: publishes committed events and outcomes to JetStream in commit order,
//! each with `Nats-Msg-Id` = its message id, awaits every PubAck, then takes the messages off
//! the pending list. A crash between the two re-publishes, and the stream's duplicate
//! window drops the copy; listeners can also de-duplicate on `event_id`.
//!
//! With several workers on Postgres, one relay publishes at a time (a transaction-scoped
//! advisory lock), which keeps the global order. SQLite deployments run one worker.
//!
//! The worker hands what it committed to its relay in memory ([`Handoff`]): outcomes reach
//! their senders right after the commit, and the relay reads back from the database only
//! the messages it was not handed (another process's, or after a restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::message::PublishMessage;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::store::outbox::{self, Publication};

/// Messages per relay pass at most: one query, one pipelined publish, one delete.
const BATCH: u64 = 1024;
/// Messages of the first pass after a wait. Small, so the outcome of a large execute (its
/// first message) goes out without waiting for a read of all its events; passes then grow
/// fourfold while they come back full.
const FIRST_PASS: u64 = 64;
/// Fallback poll, for messages committed by another worker process.
const POLL: Duration = Duration::from_millis(500);
/// Arbitrary, fixed key of the relay's Postgres advisory lock.
const RELAY_LOCK_KEY: i64 = 0x736f_7072_656c_6179; // "soprelay"

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("publishing to NATS: {0}")]
    Publish(String),
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

/// The pending messages of one pass, in `seq` order: handed over, or read back.
async fn next_batch(
    db: &impl ConnectionTrait,
    handoff: &Handoff,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<Publication>, DbErr> {
    let seqs = outbox::pending(db, after, limit).await?;
    let mut handed = handoff.take(&seqs);
    let missing: Vec<i64> = seqs
        .iter()
        .copied()
        .filter(|seq| !handed.contains_key(seq))
        .collect();
    let mut read: HashMap<i64, Publication> = outbox::by_seqs(db, &missing)
        .await?
        .into_iter()
        .map(|row| (row.seq, row.into()))
        .collect();
    Ok(seqs
        .iter()
        .filter_map(|seq| handed.remove(seq).or_else(|| read.remove(seq)))
        .collect())
}

/// Publishes the next pending messages (after `after`, when given) and returns their `seq`s;
/// taking them off the pending list is the caller's.
async fn publish_batch(
    db: &impl ConnectionTrait,
    js: &Context,
    nats: &async_nats::Client,
    handoff: &Handoff,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<i64>, RelayError> {
    let batch = next_batch(db, handoff, after, limit).await?;
    // Send the whole batch, then await the acks: one round trip per batch, order kept.
    let mut acks = Vec::with_capacity(batch.len());
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
        let ack = js
            .send_publish(message.subject.clone(), publish)
            .await
            .map_err(|e| RelayError::Publish(e.to_string()))?;
        acks.push(ack);
        if let Some(reply) = &message.reply_to {
            // Read back, so maybe never answered (the worker stopped before it could): best
            // effort, and in line, before the events that follow on this connection.
            let _ = nats.publish(reply.clone(), message.payload.clone()).await;
        }
    }
    for ack in acks {
        ack.await.map_err(|e| RelayError::Publish(e.to_string()))?;
    }
    Ok(batch.iter().map(|m| m.seq).collect())
}

/// On SQLite, how long published messages may stay on the pending list before they are taken
/// off, all in one write. Each write is a transaction with a sync of the WAL on the one
/// connection the commands also need; skipping it, as an experiment, gained ≈ 15 %
/// executes/s. Well inside the streams' duplicate window, which drops the copies a restart
/// in between re-publishes.
const UNLIST_AFTER: Duration = Duration::from_millis(100);

/// SQLite: the last message published and still on the pending list, and when the first of
/// those was published. Everything pending up to it is published: SQLite has one writer, so
/// messages commit in `seq` order, and the relay publishes in that order; the relay reads
/// only what is pending after it, and takes off everything up to it with one range delete.
#[derive(Default)]
struct Unlisted {
    through: Option<(i64, Instant)>,
}

impl Unlisted {
    fn published(&mut self, seqs: &[i64]) {
        if let Some(&last) = seqs.last() {
            let since = self.through.map_or_else(Instant::now, |(_, since)| since);
            self.through = Some((last, since));
        }
    }

    /// When the published messages are due to be taken off the list, if there are any.
    fn due(&self) -> Option<Instant> {
        self.through.map(|(_, since)| since + UNLIST_AFTER)
    }

    async fn take_off(&mut self, db: &DatabaseConnection) -> Result<(), DbErr> {
        if let Some((seq, _)) = self.through {
            outbox::mark_published_through(db, seq).await?;
            self.through = None;
        }
        Ok(())
    }
}

/// One relay pass of at most `limit` messages (on SQLite, first taking off the list what is
/// due); `Ok(0)` when there was nothing to do (or another relay holds the lock).
async fn relay_once(
    db: &DatabaseConnection,
    js: &Context,
    nats: &async_nats::Client,
    handoff: &Handoff,
    unlisted: &mut Unlisted,
    limit: u64,
) -> Result<usize, RelayError> {
    if db.get_database_backend() != DbBackend::Postgres {
        if unlisted.due().is_some_and(|due| due <= Instant::now()) {
            // Should this fail, the messages are still read past (not published twice).
            unlisted.take_off(db).await?;
        }
        let after = unlisted.through.map(|(seq, _)| seq);
        let seqs = publish_batch(db, js, nats, handoff, after, limit).await?;
        unlisted.published(&seqs);
        return Ok(seqs.len());
    }
    let txn = db.begin().await?;
    let locked = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_try_advisory_xact_lock({RELAY_LOCK_KEY}) AS locked"),
        ))
        .await?
        .map(|r| r.try_get::<bool>("", "locked"))
        .transpose()?
        .unwrap_or(false);
    if !locked {
        txn.rollback().await?;
        handoff.clear();
        return Ok(0);
    }
    // Several relays may take turns here, and transactions commit out of `seq` order: each
    // pass takes off exactly what it published, before it lets go of the lock.
    let seqs = publish_batch(&txn, js, nats, handoff, None, limit).await?;
    outbox::mark_published(&txn, &seqs).await?;
    txn.commit().await?;
    Ok(seqs.len())
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
    let mut unlisted = Unlisted::default();
    while !*shutdown.borrow() {
        match relay_once(&db, &js, &nats, &handoff, &mut unlisted, limit).await {
            Ok(n) if n as u64 == limit => limit = (limit * 4).min(BATCH),
            Ok(n) => {
                failures = 0;
                if n > 0 {
                    debug!(published = n, "relayed");
                }
                // Everything pending when this pass read was published. A commit since has
                // left its wake-up stored, so the wait below returns at once; no empty pass
                // to find that out (on Postgres a transaction of four statements per commit,
                // on SQLite a read on the writer's connection).
                limit = FIRST_PASS;
                let wait = unlisted
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
                let delay = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
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
        match relay_once(&db, &js, &nats, &handoff, &mut unlisted, BATCH).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "relay drain failed");
                break;
            }
        }
    }
    if let Err(e) = unlisted.take_off(&db).await {
        warn!(error = %e, "taking published messages off the pending list failed; a restart publishes them again, and the streams drop the copies");
    }
    info!("outbox relay stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: i64, bytes: usize) -> Publication {
        Publication {
            seq,
            message_id: uuid::Uuid::now_v7(),
            subject: format!("s.{seq}"),
            headers: None,
            payload: vec![b'x'; bytes].into(),
            reply_to: None,
        }
    }

    #[test]
    fn the_relay_takes_what_is_pending_and_forgets_what_was_published_meanwhile() {
        let handoff = Handoff::default();
        handoff.keep((1..=6).map(|s| message(s, 10)).collect());
        // 1 and 2 were published by someone else; 9 is pending but was not handed over.
        let taken = handoff.take(&[3, 4, 5, 9]);
        let mut seqs: Vec<i64> = taken.keys().copied().collect();
        seqs.sort_unstable();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(taken[&5].subject, "s.5");
        assert_eq!(handoff.kept(), (1, 10), "only 6 is left");
        assert!(handoff.take(&[]).is_empty());
        handoff.clear();
        assert_eq!(handoff.kept(), (0, 0));
    }

    #[test]
    fn published_messages_are_due_off_the_list_a_moment_after_the_first_of_them() {
        let mut unlisted = Unlisted::default();
        assert_eq!(unlisted.due(), None);
        unlisted.published(&[]);
        assert_eq!(unlisted.due(), None, "nothing published");
        let before = Instant::now();
        unlisted.published(&[3, 4, 7]);
        let due = unlisted.due().expect("due");
        assert!(due >= before + UNLIST_AFTER);
        unlisted.published(&[8, 9]);
        assert_eq!(unlisted.through.map(|(seq, _)| seq), Some(9));
        assert_eq!(
            unlisted.due(),
            Some(due),
            "the first publish sets the moment"
        );
    }

    #[test]
    fn the_handoff_keeps_at_most_its_byte_bound() {
        let handoff = Handoff::default();
        let big = HANDOFF_MAX_BYTES / 4;
        handoff.keep((1..=6).map(|s| message(s, big)).collect());
        assert_eq!(handoff.kept(), (4, 4 * big), "the rest is read back");
        assert_eq!(handoff.take(&[1, 5, 6]).len(), 1);
    }
}

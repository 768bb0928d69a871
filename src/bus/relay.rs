//! The outbox relay: publishes committed events and outcomes to JetStream in commit order,
//! each with `Nats-Msg-Id` = its message id, awaits every PubAck, then takes the messages off
//! the pending list. A crash between the two re-publishes, and the stream's duplicate
//! window drops the copy; listeners can also de-duplicate on `event_id`.
//!
//! With several workers on Postgres, one relay publishes at a time (a transaction-scoped
//! advisory lock), which keeps the global order. SQLite deployments run one worker.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::message::PublishMessage;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::store::outbox;

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

async fn publish_batch(
    db: &impl ConnectionTrait,
    js: &Context,
    nats: &async_nats::Client,
    limit: u64,
) -> Result<usize, RelayError> {
    let mut rows = outbox::unpublished(db, limit).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Send the whole batch, then await the acks: one round trip per batch, order kept.
    let mut acks = Vec::with_capacity(rows.len());
    for row in rows.iter_mut() {
        let bytes: bytes::Bytes = std::mem::take(&mut row.payload).into();
        let mut publish = PublishMessage::build()
            .payload(bytes.clone())
            .message_id(row.message_id.to_string());
        for (name, value) in row.headers.iter().filter_map(|h| h.as_object()).flatten() {
            if let Some(value) = value.as_str() {
                publish = publish.header(name.as_str(), value);
            }
        }
        let ack = js
            .send_publish(row.subject.clone(), publish)
            .await
            .map_err(|e| RelayError::Publish(e.to_string()))?;
        acks.push(ack);
        if let Some(reply) = &row.reply_to {
            // Best effort, and in line: the sender hears its outcome before the events that
            // follow it on this connection. The outcome is committed and in the stream anyway.
            let _ = nats.publish(reply.clone(), bytes).await;
        }
    }
    for ack in acks {
        ack.await.map_err(|e| RelayError::Publish(e.to_string()))?;
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    outbox::mark_published(db, &seqs).await?;
    Ok(rows.len())
}

/// One relay pass of at most `limit` messages; `Ok(0)` when there was nothing to do (or
/// another relay holds the lock).
pub async fn relay_once(
    db: &DatabaseConnection,
    js: &Context,
    nats: &async_nats::Client,
    limit: u64,
) -> Result<usize, RelayError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return publish_batch(db, js, nats, limit).await;
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
        return Ok(0);
    }
    let n = publish_batch(&txn, js, nats, limit).await?;
    txn.commit().await?;
    Ok(n)
}

/// Runs until `shutdown`; then drains what is left (bounded by `drain_for`) and returns.
pub async fn run(
    db: DatabaseConnection,
    js: Context,
    nats: async_nats::Client,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    drain_for: Duration,
) {
    let mut failures = 0u32;
    let mut limit = FIRST_PASS;
    while !*shutdown.borrow() {
        match relay_once(&db, &js, &nats, limit).await {
            Ok(n) if n as u64 == limit => limit = (limit * 4).min(BATCH),
            Ok(n) => {
                failures = 0;
                if n > 0 {
                    debug!(published = n, "relayed");
                    continue;
                }
                limit = FIRST_PASS;
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
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
        match relay_once(&db, &js, &nats, BATCH).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "relay drain failed");
                break;
            }
        }
    }
    info!("outbox relay stopped");
}

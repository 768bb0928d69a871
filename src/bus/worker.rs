//! The command consumer: pulls from the durable consumer, processes a bounded number of
//! messages concurrently, and acknowledges each only after its outcome is committed.
//!
//! Ack policy, in one place ([`disposition`]): an outcome committed (or found, for a
//! duplicate) → ack; a database error → nak with a growing delay, so the message is retried
//! until it has an outcome; a non-transient database error that persists for
//! [`MAX_ATTEMPTS`] deliveries → recorded as an `internal` rejection, then ack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use chrono::Utc;
use futures::StreamExt;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use uuid::Uuid;

use super::decode::{Arrival, decode};
use crate::application::{self, DeadLetter, MessageMeta, Processed, Rejection, Signed};
use crate::domain::error::ErrorCode;
use crate::ops::metrics::{self, Ending};
use crate::wire::command::{MSG_ID_HEADER, REPLY_TO_HEADER, TRACEPARENT_HEADER};
use crate::wire::signature::SIGNATURE_HEADER;
use crate::wire::subjects::Subjects;

/// Deliveries after which a persistent, non-transient failure becomes an `internal` rejection.
pub const MAX_ATTEMPTS: i64 = 5;

/// Namespace for command ids derived from a stream position (messages that carry no id).
const FALLBACK_NS: Uuid = Uuid::from_u128(0x5f0c_9a6e_2b1d_4e7f_8a3c_6d2e_1f4b_7c90);

pub struct WorkerContext {
    pub db: DatabaseConnection,
    pub nats: async_nats::Client,
    pub subjects: Subjects,
    /// Woken after every commit so the relay publishes without polling delay.
    pub relay: Arc<Notify>,
}

/// Errors that go away by themselves (connection lost, pool exhausted, serialisation).
pub fn is_transient(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let sqlx = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => s,
        _ => return false,
    };
    match sqlx.as_ref() {
        Sqlx::Io(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed
        | Sqlx::Tls(_) => true,
        Sqlx::Database(d) => {
            let code = d.code().unwrap_or_default();
            // 08: connection exception; 40001/40P01: serialisation failure, deadlock;
            // 57P0x: server shutting down; 5 / 6: SQLITE_BUSY / SQLITE_LOCKED.
            code.starts_with("08")
                || code == "40001"
                || code == "40P01"
                || code.starts_with("57P0")
                || code == "5"
                || code == "6"
        }
        _ => false,
    }
}

enum Disposition {
    Ack,
    Retry(Duration),
}

fn backoff(delivered: i64) -> Duration {
    let step = delivered.clamp(1, 8) as u32 - 1;
    Duration::from_millis(250 * 2u64.pow(step)).min(Duration::from_secs(15))
}

/// What the metrics know about one message.
struct Measure {
    /// The command name, or `invalid` for a message that names none.
    command: &'static str,
    started: Instant,
}

async fn disposition(
    ctx: &WorkerContext,
    result: Result<Processed, DbErr>,
    meta: &MessageMeta,
    delivered: i64,
    measure: Measure,
    letter: DeadLetter<'_>,
) -> Disposition {
    let ending = match &result {
        Ok(Processed::Duplicate(_)) => Ending::Duplicate,
        Ok(Processed::Fresh(o)) if o.is_accepted() => Ending::Accepted,
        Ok(Processed::Fresh(_)) => Ending::Rejected,
        Err(_) => Ending::Retried,
    };
    metrics::command(
        measure.command,
        ending,
        measure.started.elapsed().as_secs_f64(),
    );
    match result {
        Ok(processed) => {
            if let Processed::Duplicate(outcome) = &processed {
                // The first outcome may have been published long ago: answer this sender too.
                if let (Some(reply), Ok(bytes)) = (&meta.reply_to, serde_json::to_vec(outcome)) {
                    let _ = ctx.nats.publish(reply.clone(), bytes.into()).await;
                }
                debug!(command_id = %meta.command_id, "duplicate command; stored outcome returned");
            } else {
                ctx.relay.notify_one();
            }
            Disposition::Ack
        }
        Err(e) if is_transient(&e) || delivered < MAX_ATTEMPTS => {
            warn!(command_id = %meta.command_id, delivered, error = %e, "command failed; will retry");
            Disposition::Retry(backoff(delivered))
        }
        Err(e) => {
            warn!(command_id = %meta.command_id, delivered, error = %e, "command keeps failing; rejecting as internal");
            let rejection = Rejection::new(
                ErrorCode::Internal,
                format!("the worker could not process this command after {delivered} attempts"),
            );
            match application::record_rejection(
                &ctx.db,
                &ctx.subjects,
                meta,
                rejection,
                Utc::now(),
                Some(letter),
            )
            .await
            {
                Ok(_) => {
                    metrics::dead_letter("internal");
                    ctx.relay.notify_one();
                    Disposition::Ack
                }
                Err(_) => Disposition::Retry(backoff(delivered)),
            }
        }
    }
}

async fn handle(ctx: &WorkerContext, msg: &async_nats::jetstream::Message) -> Disposition {
    let (stream_seq, delivered) = match msg.info() {
        Ok(i) => (i.stream_sequence, i.delivered),
        Err(_) => (0, 1),
    };
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    if delivered > 1 {
        metrics::redelivered();
    }
    let started = Instant::now();
    let msg_id = header(MSG_ID_HEADER);
    let reply_to = header(REPLY_TO_HEADER);
    let traceparent = header(TRACEPARENT_HEADER);
    let subject = msg.subject.as_str();
    let arrival = Arrival {
        name: ctx.subjects.command_name(subject).unwrap_or(subject),
        payload: &msg.payload,
        msg_id: msg_id.as_deref(),
        reply_to: reply_to.as_deref(),
        fallback_id: Uuid::new_v5(&FALLBACK_NS, format!("{subject}#{stream_seq}").as_bytes()),
    };
    let now = Utc::now();
    let letter = DeadLetter {
        subject,
        payload: &msg.payload,
    };
    match decode(&arrival) {
        Ok(mut incoming) => {
            incoming.traceparent = traceparent;
            incoming.signed = header(SIGNATURE_HEADER).map(|signature| Signed {
                signature,
                body: msg.payload.to_vec(),
            });
            let meta = incoming.meta();
            let measure = Measure {
                command: incoming.name.as_str(),
                started,
            };
            let span = info_span!("command", command = %incoming.name, command_id = %incoming.command_id,
                correlation_id = incoming.correlation_id.as_deref().unwrap_or(""),
                traceparent = incoming.traceparent.as_deref().unwrap_or(""), delivered);
            let result = application::process(&ctx.db, &ctx.subjects, incoming, now)
                .instrument(span)
                .await;
            disposition(ctx, result, &meta, delivered, measure, letter).await
        }
        Err(bad) => {
            info!(command_id = %bad.meta.command_id, code = bad.rejection.code.as_str(),
                "undecodable command rejected: {}", bad.rejection.message);
            metrics::dead_letter(bad.rejection.code.as_str());
            let measure = Measure {
                command: "invalid",
                started,
            };
            let result = application::record_rejection(
                &ctx.db,
                &ctx.subjects,
                &bad.meta,
                bad.rejection,
                now,
                Some(letter),
            )
            .await;
            disposition(ctx, result, &bad.meta, delivered, measure, letter).await
        }
    }
}

/// How long one pull request waits for commands. Short, because a stopping worker processes
/// everything its last request delivers (nothing pulled is left to wait out the ack wait),
/// and stops within this bound.
const PULL_EXPIRY: Duration = Duration::from_secs(1);

fn spawn_handler(
    ctx: &Arc<WorkerContext>,
    msg: async_nats::jetstream::Message,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let verdict = handle(&ctx, &msg).await;
        let ack = match verdict {
            Disposition::Ack => msg.ack().await,
            Disposition::Retry(delay) => msg.ack_with(AckKind::Nak(Some(delay))).await,
        };
        if let Err(e) = ack {
            // The outcome is committed; a lost ack only means a redelivery, which the inbox
            // answers without a second effect.
            warn!(error = %e, "ack failed");
        }
        drop(permit);
    });
}

/// Runs until `shutdown` turns true, then stops pulling and waits for in-flight commands.
///
/// Commands are pulled in bounded batches (twice the concurrency) and handled concurrently,
/// each in its own transaction. A batch is always handled to its end, shutdown or not.
pub async fn run(
    ctx: Arc<WorkerContext>,
    consumer: PullConsumer,
    concurrency: usize,
    shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    while !*shutdown.borrow() {
        let batch = consumer
            .batch()
            .max_messages(concurrency.max(1) * 2)
            .expires(PULL_EXPIRY)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                // NATS unreachable or the consumer gone: retry, the connection reconnects.
                warn!(error = %e, "cannot pull commands; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(next) = batch.next().await {
            match next {
                Ok(msg) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    spawn_handler(&ctx, msg, permit);
                }
                Err(e) => {
                    debug!(error = %e, "pull ended early");
                    break;
                }
            }
        }
    }
    // In-flight commands finish (and are acked) before the worker reports it has stopped.
    let _ = permits.acquire_many(concurrency as u32).await;
    info!("command consumer stopped");
}

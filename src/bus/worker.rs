//! The command consumer: pulls from the durable consumer, processes the pulled messages in
//! groups (one transaction per group, a bounded number of groups at once), and acknowledges
//! each message only after its outcome is committed.
//!
//! Ack policy, in one pure function ([`disposition`]; [`settle`] carries it out), by the
//! failure's kind
//! ([`application::FailureKind`]): an outcome committed (or found, for a duplicate) → ack; a
//! transient failure → nak with a growing delay, so the message is retried until it has an
//! outcome; a persistent one that lasts [`MAX_ATTEMPTS`] deliveries, or a bug at once →
//! recorded as an `internal` rejection, then ack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::decode::{Arrival, decode, trace_context};
use crate::application::{
    self, DeadLetter, FailureKind, GroupError, MessageMeta, Processed, Rejection, Signed,
};
use crate::domain::error::ErrorCode;
use crate::ops::metrics::{self, Ending};
use crate::wire::command::{MSG_ID_HEADER, REPLY_TO_HEADER, TRACEPARENT_HEADER};
use crate::wire::outcome::Verdict;
use crate::wire::signature::{KEY_HEADER, SIGNATURE_HEADER, command_message};

/// Deliveries after which a persistent, non-transient failure becomes an `internal` rejection.
pub const MAX_ATTEMPTS: i64 = 5;

/// Namespace for command ids derived from a stream position (messages that carry no id).
const FALLBACK_NS: Uuid = Uuid::from_u128(0x5f0c_9a6e_2b1d_4e7f_8a3c_6d2e_1f4b_7c90);

pub struct WorkerContext {
    pub pipeline: application::Pipeline,
    pub nats: async_nats::Client,
    /// Given what every transaction committed, so the relay publishes without polling delay
    /// or reading it back.
    pub relay: Arc<super::relay::Handoff>,
}

/// What becomes of a pulled message.
#[derive(Debug, PartialEq, Eq)]
enum Disposition {
    /// It has its outcome: acknowledge it.
    Ack,
    /// Deliver it again after the delay.
    Retry(Duration),
    /// A retry cannot help: record an `internal` rejection as its outcome, then acknowledge.
    GiveUp,
}

/// The ack policy (module doc), from what processing gave and how often the message came.
fn disposition(result: &Result<Processed, GroupError>, delivered: i64) -> Disposition {
    match result.as_ref().map_err(GroupError::kind) {
        Ok(_) => Disposition::Ack,
        Err(FailureKind::Transient) => Disposition::Retry(backoff(delivered)),
        Err(FailureKind::Persistent) if delivered < MAX_ATTEMPTS => {
            Disposition::Retry(backoff(delivered))
        }
        Err(FailureKind::Persistent | FailureKind::Bug) => Disposition::GiveUp,
    }
}

/// A redelivery's delay: a quarter second after the first delivery, doubling to 15 s.
fn backoff(delivered: i64) -> Duration {
    let attempt = u32::try_from(delivered).unwrap_or(1);
    super::backoff(attempt, Duration::from_millis(250), Duration::from_secs(15))
}

/// What the disposition of one pulled message needs to know.
struct Prepared<'m> {
    meta: MessageMeta,
    /// The command's `correlation_id` and valid `traceparent`, for its log line.
    correlation_id: Option<String>,
    traceparent: Option<String>,
    delivered: i64,
    letter: DeadLetter<'m>,
    /// The command name, or `invalid` for a message that names none.
    command: &'static str,
    /// Why the message did not decode, when it did not.
    undecodable: Option<ErrorCode>,
}

/// Decodes a pulled message for the pipeline.
fn prepare<'m>(
    ctx: &WorkerContext,
    msg: &'m async_nats::jetstream::Message,
) -> (Prepared<'m>, application::Message<'m>) {
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
    let msg_id = header(MSG_ID_HEADER);
    let reply_to = header(REPLY_TO_HEADER);
    let subject = msg.subject.as_str();
    let arrival = Arrival {
        name: ctx
            .pipeline
            .subjects
            .command_name(subject)
            .unwrap_or(subject),
        payload: &msg.payload,
        msg_id: msg_id.as_deref(),
        reply_to: reply_to.as_deref(),
        fallback_id: Uuid::new_v5(&FALLBACK_NS, format!("{subject}#{stream_seq}").as_bytes()),
    };
    let letter = DeadLetter {
        subject,
        payload: &msg.payload,
    };
    match decode(&arrival) {
        Ok(mut incoming) => {
            incoming.traceparent = header(TRACEPARENT_HEADER).and_then(|t| trace_context(&t));
            incoming.signed = header(SIGNATURE_HEADER).map(|signature| Signed {
                signature,
                message: command_message(incoming.name().as_str(), &msg.payload),
                key: header(KEY_HEADER),
            });
            let prepared = Prepared {
                meta: incoming.meta(),
                correlation_id: incoming.correlation_id.clone(),
                traceparent: incoming.traceparent.clone(),
                command: incoming.name().as_str(),
                delivered,
                letter,
                undecodable: None,
            };
            (prepared, application::Message::Command(incoming))
        }
        Err(bad) => {
            let prepared = Prepared {
                meta: bad.meta.clone(),
                correlation_id: None,
                traceparent: header(TRACEPARENT_HEADER).and_then(|t| trace_context(&t)),
                command: "invalid",
                delivered,
                letter,
                undecodable: Some(bad.rejection.code),
            };
            let message = application::Message::Refused {
                meta: bad.meta,
                rejection: bad.rejection,
                dead_letter: Some(letter),
            };
            (prepared, message)
        }
    }
}

/// Carries out the disposition of one message: its metric and log line, the answer to a
/// duplicate's sender, the `internal` rejection of one given up on. Returns how to ack it.
async fn settle(
    ctx: &WorkerContext,
    result: Result<Processed, GroupError>,
    prepared: Prepared<'_>,
    started: Instant,
) -> AckKind {
    let Prepared {
        meta,
        correlation_id,
        traceparent,
        delivered,
        letter,
        command,
        undecodable,
    } = prepared;
    let decided = disposition(&result, delivered);
    let ending = match &result {
        Ok(Processed::Duplicate(_)) => Ending::Duplicate,
        Ok(Processed::Fresh(o)) if o.is_accepted() => Ending::Accepted,
        Ok(Processed::Fresh(_)) => Ending::Rejected,
        Err(_) => Ending::Retried,
    };
    let elapsed = started.elapsed();
    metrics::command(command, ending, elapsed.as_secs_f64());
    // One line per command, what an operator follows in the log: with the ids that tie it to
    // the agent's work and trace, and how many times it has been delivered.
    let (id, ms) = (meta.command_id, elapsed.as_secs_f64() * 1000.0);
    let correlation_id = correlation_id.as_deref().unwrap_or("");
    let traceparent = traceparent.as_deref().unwrap_or("");
    let outcome = ending.as_str();
    match result.as_ref().ok().and_then(|p| p.outcome().error_code()) {
        Some(code) => info!(command, command_id = %id, correlation_id, traceparent, delivered,
            outcome, code, ms, "command"),
        None => info!(command, command_id = %id, correlation_id, traceparent, delivered,
            outcome, ms, "command"),
    }
    match (result, decided) {
        (Ok(Processed::Duplicate(outcome)), _) => {
            // The first outcome may have been published long ago: answer this sender too.
            if let (Some(reply), Ok(bytes)) = (&meta.reply_to, serde_json::to_vec(&outcome)) {
                let _ = ctx.nats.publish(reply.clone(), bytes.into()).await;
            }
            debug!(command_id = %id, "duplicate command; stored outcome returned");
            AckKind::Ack
        }
        (Ok(Processed::Fresh(outcome)), _) => {
            if let (Some(code), Verdict::Rejected { error }) = (undecodable, &outcome.verdict) {
                info!(command_id = %id, code = code.as_str(),
                    "undecodable command rejected: {}", error.message);
                metrics::dead_letter(code);
            }
            AckKind::Ack
        }
        (Err(e), Disposition::Retry(delay)) => {
            warn!(command_id = %id, delivered, error = %e, "command failed; will retry");
            AckKind::Nak(Some(delay))
        }
        (Err(e), _) => {
            warn!(command_id = %id, delivered, error = %e, "command cannot be processed; rejecting as internal");
            let why = match e.kind() {
                FailureKind::Bug => "an internal error, in the worker's log".to_owned(),
                _ => format!("failed {delivered} attempts"),
            };
            let refused = application::Message::Refused {
                rejection: Rejection::new(
                    ErrorCode::Internal,
                    format!("the worker could not process this command: {why}"),
                ),
                meta,
                dead_letter: Some(letter),
            };
            match process_alone(ctx, refused, Utc::now()).await {
                Ok(_) => {
                    metrics::dead_letter(ErrorCode::Internal);
                    AckKind::Ack
                }
                Err(_) => AckKind::Nak(Some(backoff(delivered))),
            }
        }
    }
}

/// Room left in a message for its headers (`Nats-Msg-Id`, a bounded `traceparent`): the
/// server's `max_payload` counts them with the payload.
const HEADER_ROOM: usize = 512;

/// The largest payload the worker may commit a message with: what the server it is connected
/// to takes now (read from its INFO, so a lowered limit applies from the next command on).
fn max_message(ctx: &WorkerContext) -> usize {
    ctx.nats.max_payload().saturating_sub(HEADER_ROOM)
}

/// One message in a transaction of its own; what it committed goes to the relay.
async fn process_alone(
    ctx: &WorkerContext,
    message: application::Message<'_>,
    now: chrono::DateTime<Utc>,
) -> Result<Processed, GroupError> {
    let limit = max_message(ctx);
    let (processed, messages) = ctx.pipeline.process_one(message, limit, now).await?;
    ctx.relay.committed(&ctx.nats, messages).await;
    Ok(processed)
}

/// Handles the messages of one group: together in one transaction, or, when that fails, one
/// by one, so a message that cannot be processed holds up only itself.
async fn handle_group(
    ctx: &WorkerContext,
    msgs: &[async_nats::jetstream::Message],
) -> Vec<AckKind> {
    let started = Instant::now();
    let now = Utc::now();
    let mut dispositions = Vec::with_capacity(msgs.len());
    for msg in msgs {
        if msg.info().is_ok_and(|i| i.delivered > 1) {
            metrics::redelivered();
        }
    }
    if msgs.len() > 1 {
        let (prepared, messages): (Vec<_>, Vec<_>) = msgs.iter().map(|m| prepare(ctx, m)).unzip();
        let size = msgs.len();
        let limit = max_message(ctx);
        match ctx.pipeline.process_group(messages, limit, now).await {
            Ok(committed) => {
                metrics::transaction(committed.results.len());
                ctx.relay.committed(&ctx.nats, committed.messages).await;
                for (p, result) in prepared.into_iter().zip(committed.results) {
                    dispositions.push(settle(ctx, Ok(result), p, started).await);
                }
                return dispositions;
            }
            Err(e) => debug!(error = %e, size, "group failed; processing its commands one by one"),
        }
    }
    for msg in msgs {
        let (p, message) = prepare(ctx, msg);
        let result = process_alone(ctx, message, now).await;
        if result.is_ok() {
            metrics::transaction(1);
        }
        dispositions.push(settle(ctx, result, p, started).await);
    }
    dispositions
}

/// How long one pull request waits for commands. Short, because a stopping worker processes
/// everything its last request delivers (nothing pulled is left to wait out the ack wait),
/// and stops within this bound.
const PULL_EXPIRY: Duration = Duration::from_secs(1);

/// Most messages one pull request asks for: bounds what a worker holds unacknowledged, and
/// so the size of a group.
pub const MAX_PULL: usize = 256;

fn spawn_group(
    ctx: &Arc<WorkerContext>,
    msgs: Vec<async_nats::jetstream::Message>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let verdicts = handle_group(&ctx, &msgs).await;
        for (msg, ack) in msgs.iter().zip(verdicts) {
            if let Err(e) = msg.ack_with(ack).await {
                // The outcome is committed; a lost ack only means a redelivery, which the
                // inbox answers without a second effect.
                warn!(error = %e, "ack failed");
            }
        }
        drop(permit);
    });
}

/// Runs until `shutdown` turns true, then stops pulling and waits for in-flight commands.
///
/// Commands are pulled in bounded batches and handled in groups: up to `concurrency` groups
/// at once, each group one transaction of the commands that were waiting when it began (at
/// most `batch_max`). At low load a group is one command, so latency is that of one
/// transaction; under load groups grow and share their commit. A pulled batch is always
/// handled to its end, shutdown or not.
pub async fn run(
    ctx: Arc<WorkerContext>,
    consumer: PullConsumer,
    concurrency: usize,
    batch_max: usize,
    shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    while !*shutdown.borrow() {
        let batch = consumer
            .batch()
            .max_messages((concurrency * batch_max).clamp(1, MAX_PULL))
            .expires(PULL_EXPIRY)
            .messages()
            .await;
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                // NATS unreachable or the consumer gone: retry, the connection reconnects.
                warn!(error = %e, "cannot pull commands; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // A permit first, then whatever has arrived by then (up to `batch_max`) as one group.
        let mut groups = batch.ready_chunks(batch_max.max(1));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let Some(chunk) = groups.next().await else {
                break;
            };
            let mut msgs = Vec::with_capacity(chunk.len());
            let mut ended = false;
            for next in chunk {
                match next {
                    Ok(msg) => msgs.push(msg),
                    Err(e) => {
                        debug!(error = %e, "pull ended early");
                        ended = true;
                    }
                }
            }
            if !msgs.is_empty() {
                spawn_group(&ctx, msgs, permit);
            }
            if ended {
                break;
            }
        }
    }
    // In-flight commands finish (and are acked) before the worker reports it has stopped.
    let _ = permits.acquire_many(concurrency as u32).await;
    info!("command consumer stopped");
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnAcquireErr, DbErr};

    use super::{Disposition, MAX_ATTEMPTS, backoff, disposition};
    use crate::application::{GroupError, Processed};
    use crate::wire::outcome::{Outcome, Verdict};

    #[test]
    fn a_message_is_retried_only_while_a_retry_can_help() {
        let outcome = Outcome {
            schema_version: 1,
            command_id: uuid::Uuid::nil(),
            command: "task.start".into(),
            verdict: Verdict::Accepted {
                result: Default::default(),
            },
            processed_at: chrono::Utc::now(),
        };
        let done = Ok(Processed::Fresh(outcome.clone()));
        assert_eq!(disposition(&done, 1), Disposition::Ack);
        let seen = Ok(Processed::Duplicate(outcome));
        assert_eq!(disposition(&seen, MAX_ATTEMPTS + 3), Disposition::Ack);

        let lost = || {
            Err(GroupError::Store(DbErr::ConnectionAcquire(
                ConnAcquireErr::Timeout,
            )))
        };
        assert_eq!(disposition(&lost(), 1), Disposition::Retry(backoff(1)));
        let late = MAX_ATTEMPTS + 10;
        assert_eq!(
            disposition(&lost(), late),
            Disposition::Retry(backoff(late))
        );

        let broken = || Err(GroupError::Store(DbErr::RecordNotInserted));
        let last = MAX_ATTEMPTS - 1;
        assert_eq!(
            disposition(&broken(), last),
            Disposition::Retry(backoff(last))
        );
        assert_eq!(disposition(&broken(), MAX_ATTEMPTS), Disposition::GiveUp);

        let bug = Err(GroupError::Bug("a group of one gave no result".into()));
        assert_eq!(disposition(&bug, 1), Disposition::GiveUp);
    }
}

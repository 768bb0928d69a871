//! The JetStream streams and the worker's durable consumer, created if missing. Only options a
//! 2.9 server understands are set.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};

use crate::wire::command::MAX_COMMAND_BYTES;
use crate::wire::subjects::Subjects;

/// JetStream drops a re-published message id seen within this window.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long the server waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Commands in flight per consumer across all workers: bounds memory and redelivery storms.
pub const MAX_ACK_PENDING: i64 = 1024;

/// Operator choices for the streams the worker creates.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// 1 on a single server, 3 on a 3-node cluster.
    pub replicas: usize,
    /// S2 compression of events and outcomes (nats-server 2.10+; checked at start).
    pub compression: bool,
    /// How long a pulled command may go unacknowledged before it is redelivered (after a
    /// worker crash, this is how long its commands wait). `None`: [`ACK_WAIT`].
    pub ack_wait: Option<Duration>,
}

impl StreamOptions {
    fn apply(&self, mut config: stream::Config, compressible: bool) -> stream::Config {
        config.num_replicas = self.replicas.max(1);
        if self.compression && compressible {
            config.compression = Some(stream::Compression::S2);
        }
        config
    }
}

pub fn commands_config(s: &Subjects) -> stream::Config {
    stream::Config {
        name: s.commands_stream(),
        subjects: s.command_filters(),
        // A command leaves the stream once acknowledged: it has an outcome by then.
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        max_message_size: MAX_COMMAND_BYTES as i32,
        ..Default::default()
    }
}

pub fn events_config(s: &Subjects) -> stream::Config {
    stream::Config {
        name: s.events_stream(),
        subjects: s.event_filters(),
        // Kept for replay; limits are an operator's choice (deploy/streams).
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

pub fn outcomes_config(s: &Subjects) -> stream::Config {
    stream::Config {
        name: s.outcomes_stream(),
        subjects: vec![s.outcome_filter()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        // Outcomes can be fetched by command id for a week (also kept in the database).
        max_age: Duration::from_secs(7 * 24 * 3600),
        // Fetched by subject with a direct get: one request any replica answers, and the one
        // grant an agent needs (`$JS.API.DIRECT.GET.SOP_OUTCOMES.>` in roles.conf).
        allow_direct: true,
        ..Default::default()
    }
}

pub fn worker_consumer_config(s: &Subjects) -> pull::Config {
    pull::Config {
        durable_name: Some(s.worker_consumer().to_owned()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        // Unlimited: a command is retried until it has an outcome; the worker itself turns
        // persistent failures into `internal` rejections.
        max_deliver: -1,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    }
}

pub async fn ensure(
    js: &Context,
    s: &Subjects,
    options: &StreamOptions,
) -> Result<PullConsumer, async_nats::Error> {
    let commands = ensure_stream(js, options.apply(commands_config(s), false)).await?;
    ensure_stream(js, options.apply(events_config(s), true)).await?;
    ensure_stream(js, options.apply(outcomes_config(s), true)).await?;
    let mut consumer = worker_consumer_config(s);
    consumer.ack_wait = options.ack_wait.unwrap_or(ACK_WAIT);
    Ok(commands
        .get_or_create_consumer(s.worker_consumer(), consumer)
        .await?)
}

/// The stream, created if missing. A stream an earlier release created gets the subjects it
/// lacks (a family added since, such as `policy`) and direct gets where this release allows
/// them, its other settings kept as they are.
async fn ensure_stream(
    js: &Context,
    config: stream::Config,
) -> Result<stream::Stream, async_nats::Error> {
    let stream = js.get_or_create_stream(config.clone()).await?;
    let held = &stream.cached_info().config;
    let missing: Vec<String> = config
        .subjects
        .iter()
        .filter(|s| !held.subjects.contains(s))
        .cloned()
        .collect();
    let direct = config.allow_direct && !held.allow_direct;
    if missing.is_empty() && !direct {
        return Ok(stream);
    }
    let mut widened = held.clone();
    widened.subjects.extend(missing);
    widened.allow_direct |= config.allow_direct;
    js.update_stream(widened).await?;
    Ok(js.get_stream(&config.name).await?)
}

/// Removes the three streams (tests and `sop` teardown of a prefix).
pub async fn delete(js: &jetstream::Context, s: &Subjects) -> Result<(), async_nats::Error> {
    for name in [s.commands_stream(), s.events_stream(), s.outcomes_stream()] {
        js.delete_stream(&name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `deploy/nats/streams/*.json` (for `nats stream add --config` / `nats consumer add`) must
    /// be exactly what the worker creates on a 3-node cluster (`stream_replicas: 3`).
    /// Regenerate after a change with `SOP_WRITE_DEPLOY=1 cargo test deploy_definitions`.
    #[test]
    fn deploy_definitions_match_what_the_worker_creates() {
        let s = Subjects::new("");
        let cluster = StreamOptions {
            replicas: 3,
            ..Default::default()
        };
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/streams");
        let files = [
            (
                "commands.json",
                serde_json::to_value(cluster.apply(commands_config(&s), false)).unwrap(),
            ),
            (
                "events.json",
                serde_json::to_value(cluster.apply(events_config(&s), true)).unwrap(),
            ),
            (
                "outcomes.json",
                serde_json::to_value(cluster.apply(outcomes_config(&s), true)).unwrap(),
            ),
            (
                "worker-consumer.json",
                serde_json::to_value(worker_consumer_config(&s)).unwrap(),
            ),
        ];
        for (name, expected) in files {
            let path = dir.join(name);
            if std::env::var_os("SOP_WRITE_DEPLOY").is_some() {
                std::fs::write(
                    &path,
                    serde_json::to_string_pretty(&expected).unwrap() + "\n",
                )
                .unwrap();
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let found: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                found,
                expected,
                "{} differs from the worker's definition",
                path.display()
            );
        }
    }
}

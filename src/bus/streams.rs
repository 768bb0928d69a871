//! The JetStream streams and the worker's durable consumer, created if missing. Only options a
//! 2.9 server understands are set. Each team's events have a stream of their own
//! ([`ensure_team`]): a NATS permission can name a stream, never a filter inside one (2.9 takes
//! a consumer's filter in the request body), so this is what keeps one team's agents off
//! another's history.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::context::GetStreamErrorKind;
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

/// The stream of one team's events.
pub fn events_config(s: &Subjects, team: &str) -> stream::Config {
    stream::Config {
        name: s.team_events_stream(team),
        subjects: s.team_event_filters(team),
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

/// The teams' chain checkpoints, kept: each is small, one per team a minute at most.
pub fn checkpoints_config(s: &Subjects) -> stream::Config {
    stream::Config {
        name: s.checkpoints_stream(),
        subjects: vec![s.checkpoint("*")],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
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

/// The commands and outcomes streams and the worker's consumer; the shared events stream of a
/// release before 0.2.0 is retired ([`retire_shared_events`]). Each team's events stream is
/// [`ensure_team`]'s.
pub async fn ensure(
    js: &Context,
    s: &Subjects,
    options: &StreamOptions,
) -> Result<PullConsumer, async_nats::Error> {
    let commands = ensure_stream(js, options.apply(commands_config(s), false)).await?;
    ensure_stream(js, options.apply(outcomes_config(s), true)).await?;
    ensure_stream(js, options.apply(checkpoints_config(s), true)).await?;
    retire_shared_events(js, s).await?;
    let mut consumer = worker_consumer_config(s);
    consumer.ack_wait = options.ack_wait.unwrap_or(ACK_WAIT);
    Ok(commands
        .get_or_create_consumer(s.worker_consumer(), consumer)
        .await?)
}

/// The stream of `team`'s events, created if missing (as a team is applied, and for every team
/// as the worker starts).
pub async fn ensure_team(
    js: &Context,
    s: &Subjects,
    team: &str,
    options: &StreamOptions,
) -> Result<(), async_nats::Error> {
    ensure_stream(js, options.apply(events_config(s, team), true)).await?;
    Ok(())
}

/// What creates teams' events streams as the worker's settings say: kept by the worker for
/// the teams applied while it runs.
#[derive(Clone)]
pub struct TeamStreams {
    js: Context,
    subjects: Subjects,
    options: StreamOptions,
}

impl TeamStreams {
    pub fn new(js: Context, subjects: Subjects, options: StreamOptions) -> TeamStreams {
        TeamStreams {
            js,
            subjects,
            options,
        }
    }

    /// The stream of `team`'s events, created if missing.
    pub async fn ensure(&self, team: &str) -> Result<(), async_nats::Error> {
        ensure_team(&self.js, &self.subjects, team, &self.options).await
    }
}

/// Releases before 0.2.0 kept every team's events in one stream, `SOP_EVENTS`, whose subjects
/// overlap the team streams'. It is moved to a subject nothing publishes on: its history stays
/// readable (`nats stream view`), and `sop outbox relist --events` copies what the outbox still
/// holds into the team streams.
async fn retire_shared_events(js: &Context, s: &Subjects) -> Result<(), async_nats::Error> {
    let name = s.shared_events_stream();
    let mut stream = match js.get_stream(&name).await {
        Ok(stream) => stream,
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(api)
                if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                return Ok(());
            }
            _ => return Err(e.into()),
        },
    };
    let retired = vec![s.retired_events_subject()];
    let mut config = stream.info().await?.config.clone();
    if config.subjects != retired {
        tracing::warn!(
            stream = %name,
            "the events stream shared by all teams (before 0.2.0) is kept read-only; each team's \
             events now go to its own stream ({}<team>): `sop outbox relist --events` copies the \
             history the outbox holds into them",
            s.team_events_streams()
        );
        config.subjects = retired;
        js.update_stream(config).await?;
    }
    Ok(())
}

/// The names of the team events streams that exist.
pub async fn team_streams(js: &Context, s: &Subjects) -> Result<Vec<String>, async_nats::Error> {
    use futures::TryStreamExt as _;
    let wanted = s.team_events_streams();
    let names: Vec<String> = js.stream_names().try_collect().await?;
    Ok(names
        .into_iter()
        .filter(|n| n.starts_with(&wanted))
        .collect())
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

/// Removes the streams of a prefix: commands, outcomes and every team's events (tests).
pub async fn delete(js: &jetstream::Context, s: &Subjects) -> Result<(), async_nats::Error> {
    let teams = team_streams(js, s).await?;
    for name in [
        s.commands_stream(),
        s.outcomes_stream(),
        s.checkpoints_stream(),
    ]
    .into_iter()
    .chain(teams)
    {
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
                "events-discovery.json",
                serde_json::to_value(cluster.apply(events_config(&s, "discovery"), true)).unwrap(),
            ),
            (
                "outcomes.json",
                serde_json::to_value(cluster.apply(outcomes_config(&s), true)).unwrap(),
            ),
            (
                "checkpoints.json",
                serde_json::to_value(cluster.apply(checkpoints_config(&s), true)).unwrap(),
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

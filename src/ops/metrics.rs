//! The metrics the worker exports, named in one place, and the monitor that samples gauges
//! (outbox backlog, age and parked messages, consumer pending, database pool, readiness)
//! every few seconds.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use migration::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use crate::domain::error::ErrorCode;
use crate::store;
use crate::wire::command::CommandName;

pub const COMMANDS: &str = "sop_commands_total";
pub const COMMAND_DURATION: &str = "sop_command_duration_seconds";
pub const TRANSACTION_COMMANDS: &str = "sop_transaction_commands";
pub const REDELIVERIES: &str = "sop_redeliveries_total";
pub const DEAD_LETTERS: &str = "sop_dead_letters_total";
pub const OUTBOX_BACKLOG: &str = "sop_outbox_backlog";
pub const OUTBOX_OLDEST_AGE: &str = "sop_outbox_oldest_age_seconds";
pub const OUTBOX_PARKED: &str = "sop_outbox_parked";
pub const CONSUMER_PENDING: &str = "sop_consumer_pending";
pub const CONSUMER_ACK_PENDING: &str = "sop_consumer_ack_pending";
pub const DB_POOL: &str = "sop_db_pool_connections";
pub const READY: &str = "sop_ready";

/// The process-wide recorder (one per process, whatever number of workers it runs).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(COMMAND_DURATION.to_owned()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(TRANSACTION_COMMANDS.to_owned()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): render ours anyway.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        describe();
        handle
    })
}

/// Every family's HELP, and every counter at zero for each label value docs/reference.md
/// lists, so that an alert on a rate sees 0 from the start rather than no data.
fn describe() {
    describe_counter!(COMMANDS, "Commands handled, by command and outcome.");
    describe_histogram!(
        COMMAND_DURATION,
        metrics::Unit::Seconds,
        "Time to handle a command, from its arrival to its acknowledgement."
    );
    describe_histogram!(
        TRANSACTION_COMMANDS,
        "Commands committed per transaction (group commit)."
    );
    describe_counter!(REDELIVERIES, "Command messages delivered more than once.");
    describe_counter!(
        DEAD_LETTERS,
        "Messages that were not commands, or failed persistently, by reason."
    );
    describe_gauge!(OUTBOX_BACKLOG, "Outbox messages not yet published.");
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest outbox message not yet published."
    );
    describe_gauge!(
        OUTBOX_PARKED,
        "Outbox messages parked because the server refused them."
    );
    describe_gauge!(CONSUMER_PENDING, "Commands waiting in the commands stream.");
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        "Commands delivered and not yet acknowledged."
    );
    describe_gauge!(DB_POOL, "Database pool connections, by state.");
    describe_gauge!(
        READY,
        "1 when the worker is ready (NATS, database, migrations)."
    );
    for name in CommandName::ALL {
        for ending in Ending::ALL.iter().copied() {
            counter!(COMMANDS, "command" => name.as_str(), "outcome" => ending.as_str())
                .increment(0);
        }
    }
    counter!(REDELIVERIES).increment(0);
    for code in ErrorCode::ALL.iter().filter(|code| code.dead_letters()) {
        counter!(DEAD_LETTERS, "reason" => code.as_str()).increment(0);
    }
}

/// How one command ended, for `sop_commands_total{outcome}`.
#[derive(Debug, Clone, Copy, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Ending {
    Accepted,
    Rejected,
    Duplicate,
    Retried,
}

impl Ending {
    pub const ALL: &'static [Ending] = <Ending as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

pub fn command(command: &'static str, ending: Ending, seconds: f64) {
    counter!(COMMANDS, "command" => command, "outcome" => ending.as_str()).increment(1);
    histogram!(COMMAND_DURATION, "command" => command).record(seconds);
}

/// A transaction committed `commands` commands (group commit).
pub fn transaction(commands: usize) {
    histogram!(TRANSACTION_COMMANDS).record(commands as f64);
}

pub fn redelivered() {
    counter!(REDELIVERIES).increment(1);
}

/// A command kept as a dead letter, by the code it was rejected with.
pub fn dead_letter(code: ErrorCode) {
    debug_assert!(code.dead_letters(), "{code:?} is not a dead letter's");
    counter!(DEAD_LETTERS, "reason" => code.as_str()).increment(1);
}

/// What readiness means: NATS connected, the database answering, migrations current.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
        gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    }
}

/// How long a sample waits for each answer: a database or server that does not answer within
/// it (a connection to a host that went away can hang for minutes) counts as down, so that
/// readiness says so within a sample or two.
const PROBE: Duration = Duration::from_secs(2);

/// `probe` within [`PROBE`], or `None`.
async fn within<T, E>(probe: impl std::future::Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(PROBE, probe).await.ok()?.ok()
}

async fn sample(
    db: &DatabaseConnection,
    nats: &async_nats::Client,
    consumer: &mut PullConsumer,
    ready: &Readiness,
) {
    let nats_up = nats.connection_state() == async_nats::connection::State::Connected;
    let db_up = within(db.ping()).await.is_some();
    let migrated = db_up
        && within(Migrator::get_pending_migrations_read_only(db))
            .await
            .is_some_and(|p| p.is_empty());
    ready.set(nats_up && db_up && migrated);
    if db_up && let Some((backlog, oldest)) = within(store::outbox::lag(db)).await {
        gauge!(OUTBOX_BACKLOG).set(backlog as f64);
        gauge!(OUTBOX_OLDEST_AGE).set(
            oldest
                .map(|t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0)
                .unwrap_or(0.0),
        );
    }
    if db_up && let Some(parked) = within(store::outbox::parked_count(db)).await {
        gauge!(OUTBOX_PARKED).set(parked as f64);
    }
    if nats_up && let Some(info) = within(consumer.info()).await {
        gauge!(CONSUMER_PENDING).set(info.num_pending as f64);
        gauge!(CONSUMER_ACK_PENDING).set(info.num_ack_pending as f64);
    }
    if let Some((size, idle)) = store::pool_usage(db) {
        gauge!(DB_POOL, "state" => "idle").set(idle as f64);
        gauge!(DB_POOL, "state" => "in_use").set((size as usize).saturating_sub(idle) as f64);
    }
}

/// Samples every `every` until shutdown, and folds the histograms' observations into their
/// buckets; the first sample is taken at once.
pub async fn monitor(
    db: DatabaseConnection,
    nats: async_nats::Client,
    mut consumer: PullConsumer,
    ready: Readiness,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        sample(&db, &nats, &mut consumer, &ready).await;
        // The recorder keeps every histogram observation until they are folded into the
        // buckets, which only a scrape or this does: without it a worker nobody scrapes
        // grows by every observation (24 bytes each, about two per command).
        handle().run_upkeep();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
    ready.set(false);
}

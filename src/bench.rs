//! `sop bench`: the whole path (client → JetStream → worker → database → events) measured on
//! this machine, with baselines measured in the same run so the ratios hold on a noisy
//! machine: (a) the same rows written by plain transactions at the same concurrency (the
//! database's own ceiling for this work), (b) a bare JetStream publish-and-ack round trip,
//! (c) the disk's own durable writes at the paced run's rate (what it gives a commit then).
//!
//! The worker under test is a child process (this same binary, `sop worker`), so its peak
//! resident memory can be read from `/proc`. Each database gets a fresh one: a temporary SQLite
//! file, or a new Postgres database created from an admin URL and dropped afterwards.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, Statement,
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::bus::client::Client;
use crate::config::{Settings, WorkerSettings};
use crate::store::{self, teams};
use crate::wire::command::CommandName;
use crate::wire::outcome::Outcome;
use crate::wire::subjects::Subjects;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Databases to run on: `sqlite`, `postgres`, or both (comma separated).
    #[arg(long, default_value = "sqlite,postgres")]
    pub databases: String,
    /// Postgres URL of a database from which fresh benchmark databases are created.
    #[arg(
        long,
        env = "SOP_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_admin_url: String,
    /// Executes of the 10-task template in the execute-heavy workload (enough for several
    /// seconds at full speed: a sustained rate, not a burst).
    #[arg(long, default_value_t = 10_000)]
    pub executes: usize,
    /// Full lifecycles (draft → approve → execute → every task worked and reviewed).
    #[arg(long, default_value_t = 100)]
    pub lifecycles: usize,
    /// Executes of each large template (200 and 1,000 tasks), one at a time.
    #[arg(long, default_value_t = 10)]
    pub large: usize,
    /// Commands in flight at once (the client keeps this many outstanding). The worker runs
    /// with its own settings (`--concurrency`, `--batch-max`, or their environment variables).
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// After the other workloads, keep executing at half of the measured peak for this many
    /// seconds, sampling the worker's resident memory (0: no soak).
    #[arg(long, default_value_t = 0)]
    pub soak_secs: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    // Read by `Cli::load` into the one `Settings` value the run is given.
    #[command(flatten)]
    pub worker: WorkerSettings,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub workload: String,
    pub database: String,
    pub operations: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Events a listener received per second during the workload (service runs only).
    pub events_per_second: Option<f64>,
    /// The worker's peak resident memory so far, MiB (service runs only).
    pub worker_peak_rss_mib: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn figures(
    workload: &str,
    database: &str,
    mut latencies_ms: Vec<f64>,
    elapsed: Duration,
) -> Figures {
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let seconds = elapsed.as_secs_f64();
    Figures {
        workload: workload.into(),
        database: database.into(),
        operations: latencies_ms.len(),
        seconds,
        per_second: latencies_ms.len() as f64 / seconds.max(1e-9),
        p50_ms: percentile(&latencies_ms, 50.0),
        p95_ms: percentile(&latencies_ms, 95.0),
        p99_ms: percentile(&latencies_ms, 99.0),
        events_per_second: None,
        worker_peak_rss_mib: None,
    }
}

/// A worker child process and what the benchmark needs to drive it.
struct Subject {
    child: Child,
    client: Client,
    db: DatabaseConnection,
    settings: Settings,
    events: Arc<AtomicU64>,
    s1: Vec<Uuid>,
    s3: Uuid,
    s4: Uuid,
    s5: Uuid,
    cleanup: Option<(String, String)>,
}

/// A memory figure of a process from `/proc/<pid>/status`, MiB: `VmHWM` (peak resident) or
/// `VmRSS` (resident now).
fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn template(n: usize) -> Value {
    let tasks: Vec<Value> = (1..=n)
        .map(|i| {
            json!({ "position": i, "name": format!("Step {i}"), "description": "Do the step.",
                         "depends_on": if i == 1 { vec![] } else { vec![i - 1] } })
        })
        .collect();
    json!({ "name": format!("Bench {n}"), "risk_level": "low", "impact": "low",
            "rollback_plan": "Undo the steps.", "tasks": tasks })
}

impl Subject {
    async fn start(database: &str, base: &Settings, args: &BenchArgs) -> anyhow::Result<Subject> {
        let tag = Uuid::new_v4().simple().to_string()[..10].to_owned();
        let mut settings = base.clone();
        settings.subject_prefix = format!("bench{tag}");
        settings.http_addr = String::new();
        let cleanup = match database {
            "sqlite" => {
                let path = std::env::temp_dir().join(format!("sop-bench-{tag}.db"));
                settings.database_url = format!("sqlite://{}?mode=rwc", path.display());
                None
            }
            "postgres" => {
                let admin = store::connect(&args.postgres_admin_url, 1)
                    .await
                    .context("connecting to Postgres")?;
                let name = format!("sop_bench_{tag}");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await?;
                let (base, query) = match args.postgres_admin_url.split_once('?') {
                    Some((b, q)) => (b, format!("?{q}")),
                    None => (args.postgres_admin_url.as_str(), String::new()),
                };
                let root = base.rsplit_once('/').map(|(r, _)| r).unwrap_or(base);
                settings.database_url = format!("{root}/{name}{query}");
                Some((args.postgres_admin_url.clone(), name))
            }
            other => anyhow::bail!("unknown database `{other}` (sqlite or postgres)"),
        };
        let db = store::connect(&settings.database_url, 4).await?;
        store::migrate(&db).await?;
        let txn = store::begin(&db).await?;
        let spec: teams::TeamSpec = serde_json::from_value(json!({
            "name": "bench",
            "systems": [
                { "name": "System1/a", "type": "system1" }, { "name": "System1/b", "type": "system1" },
                { "name": "System3/root", "type": "system3" }, { "name": "System4/root", "type": "system4" },
                { "name": "System5/root", "type": "system5" },
            ],
        }))?;
        let team = teams::apply(&txn, &spec).await?;
        txn.commit().await?;
        let id = |kind: &str| {
            team.systems
                .iter()
                .filter(|s| s.kind.as_str() == kind)
                .map(|s| s.id)
                .collect::<Vec<_>>()
        };
        let mut child = Command::new(std::env::current_exe()?)
            .arg("worker")
            .env("SOP_NATS_URL", &settings.nats_url)
            .env("SOP_DATABASE_URL", &settings.database_url)
            .env("SOP_SUBJECT_PREFIX", &settings.subject_prefix)
            .env("SOP_CONCURRENCY", settings.concurrency.to_string())
            .env("SOP_BATCH_MAX", settings.batch_max.to_string())
            .env(
                "SOP_DB_MAX_CONNECTIONS",
                settings.db_max_connections.to_string(),
            )
            .env("SOP_HTTP_ADDR", "")
            .env("RUST_LOG", "warn,vsm_sop::app=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stderr.take().context("worker stderr")?).lines();
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("worker started") {
                    return Ok(());
                }
            }
            anyhow::bail!("the worker exited during start-up")
        })
        .await
        .context("worker start-up")??;
        // Its warnings (a relay retrying, a transaction retried) explain a figure: shown.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("worker: {line}");
            }
        });
        let nats = crate::app::connect_nats(&settings).await?;
        let subjects = Subjects::new(&settings.subject_prefix);
        let events = Arc::new(AtomicU64::new(0));
        // The listener is a System1 of its own, on its own connection: its ~1 KB events
        // (over 10,000/s) do not queue in front of the client's acks and outcomes.
        let mut sub = crate::app::connect_nats(&settings)
            .await?
            .subscribe(subjects.event_filter(None, Some("bench")))
            .await?;
        let counter = events.clone();
        tokio::spawn(async move {
            while sub.next().await.is_some() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Subject {
            child,
            client: Client::new(nats, subjects).with_timeout(Duration::from_secs(60)),
            db,
            settings,
            events,
            s1: id("system1"),
            s3: id("system3")[0],
            s4: id("system4")[0],
            s5: id("system5")[0],
            cleanup,
        })
    }

    async fn send(
        &self,
        name: CommandName,
        actor: Uuid,
        payload: Value,
    ) -> anyhow::Result<(Outcome, f64)> {
        let started = Instant::now();
        let outcome = self.client.send(name, actor, payload).await?;
        Ok((outcome, started.elapsed().as_secs_f64() * 1000.0))
    }

    async fn ok(
        &self,
        name: CommandName,
        actor: Uuid,
        payload: Value,
    ) -> anyhow::Result<(Value, f64)> {
        let (outcome, ms) = self.send(name, actor, payload).await?;
        let value = serde_json::to_value(&outcome)?;
        if !outcome.is_accepted() {
            anyhow::bail!("{name} rejected: {}", value["error"]);
        }
        Ok((value["result"].clone(), ms))
    }

    async fn approved(&self, tasks: usize) -> anyhow::Result<Uuid> {
        let (draft, _) = self
            .ok(CommandName::DraftProcedure, self.s4, template(tasks))
            .await?;
        let id: Uuid = serde_json::from_value(draft["procedure_id"].clone())?;
        self.ok(
            CommandName::ApproveProcedure,
            self.s5,
            json!({ "procedure_id": id }),
        )
        .await?;
        Ok(id)
    }

    /// `procedure.execute` of a series by the bench's System3: its result and latency.
    async fn execute(&self, series: Uuid) -> anyhow::Result<(Value, f64)> {
        self.ok(
            CommandName::ExecuteProcedure,
            self.s3,
            json!({ "series_id": series }),
        )
        .await
    }

    fn measured(&self, mut f: Figures, events_before: u64) -> Figures {
        let events = self.events.load(Ordering::Relaxed) - events_before;
        // No operation, no rate: the events counted are the tail of the workload before.
        f.events_per_second = (f.operations > 0).then(|| events as f64 / f.seconds.max(1e-9));
        f.worker_peak_rss_mib = self.child.id().and_then(|pid| memory_mib(pid, "VmHWM"));
        f
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let js = jetstream::new(self.client_nats());
        let _ =
            crate::bus::streams::delete(&js, &Subjects::new(&self.settings.subject_prefix)).await;
        self.db.close().await.ok();
        match self.cleanup {
            Some((admin_url, name)) => {
                if let Ok(admin) = store::connect(&admin_url, 1).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            }
            None => {
                if let Some(path) = self
                    .settings
                    .database_url
                    .strip_prefix("sqlite://")
                    .and_then(|p| p.split('?').next())
                {
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{path}{suffix}"));
                    }
                }
            }
        }
    }

    fn client_nats(&self) -> async_nats::Client {
        self.client.nats().clone()
    }
}

/// Runs the operations `ops` yields, at most `in_flight` at once; each returns its latency in
/// ms. Returns the latencies and the time all took.
async fn run_all<S>(ops: S, in_flight: usize) -> anyhow::Result<(Vec<f64>, Duration)>
where
    S: futures::Stream,
    S::Item: std::future::Future<Output = anyhow::Result<f64>>,
{
    let started = Instant::now();
    let results: Vec<anyhow::Result<f64>> = ops.buffer_unordered(in_flight.max(1)).collect().await;
    let elapsed = started.elapsed();
    Ok((results.into_iter().collect::<anyhow::Result<_>>()?, elapsed))
}

/// Runs `n` operations with at most `concurrency` in flight.
async fn concurrently<F, Fut>(
    n: usize,
    concurrency: usize,
    op: F,
) -> anyhow::Result<(Vec<f64>, Duration)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    run_all(futures::stream::iter((0..n).map(op)), concurrency).await
}

/// `n` executes of `series`, `concurrency` at a time: their latencies and the time taken.
async fn executes(
    s: &Subject,
    series: Uuid,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    concurrently(n, concurrency, execute_op(s, series)).await
}

/// When operation `i` of an open-loop run at `rate` per second is due, after its start.
fn due_after(i: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate.max(1e-3))
}

/// Runs `n` operations open-loop at `rate` per second: operation `i` starts at `i / rate`
/// seconds whatever the others are doing, so latency includes any queueing at the service.
async fn paced<F, Fut>(n: usize, rate: f64, op: F) -> anyhow::Result<(Vec<f64>, Duration)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let started = tokio::time::Instant::now();
    // Each operation is created when it is due, so a long soak holds only those in flight.
    let due = futures::stream::iter(0..n).then(|i| async move {
        tokio::time::sleep_until(started + due_after(i, rate)).await;
        i
    });
    run_all(due.map(&op), usize::MAX).await
}

fn execute_op<'a>(s: &'a Subject, series: Uuid) -> impl Fn(usize) -> BoxedLatency<'a> {
    move |_| Box::pin(async move { Ok(s.execute(series).await?.1) })
}

type BoxedLatency<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<f64>> + Send + 'a>>;

/// Executes paced at half of the peak `execute_heavy` measured: the latency a service
/// running at half its capacity gives.
async fn half_peak(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
    peak: f64,
) -> anyhow::Result<Figures> {
    let series = s.approved(10).await?;
    let before = s.events.load(Ordering::Relaxed);
    let rate = peak / 2.0;
    let (lat, elapsed) = paced(args.executes / 2, rate, execute_op(s, series)).await?;
    Ok(s.measured(
        figures(
            &format!("execute 10-task, paced at half of peak ({rate:.0}/s)"),
            database,
            lat,
            elapsed,
        ),
        before,
    ))
}

/// Executes at half of the peak for `args.soak_secs`, sampling the worker's resident memory
/// every 10 s; returns the samples (seconds since start, MiB) with the latency figures.
async fn soak(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
    peak: f64,
) -> anyhow::Result<(Figures, Vec<(u64, f64)>)> {
    let series = s.approved(10).await?;
    let before = s.events.load(Ordering::Relaxed);
    let rate = peak / 2.0;
    let n = (rate * args.soak_secs as f64) as usize;
    let pid = s.child.id().context("worker pid")?;
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = tokio::spawn({
        let samples = samples.clone();
        async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let (Some(mib), Ok(mut samples)) = (memory_mib(pid, "VmRSS"), samples.lock()) {
                    samples.push((started.elapsed().as_secs(), mib));
                }
            }
        }
    });
    let result = paced(n, rate, execute_op(s, series)).await;
    sampler.abort();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let (lat, elapsed) = result?;
    let title = format!(
        "soak: execute 10-task at {rate:.0}/s for {} s",
        args.soak_secs
    );
    Ok((
        s.measured(figures(&title, database, lat, elapsed), before),
        samples,
    ))
}

async fn execute_heavy(s: &Subject, args: &BenchArgs, database: &str) -> anyhow::Result<Figures> {
    let series = s.approved(10).await?;
    let before = s.events.load(Ordering::Relaxed);
    let (lat, elapsed) = executes(s, series, args.executes, args.in_flight).await?;
    Ok(s.measured(
        figures("execute 10-task template", database, lat, elapsed),
        before,
    ))
}

async fn lifecycle(s: &Subject, args: &BenchArgs, database: &str) -> anyhow::Result<Figures> {
    let before = s.events.load(Ordering::Relaxed);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (_, elapsed) = concurrently(args.lifecycles, args.in_flight, |_| {
        let latencies = latencies.clone();
        async move {
            let mut mine = Vec::new();
            let (draft, ms) = s
                .ok(CommandName::DraftProcedure, s.s4, template(10))
                .await?;
            mine.push(ms);
            let id: Uuid = serde_json::from_value(draft["procedure_id"].clone())?;
            mine.push(
                s.ok(
                    CommandName::ApproveProcedure,
                    s.s5,
                    json!({ "procedure_id": id }),
                )
                .await?
                .1,
            );
            let (run, ms) = s.execute(id).await?;
            mine.push(ms);
            let run_id = run["run_id"].clone();
            let tasks: Vec<Value> = run["task_ids"].as_array().cloned().unwrap_or_default();
            let detail: crate::wire::answer::RunDetail = s
                .client
                .query_pages(
                    crate::wire::query::QueryName::GetRun,
                    &json!({ "actor": s.s3, "run_id": run_id }),
                    None,
                )
                .await?;
            for (task, shown) in tasks.iter().zip(&detail.tasks) {
                let assignee = shown.assignee_system_id.0;
                mine.push(
                    s.ok(CommandName::StartTask, assignee, json!({ "task_id": task }))
                        .await?
                        .1,
                );
                mine.push(
                    s.ok(
                        CommandName::CompleteTask,
                        assignee,
                        json!({ "task_id": task, "result": "done" }),
                    )
                    .await?
                    .1,
                );
                mine.push(
                    s.ok(
                        CommandName::ReviewTask,
                        s.s3,
                        json!({ "task_id": task, "verdict": "approve" }),
                    )
                    .await?
                    .1,
                );
            }
            latencies
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .extend(mine);
            Ok(0.0)
        }
    })
    .await?;
    let lat = std::mem::take(&mut *latencies.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(s.measured(
        figures("full lifecycle (commands)", database, lat, elapsed),
        before,
    ))
}

/// Executes of a large template, one at a time, each sent once the one before has reached a
/// listener whole (a command arriving at a quiet service, not behind the relay of the last
/// one's events). Two figures: publish → outcome, and publish → its last event delivered:
/// with the bench's chain template, the first task's `task.ready`, which follows the run's
/// `task.created` events in commit order.
async fn large(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
    tasks: usize,
) -> anyhow::Result<[Figures; 2]> {
    let series = s.approved(tasks).await?;
    let nats = s.client_nats();
    let subjects = Subjects::new(&s.settings.subject_prefix);
    let mut ready = nats
        .subscribe(subjects.event_filter(Some("task.ready"), Some("bench")))
        .await?;
    nats.flush().await?;
    let before = s.events.load(Ordering::Relaxed);
    let started = Instant::now();
    let (mut outcomes, mut delivered) = (vec![], vec![]);
    for _ in 0..args.large {
        let sent = Instant::now();
        let (result, ms) = s.execute(series).await?;
        outcomes.push(ms);
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), ready.next())
                .await
                .context("no task.ready within 60 s of a large execute")?
                .context("the task.ready subscription ended")?;
            let event: Value = serde_json::from_slice(&event.payload)?;
            if event["data"]["run_id"] == result["run_id"] {
                break;
            }
        }
        delivered.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed();
    let name = format!("execute {tasks}-task template");
    Ok([
        s.measured(figures(&name, database, outcomes, elapsed), before),
        s.measured(
            figures(
                &format!("{name}, to last event"),
                database,
                delivered,
                elapsed,
            ),
            before,
        ),
    ])
}

/// Baseline (a): the rows one 10-task execute writes (run, initiative, tasks, inbox row,
/// outbox events and outcome), in one plain transaction each, at the same concurrency.
async fn sql_baseline(s: &Subject, args: &BenchArgs, database: &str) -> anyhow::Result<Figures> {
    use entity::*;
    let series = s.approved(10).await?;
    let team = store::teams::actor(&s.db, s.s3)
        .await?
        .context("bench team")?
        .0
        .team_id
        .0;
    // Rows as large as the service's: the execute-heavy workload, run just before on this
    // database, left real outcomes and events to size them by.
    let outcome = command_inbox::Entity::find()
        .filter(command_inbox::Column::Command.eq("procedure.execute"))
        .one(&s.db)
        .await?
        .context("an execute's outcome to size the baseline by")?
        .outcome;
    let event_bytes = s
        .db
        .query_one_raw(Statement::from_string(
            s.db.get_database_backend(),
            "SELECT CAST(AVG(LENGTH(payload)) AS BIGINT) AS n FROM outbox WHERE kind LIKE 'event.%'",
        ))
        .await?
        .context("outbox rows to size the baseline by")?
        .try_get::<i64>("", "n")?;
    let event =
        serde_json::to_vec(&json!({ "bench": "x".repeat(event_bytes.max(16) as usize - 12) }))?;
    let (outcome, event) = (&outcome, &event);
    let pool = store::connect(&s.settings.database_url, s.settings.db_max_connections).await?;
    let pool = &pool;
    let (lat, elapsed) = concurrently(args.executes, args.in_flight, |_| async move {
        let started = Instant::now();
        let now = chrono::Utc::now();
        let txn = store::begin(pool).await?;
        let (run, ini) = (Uuid::now_v7(), Uuid::now_v7());
        procedure_run::Entity::insert(procedure_run::ActiveModel {
            id: Set(run),
            procedure_id: Set(series),
            series_id: Set(series),
            procedure_version: Set(1),
            team_id: Set(team),
            initiative_id: Set(ini),
            status: Set(enums::RunStatus::Started),
            started_by_system_id: Set(s.s3),
            started_at: Set(now),
            completed_at: Set(None),
            reason: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
        initiative::Entity::insert(initiative::ActiveModel {
            id: Set(ini),
            team_id: Set(team),
            strategy_id: Set(None),
            status: Set(enums::InitiativeStatus::Pending),
            name: Set("Bench 10".into()),
            description: Set(String::new()),
            result: Set(None),
            procedure_id: Set(Some(series)),
            procedure_version: Set(Some(1)),
            run_id: Set(Some(run)),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        let tasks: Vec<task::ActiveModel> = (0..10)
            .map(|i| task::ActiveModel {
                id: Set(Uuid::now_v7()),
                team_id: Set(team),
                initiative_id: Set(ini),
                procedure_task_id: Set(None),
                seq: Set(i),
                position: Set(i + 1),
                status: Set(enums::TaskStatus::Pending),
                ready: Set(i == 0),
                assignee_system_id: Set(s.s1[0]),
                assignee_type: Set(enums::SystemType::System1),
                name: Set(format!("Step {}", i + 1)),
                content: Set("Do the step.".into()),
                result: Set(None),
                reasoning: Set(None),
                review_verdict: Set(None),
                review_reasoning: Set(None),
                depends_on: Set(json!([])),
                default_assignee_system_type: Set(None),
                required_skills: Set(json!([])),
                replaces_task_id: Set(None),
                follow_up_task_id: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .collect();
        task::Entity::insert_many(tasks)
            .exec_without_returning(&txn)
            .await?;
        let command = Uuid::now_v7();
        command_inbox::Entity::insert(command_inbox::ActiveModel {
            command_id: Set(command),
            command: Set("procedure.execute".into()),
            actor_system_id: Set(Some(s.s3)),
            status: Set(enums::CommandStatus::Accepted),
            outcome: Set(outcome.clone()),
            processed_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        let events: Vec<outbox::ActiveModel> = (0..14)
            .map(|_| outbox::ActiveModel {
                message_id: Set(Uuid::now_v7()),
                kind: Set("event.task.created".into()),
                subject: Set("bench".into()),
                team_id: Set(Some(team)),
                causation_id: Set(Some(command)),
                series_id: Set(Some(series)),
                run_id: Set(Some(run)),
                payload: Set(event.clone()),
                headers: Set(None),
                reply_to: Set(None),
                // Not listed in outbox_pending: the worker's relay leaves these rows alone.
                created_at: Set(now),
                ..Default::default()
            })
            .collect();
        outbox::Entity::insert_many(events)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    })
    .await?;
    Ok(figures(
        "baseline (a): same rows, plain transactions",
        database,
        lat,
        elapsed,
    ))
}

/// Baseline (b): a bare JetStream publish awaited for its PubAck, at the same concurrency.
async fn jetstream_baseline(
    nats: &async_nats::Client,
    args: &BenchArgs,
) -> anyhow::Result<Figures> {
    let js = jetstream::new(nats.clone());
    let name = format!("SOP_BENCH_{}", Uuid::new_v4().simple());
    let subject = format!("{}.x", name.to_lowercase());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(vec![b'x'; 600]);
    let (js, subject, payload) = (&js, &subject, &payload);
    let result = concurrently(args.executes, args.in_flight, |_| async move {
        let started = Instant::now();
        js.publish(subject.clone(), payload.clone()).await?.await?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    })
    .await;
    js.delete_stream(&name).await?;
    let (lat, elapsed) = result?;
    Ok(figures(
        "baseline (b): JetStream publish + ack",
        "-",
        lat,
        elapsed,
    ))
}

/// Baseline (c): the disk's own latency for durable writes at the paced run's rate. `n`
/// writes of 4 KiB, each followed by `fdatasync`, into a file in the temporary directory
/// (where the SQLite benchmark database lives), filled beforehand and rewritten in a cycle as
/// a WAL is. Open loop like the paced run: write `i` is due at `i / rate` seconds and its
/// latency counts from then, so a flush that stalls delays every write due meanwhile, as it
/// delays every commit queued behind it. A command is acknowledged only after its commit's
/// flush, so where the database shares this disk, a p99 at half of peak over the target with
/// this one over it too is the disk's. Measured alone, right after the paced run, with one
/// flush per write where group commit makes fewer: the disk at the time, not a strict floor.
fn durable_writes(n: usize, rate: f64) -> std::io::Result<(Vec<f64>, Duration)> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    const BLOCKS: usize = 1024;
    let path = std::env::temp_dir().join(format!("sop-bench-{}.fsync", Uuid::new_v4().simple()));
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all_at(&vec![0u8; BLOCK * BLOCKS], 0)?;
        file.sync_all()?;
        let block = vec![b'x'; BLOCK];
        let mut latencies = Vec::with_capacity(n);
        let started = Instant::now();
        for i in 0..n {
            let due = started + due_after(i, rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            file.write_all_at(&block, ((i % BLOCKS) * BLOCK) as u64)?;
            file.sync_data()?;
            latencies.push(due.elapsed().as_secs_f64() * 1000.0);
        }
        Ok((latencies, started.elapsed()))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Baseline (c): `n` durable writes at `rate` ([`durable_writes`]).
async fn durable_write_baseline(database: &str, rate: f64, n: usize) -> anyhow::Result<Figures> {
    let (lat, elapsed) = tokio::task::spawn_blocking(move || durable_writes(n, rate)).await??;
    Ok(figures(
        &format!("baseline (c): 4 KiB write + fdatasync ({rate:.0}/s)"),
        database,
        lat,
        elapsed,
    ))
}

fn table(rows: &[Figures]) -> String {
    let mut out = vec![format!(
        "{:<46} {:<9} {:>6} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "workload", "database", "ops", "ops/s", "p50 ms", "p95 ms", "p99 ms", "events/s", "RSS MiB"
    )];
    for f in rows {
        let opt = |v: Option<f64>, w: usize| {
            v.map(|v| format!("{v:>w$.0}"))
                .unwrap_or_else(|| format!("{:>w$}", "-"))
        };
        out.push(format!(
            "{:<46} {:<9} {:>6} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {} {}",
            f.workload,
            f.database,
            f.operations,
            f.per_second,
            f.p50_ms,
            f.p95_ms,
            f.p99_ms,
            opt(f.events_per_second, 9),
            opt(f.worker_peak_rss_mib, 8)
        ));
    }
    out.join("\n")
}

pub async fn run(settings: &Settings, args: &BenchArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let mut soaks = Vec::new();
    let nats = crate::app::connect_nats(settings).await?;
    let raw = jetstream_baseline(&nats, args).await?;
    eprintln!("{}", table(std::slice::from_ref(&raw)));
    for database in args
        .databases
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let subject = Subject::start(database, settings, args).await?;
        let result: anyhow::Result<()> = async {
            let heavy = execute_heavy(&subject, args, database).await?;
            let baseline = sql_baseline(&subject, args, database).await?;
            let paced = half_peak(&subject, args, database, heavy.per_second).await?;
            // As many durable writes as the paced run sent commands, at its rate.
            let disk =
                durable_write_baseline(database, heavy.per_second / 2.0, paced.operations).await?;
            ratios.push(json!({
                "database": database,
                "throughput_vs_plain_sql": heavy.per_second / baseline.per_second,
                "throughput_vs_jetstream": heavy.per_second / raw.per_second,
                "p99_ms_at_half_peak": paced.p99_ms,
                "durable_write_p99_ms_at_half_peak": disk.p99_ms,
            }));
            let peak = heavy.per_second;
            let mut more = vec![heavy, baseline, paced, disk];
            more.push(lifecycle(&subject, args, database).await?);
            more.extend(large(&subject, args, database, 200).await?);
            more.extend(large(&subject, args, database, 1000).await?);
            if args.soak_secs > 0 {
                let (figures, samples) = soak(&subject, args, database, peak).await?;
                let mib: Vec<f64> = samples.iter().map(|(_, m)| *m).collect();
                eprintln!(
                    "{database} soak: resident memory every 10 s (MiB): {}",
                    mib.iter()
                        .map(|m| format!("{m:.0}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                soaks.push(json!({ "database": database, "rss_mib_every_10s": mib,
                    "first_mib": mib.first(), "last_mib": mib.last(),
                    "max_mib": mib.iter().copied().fold(f64::NAN, f64::max) }));
                more.push(figures);
            }
            eprintln!("{}", table(&more));
            rows.extend(more);
            Ok(())
        }
        .await;
        subject.stop().await;
        result?;
    }
    rows.insert(0, raw);
    println!("{}", table(&rows));
    for r in &ratios {
        println!(
            "{}: execute throughput = {:.0}% of plain SQL transactions, {:.0}% of bare JetStream publish+ack; p99 at half of peak {:.1} ms (the disk's own durable writes at that rate: {:.1} ms)",
            r["database"].as_str().unwrap_or(""),
            r["throughput_vs_plain_sql"].as_f64().unwrap_or(0.0) * 100.0,
            r["throughput_vs_jetstream"].as_f64().unwrap_or(0.0) * 100.0,
            r["p99_ms_at_half_peak"].as_f64().unwrap_or(0.0),
            r["durable_write_p99_ms_at_half_peak"]
                .as_f64()
                .unwrap_or(0.0)
        );
    }
    let report = json!({ "args": {
            "executes": args.executes, "lifecycles": args.lifecycles, "large": args.large, "in_flight": args.in_flight, "worker_concurrency": settings.concurrency, "batch_max": settings.batch_max },
        "results": rows, "ratios": ratios, "soaks": soaks });
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranked_samples() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn durable_writes_time_every_write_and_leave_no_file() {
        let probes = || {
            std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".fsync"))
                .count()
        };
        let before = probes();
        let (latencies, _) = durable_writes(20, 2000.0).unwrap();
        assert_eq!(latencies.len(), 20);
        assert!(latencies.iter().all(|ms| ms.is_finite() && *ms >= 0.0));
        assert!(probes() <= before, "the probe's file is removed");
    }
}

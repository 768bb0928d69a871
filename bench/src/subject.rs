//! The worker under test: a `sop worker` child process on a fresh database and subject prefix,
//! with a team registered and a client to drive it.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use vsm_sop::bus::client::Client;
use vsm_sop::config::Settings;
use vsm_sop::store::{self, teams};
use vsm_sop::wire::command::CommandName;
use vsm_sop::wire::outcome::Outcome;
use vsm_sop::wire::subjects::Subjects;

use crate::BenchArgs;
use crate::figures::*;

/// A worker child process and what the benchmark needs to drive it.
pub(crate) struct Subject {
    pub(crate) child: Child,
    pub(crate) client: Client,
    pub(crate) db: DatabaseConnection,
    pub(crate) settings: Settings,
    pub(crate) events: Arc<AtomicU64>,
    pub(crate) s1: Vec<Uuid>,
    pub(crate) s3: Uuid,
    pub(crate) s4: Uuid,
    pub(crate) s5: Uuid,
    pub(crate) cleanup: Option<(String, String)>,
    /// Leave the database in place at [`Subject::stop`].
    pub(crate) keep: bool,
}

/// A memory figure of a process from `/proc/<pid>/status`, MiB: `VmHWM` (peak resident) or
/// `VmRSS` (resident now).
pub(crate) fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(crate) fn template(n: usize) -> Value {
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
    pub(crate) async fn start(
        database: &str,
        base: &Settings,
        args: &BenchArgs,
    ) -> anyhow::Result<Subject> {
        let tag = Uuid::new_v4().simple().to_string()[..10].to_owned();
        let mut settings = base.clone();
        settings.connection.subject_prefix = format!("bench{tag}");
        settings.worker.http_addr = String::new();
        let cleanup = match database {
            "sqlite" => {
                let path = std::env::temp_dir().join(format!("sop-bench-{tag}.db"));
                settings.worker.database_url = format!("sqlite://{}?mode=rwc", path.display());
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
                settings.worker.database_url = format!("{root}/{name}{query}");
                Some((args.postgres_admin_url.clone(), name))
            }
            other => anyhow::bail!("unknown database `{other}` (sqlite or postgres)"),
        };
        let db = store::connect(&settings.worker.database_url, 4).await?;
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
        let mut child = Command::new(sop_binary()?)
            .arg("worker")
            .env("SOP_NATS_URL", &settings.connection.nats_url)
            .env("SOP_DATABASE_URL", &settings.worker.database_url)
            .env("SOP_SUBJECT_PREFIX", &settings.connection.subject_prefix)
            .env("SOP_CONCURRENCY", settings.worker.concurrency.to_string())
            .env("SOP_BATCH_MAX", settings.worker.batch_max.to_string())
            .env(
                "SOP_DB_MAX_CONNECTIONS",
                settings.worker.db_max_connections.to_string(),
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
        let nats = vsm_sop::app::connect_nats(&settings).await?;
        let subjects = Subjects::new(&settings.connection.subject_prefix);
        let events = Arc::new(AtomicU64::new(0));
        // The listener is a System1 of its own, on its own connection: its ~1 KB events
        // (over 10,000/s) do not queue in front of the client's acks and outcomes.
        let mut sub = vsm_sop::app::connect_nats(&settings)
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
            keep: args.keep_database,
        })
    }

    pub(crate) async fn send(
        &self,
        name: CommandName,
        actor: Uuid,
        payload: Value,
    ) -> anyhow::Result<(Outcome, f64)> {
        let started = Instant::now();
        let outcome = self.client.send(name, actor, payload).await?;
        Ok((outcome, started.elapsed().as_secs_f64() * 1000.0))
    }

    pub(crate) async fn ok(
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

    pub(crate) async fn approved(&self, tasks: usize) -> anyhow::Result<Uuid> {
        let (draft, _) = self
            .ok(CommandName::DraftProcedure, self.s4, template(tasks))
            .await?;
        let id: Uuid = serde_json::from_value(draft["procedure_id"].clone())?;
        let approval = json!({ "procedure_id": id, "digest": draft["digest"] });
        self.ok(CommandName::ApproveProcedure, self.s5, approval)
            .await?;
        Ok(id)
    }

    /// `procedure.execute` of a series by the bench's System3: its result and latency.
    pub(crate) async fn execute(&self, series: Uuid) -> anyhow::Result<(Value, f64)> {
        self.ok(
            CommandName::ExecuteProcedure,
            self.s3,
            json!({ "series_id": series }),
        )
        .await
    }

    pub(crate) fn measured(&self, mut f: Figures, events_before: u64) -> Figures {
        let events = self.events.load(Ordering::Relaxed) - events_before;
        // No operation, no rate: the events counted are the tail of the workload before.
        f.events_per_second = (f.operations > 0).then(|| events as f64 / f.seconds.max(1e-9));
        f.worker_peak_rss_mib = self.child.id().and_then(|pid| memory_mib(pid, "VmHWM"));
        f
    }

    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let js = jetstream::new(self.client_nats());
        let _ = vsm_sop::bus::streams::delete(
            &js,
            &Subjects::new(&self.settings.connection.subject_prefix),
        )
        .await;
        self.db.close().await.ok();
        if self.keep {
            eprintln!(
                "kept the benchmark database: {}",
                self.settings.worker.database_url
            );
            return;
        }
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
                    .worker
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

    pub(crate) fn client_nats(&self) -> async_nats::Client {
        self.client.nats().clone()
    }
}

/// The `sop` binary the worker under test runs: `SOP_BIN`, else the one built beside this one
/// (`cargo build --release --workspace` puts both in `target/release`).
fn sop_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("SOP_BIN") {
        return Ok(path.into());
    }
    let beside = std::env::current_exe()?.with_file_name("sop");
    anyhow::ensure!(
        beside.exists(),
        "no sop binary at {}: build it with `cargo build --release --workspace`, or set SOP_BIN",
        beside.display()
    );
    Ok(beside)
}

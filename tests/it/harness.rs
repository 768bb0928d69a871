//! `TestApp::spawn(backend)`: a worker on real NATS and a real, fresh database (a new Postgres
//! database or a new SQLite file) under a unique subject prefix, so tests run in parallel on
//! one server without seeing each other.
//!
//! The servers come from [`crate::servers`]: running ones named by `SOP_TEST_NATS_URL` and
//! `SOP_TEST_POSTGRES_URL`, else ones this process starts; a test that cannot reach its
//! servers fails and says why, as it would prove nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::servers;
use vsm_sop::app::{self, Running};
use vsm_sop::bus::client::Client;
use vsm_sop::config::{ConnectionSettings, Settings, WorkerSettings};
use vsm_sop::store::{
    self,
    teams::{SystemSpec, TeamSpec},
};
use vsm_sop::wire::command::CommandName;
use vsm_sop::wire::event::EventEnvelope;
use vsm_sop::wire::outcome::{Accepted, ErrorBody, Outcome, Verdict};

pub use crate::servers::{NatsSpec, PrivateNats, PrivatePostgres};

pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits a condition: polls `check` until it gives a value; fails the test, naming `what`,
/// once `within` has passed.
pub async fn eventually_within<T, F>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `child` SIGTERM and waits, at most `within`, for its exit status.
pub async fn sigterm(
    child: &mut tokio::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    tokio::time::timeout(within, child.wait())
        .await
        .expect("exits within its deadline")
        .unwrap()
}

/// [`eventually_within`] [`WAIT`].
pub async fn eventually<T, F>(what: &str, check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    eventually_within(WAIT, what, check).await
}

/// Every distinct statement the workers of a scenario sent, by its SQL text (with the values
/// it was last sent with).
pub type Statements = std::sync::Arc<std::sync::Mutex<BTreeMap<String, Statement>>>;

tokio::task_local! {
    /// Set around a scenario, every worker it spawns records its statements here.
    pub static RECORDED: Statements;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one scenario on both databases, as two tests.
#[macro_export]
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::harness::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::harness::Backend::Postgres).await
            }
        }
    )*};
}

/// The systems of one registered team.
#[derive(Debug, Clone)]
pub struct Team {
    pub id: Uuid,
    pub s1a: Uuid,
    pub s1b: Uuid,
    pub s3: Uuid,
    pub s4: Uuid,
    pub s5: Uuid,
}

enum Database {
    Sqlite(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

pub struct TestApp {
    pub running: Running,
    /// What the worker was started with (the CLI tests reuse it).
    pub settings: Settings,
    pub client: Client,
    db: DatabaseConnection,
    database: Database,
}

/// The shared NATS server. Starting it (once) blocks, so it runs off the runtime's threads.
async fn shared_nats_url() -> String {
    let url = tokio::task::spawn_blocking(servers::nats_url)
        .await
        .expect("the test NATS server");
    keep_store_directory(&url).await;
    url
}

/// nats-server 2.9 removes an account's store directory when its last file stream is deleted,
/// and a stream created at that moment fails ("error creating store for stream", 10049; CI
/// once did). Tests create and delete their streams side by side on the shared server, so
/// one stream that no test deletes keeps the directory. Idempotent: every test asks.
async fn keep_store_directory(url: &str) {
    use async_nats::jetstream::stream::{Config, StorageType};
    let nats = async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to NATS at {url}: {e}"));
    let js = async_nats::jetstream::new(nats);
    // The first creation can meet the very removal it guards against: ask again until it holds.
    eventually("the tests' keep stream", || async {
        js.get_or_create_stream(Config {
            name: "SOP_TESTS_KEEP".into(),
            description: Some(
                "keeps the store directory while vsm-sop's tests delete their streams".into(),
            ),
            subjects: vec!["sop-tests-keep".into()],
            storage: StorageType::File,
            max_messages: 1,
            ..Default::default()
        })
        .await
        .ok()
    })
    .await;
}

fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let root = base.rsplit_once('/').map(|(r, _)| r).unwrap_or(base);
    format!("{root}/{name}{query}")
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_on(backend, None).await
    }

    /// As [`TestApp::spawn`], on a given NATS server (e.g. a [`PrivateNats`] a test restarts).
    pub async fn spawn_on(backend: Backend, nats: Option<String>) -> TestApp {
        TestApp::spawn_with(backend, nats, None).await
    }

    /// As [`TestApp::spawn`], on given servers: NATS, and a Postgres admin URL (e.g. a
    /// [`PrivatePostgres`] a test stops and starts).
    pub async fn spawn_with(
        backend: Backend,
        nats: Option<String>,
        postgres_admin: Option<String>,
    ) -> TestApp {
        TestApp::spawn_configured(backend, nats, postgres_admin, |_| {}).await
    }

    /// As [`TestApp::spawn_with`], with the settings changed by `configure` before the
    /// worker starts (e.g. `require_signatures`).
    pub async fn spawn_configured(
        backend: Backend,
        nats: Option<String>,
        postgres_admin: Option<String>,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let tag = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let nats_url = match nats {
            Some(url) => url,
            None => shared_nats_url().await,
        };
        let (database_url, database) = match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("sop-test-{tag}.db"));
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Database::Sqlite(path),
                )
            }
            Backend::Postgres => {
                let admin_url = match postgres_admin {
                    Some(url) => url,
                    None => tokio::task::spawn_blocking(servers::postgres_admin_url)
                        .await
                        .expect("the test Postgres server"),
                };
                let name = format!("sop_test_{tag}");
                let admin = store::connect(&admin_url, 1)
                    .await
                    .expect("connect to Postgres");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                (
                    with_database(&admin_url, &name),
                    Database::Postgres { admin_url, name },
                )
            }
        };
        let local = Settings::local();
        let mut settings = Settings {
            connection: ConnectionSettings {
                nats_url,
                subject_prefix: format!("t{tag}"),
                ..local.connection
            },
            worker: WorkerSettings {
                database_url,
                concurrency: 8,
                db_max_connections: 8,
                // Tests run side by side: each picks a free port for its HTTP endpoints.
                http_addr: "127.0.0.1:0".into(),
                shutdown_timeout_secs: 10,
                // Redeliveries after a killed worker come quickly in tests.
                ack_wait_secs: 5,
                ..local.worker
            },
            ..local
        };
        configure(&mut settings);
        let connect = || async {
            app::connect_db(&settings)
                .await
                .expect("connect to the database")
        };
        let mut worker_db = connect().await;
        // The test's own reads go through a connection of their own, so that only the
        // worker's statements are recorded.
        let db = match RECORDED.try_with(Clone::clone) {
            Ok(recorded) => {
                worker_db.set_metric_callback(move |info| {
                    let statement = info.statement;
                    recorded
                        .lock()
                        .unwrap()
                        .insert(statement.sql.clone(), statement.clone());
                });
                let db = connect().await;
                // Migrated first: an upgrade's one-off statements are not the worker's reads.
                store::migrate(&db).await.expect("migrate");
                db
            }
            Err(_) => worker_db.clone(),
        };
        let running = app::start_on(&settings, worker_db)
            .await
            .expect("start the worker");
        let client = running.client().with_timeout(WAIT);
        TestApp {
            running,
            settings,
            client,
            db,
            database,
        }
    }

    /// The payload approving version `id` as it stands now, naming its digest as an
    /// approver who read it would (an unknown id names none).
    pub async fn approval(&self, id: Uuid) -> Value {
        let digest = entity::procedure::Entity::find_by_id(id)
            .one(self.db())
            .await
            .expect("read the version")
            .map(|p| p.digest)
            // A well-formed digest for a version that does not exist.
            .unwrap_or_else(|| format!("sha256:{}", "0".repeat(64)));
        json!({ "procedure_id": id, "digest": digest })
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Registers a team with two System1s (one skilled in interviewing) and System3/4/5.
    pub async fn register_team(&self, name: &str) -> Team {
        let spec = TeamSpec {
            name: name.to_owned(),
            systems: [
                ("System1/alpha", "system1", vec!["interviewing".to_owned()]),
                ("System1/beta", "system1", vec![]),
                ("System3/root", "system3", vec![]),
                ("System4/root", "system4", vec![]),
                ("System5/root", "system5", vec![]),
            ]
            .into_iter()
            .map(|(n, k, skills)| SystemSpec {
                name: n.into(),
                kind: k.into(),
                id: None,
                skills,
                public_key: None,
                nats_key: None,
            })
            .collect(),
        };
        let txn = store::begin(self.db()).await.expect("begin");
        let record = store::teams::apply(&txn, &spec).await.expect("apply team");
        txn.commit().await.expect("commit team");
        self.team_stream(name).await;
        let id = |n: &str| {
            record
                .systems
                .iter()
                .find(|s| s.name == n)
                .expect("system")
                .id
        };
        Team {
            id: record.id,
            s1a: id("System1/alpha"),
            s1b: id("System1/beta"),
            s3: id("System3/root"),
            s4: id("System4/root"),
            s5: id("System5/root"),
        }
    }

    /// Registers `public_key` for one system of a team registered before: from then on its
    /// commands and queries must be signed with the matching seed.
    pub async fn register_key(&self, team: &str, system: &str, kind: &str, public_key: String) {
        let txn = store::begin(self.db()).await.expect("begin");
        let spec = TeamSpec {
            name: team.into(),
            systems: vec![SystemSpec {
                name: system.into(),
                kind: kind.into(),
                id: None,
                skills: vec![],
                public_key: Some(public_key),
                nats_key: None,
            }],
        };
        store::teams::apply(&txn, &spec)
            .await
            .expect("apply the key");
        txn.commit().await.expect("commit the key");
    }

    /// Creates the events stream of a team applied through the database, as `team.apply`
    /// does for one applied through the bus.
    pub async fn team_stream(&self, team: &str) {
        self.running
            .team_streams
            .ensure(team)
            .await
            .expect("create the team's events stream");
    }

    pub async fn send(&self, name: CommandName, actor: Uuid, payload: Value) -> Outcome {
        self.client
            .send(name, actor, payload)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Sends and expects acceptance.
    pub async fn ok(&self, name: CommandName, actor: Uuid, payload: Value) -> Accepted {
        match self.send(name, actor, payload).await.verdict {
            Verdict::Accepted { result } => result,
            Verdict::Rejected { error } => panic!("{name} rejected: {error:?}"),
        }
    }

    /// Sends and expects a rejection.
    pub async fn refused(&self, name: CommandName, actor: Uuid, payload: Value) -> ErrorBody {
        match self.send(name, actor, payload).await.verdict {
            Verdict::Rejected { error } => error,
            Verdict::Accepted { result } => {
                panic!("{name} accepted, expected a rejection: {result:?}")
            }
        }
    }

    /// Runs the `sop` binary against this worker's NATS, database and prefix: exit code,
    /// stdout, stderr.
    pub async fn sop(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.sop_command(args).output().await.expect("run sop");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The `sop` binary with this worker's NATS, database and prefix, not yet started.
    pub fn sop_command(&self, args: &[&str]) -> tokio::process::Command {
        let s = &self.settings;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"));
        command
            .args(args)
            .env("SOP_NATS_URL", &s.connection.nats_url)
            .env("SOP_DATABASE_URL", &s.worker.database_url)
            .env("SOP_SUBJECT_PREFIX", &s.connection.subject_prefix)
            .env("RUST_LOG", "error")
            .env_remove("SOP_ACTOR");
        command
    }

    /// Stops this process's worker (consumer, relay, queries) so other processes do the work;
    /// the connections stay usable.
    pub async fn pause_consumer(&mut self) {
        self.running.halt().await;
    }

    /// Waits until the relay has published everything committed so far.
    pub async fn drained(&self) {
        eventually("the outbox drained", || async {
            let backlog = store::outbox::backlog(self.db()).await.expect("backlog");
            (backlog == 0).then_some(())
        })
        .await
    }

    /// Every message in the outbox, in order.
    pub async fn stored(&self) -> Vec<store::outbox::Stored> {
        store::outbox::messages(self.db(), None, 1 << 40)
            .await
            .expect("the outbox")
    }

    /// Every event published so far, replayed from the start of the stream.
    pub async fn events(&self) -> Vec<EventEnvelope<Value>> {
        self.drained().await;
        let expected = self
            .stored()
            .await
            .iter()
            .filter(|m| m.kind.starts_with("event."))
            .count();
        let stream = self
            .client
            .events(">", vsm_sop::bus::client::EventStart::First)
            .await
            .expect("replay events");
        let mut stream = std::pin::pin!(stream);
        let mut events = Vec::with_capacity(expected);
        while events.len() < expected {
            let next = tokio::time::timeout(WAIT, stream.next())
                .await
                .unwrap_or_else(|_| panic!("only {} of {expected} events replayed", events.len()));
            events.push(next.expect("stream ended").expect("event"));
        }
        events
    }

    pub async fn stop(self) {
        let js = async_nats::jetstream::new(self.running.nats.clone());
        let subjects = self.running.subjects.clone();
        self.running.stop().await;
        vsm_sop::bus::streams::delete(&js, &subjects).await.ok();
        match self.database {
            Database::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Database::Postgres { admin_url, name } => {
                if let Ok(admin) = store::connect(&admin_url, 1).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            }
        }
    }
}

/// The "First Run Discovery" SOP of the original system: six sequential tasks.
pub fn first_run_discovery() -> Value {
    let names = [
        "Collect user identity and links",
        "Collect user documents and sources",
        "Analyse documents for needs and active work",
        "Prepare a discovery interview plan",
        "Conduct the interview",
        "Propose initial purpose and strategy",
    ];
    let tasks: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut t = json!({
                "position": i + 1,
                "name": name,
                "description": format!("Step {} of first run discovery", i + 1),
                "depends_on": if i == 0 { vec![] } else { vec![i] },
                "default_assignee_type": "system1",
            });
            if *name == "Conduct the interview" {
                t["required_skills"] = json!(["interviewing"]);
            }
            t
        })
        .collect();
    json!({
        "name": "First Run Discovery",
        "description": "Learn who the user is and what they need.",
        "risk_level": "low",
        "impact": "high",
        "rollback_plan": "Revert to prior purpose/strategy and re-interview the user.",
        "tasks": tasks,
    })
}

/// Drafts and approves the First Run Discovery SOP; returns its series (= v1) id.
/// Version 2 of `v1`'s series, drafted by revising it (a new description).
pub async fn revised_sop(app: &TestApp, team: &Team, v1: Uuid) -> Accepted {
    app.ok(
        CommandName::ReviseProcedure,
        team.s4,
        json!({ "procedure_id": v1, "description": "Sharper discovery" }),
    )
    .await
}

pub async fn approved_sop(app: &TestApp, team: &Team) -> Uuid {
    approved(app, team, first_run_discovery()).await
}

/// Drafts `draft` and approves it; returns its series (= v1) id.
pub async fn approved(app: &TestApp, team: &Team, draft: Value) -> Uuid {
    let drafted = app.ok(CommandName::DraftProcedure, team.s4, draft).await;
    let id = drafted.procedure_id.expect("procedure id");
    app.ok(
        CommandName::ApproveProcedure,
        team.s5,
        app.approval(id).await,
    )
    .await;
    id
}

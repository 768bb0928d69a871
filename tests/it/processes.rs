//! The worker as a real process: graceful shutdown under load loses and doubles nothing, and
//! two worker processes share one stream and one database, keeping every guarantee. Also the
//! operator's view: /metrics, /healthz, /readyz, and trace context carried to events.

use std::process::Stdio;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use entity::{command_inbox, procedure};
use futures::StreamExt;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::harness::*;
use vsm_sop::wire::command::{CommandName as C, MSG_ID_HEADER, TRACEPARENT_HEADER};

/// A `sop worker` child process on the test's NATS, database and prefix.
struct WorkerProcess {
    child: Child,
    http: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl WorkerProcess {
    async fn start(app: &TestApp) -> WorkerProcess {
        let http = format!("127.0.0.1:{}", free_port());
        let s = &app.settings;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sop"))
            .arg("worker")
            .env("SOP_NATS_URL", &s.nats_url)
            .env("SOP_DATABASE_URL", &s.database_url)
            .env("SOP_SUBJECT_PREFIX", &s.subject_prefix)
            .env("SOP_HTTP_ADDR", &http)
            .env("SOP_CONCURRENCY", "8")
            .env("SOP_SHUTDOWN_TIMEOUT_SECS", "20")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sop worker");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("worker started") {
                    return;
                }
            }
            panic!("the worker exited during start-up");
        })
        .await
        .expect("worker start-up");
        // Keep draining its log so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        WorkerProcess { child, http }
    }

    /// SIGTERM, then the exit status (bounded).
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within its deadline")
            .unwrap()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(&self.http).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, text)
    }

    /// `sop_commands_total` over all commands and outcomes, from this process's /metrics.
    async fn commands_handled(&self) -> u64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|l| l.starts_with("sop_commands_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// Publishes `n` drafts as fast as JetStream acknowledges them; returns their command ids.
async fn burst(app: &TestApp, actor: Uuid, n: usize) -> Vec<Uuid> {
    let js = async_nats::jetstream::new(app.running.nats.clone());
    let subject = app.client.subjects().command("procedure.draft");
    let mut ids = Vec::with_capacity(n);
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        let id = Uuid::now_v7();
        let mut sop = first_run_discovery();
        sop["name"] = json!(format!("Burst {i}"));
        let body = json!({ "schema_version": 1, "command_id": id, "actor": actor, "payload": sop });
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, id.to_string().as_str());
        let publish = PublishMessage::build()
            .payload(serde_json::to_vec(&body).unwrap().into())
            .headers(headers);
        acks.push(js.send_publish(subject.clone(), publish).await.unwrap());
        ids.push(id);
    }
    for ack in acks {
        ack.await.unwrap();
    }
    ids
}

async fn outcomes(app: &TestApp) -> u64 {
    command_inbox::Entity::find().count(app.db()).await.unwrap()
}

async fn wait_for_outcomes(app: &TestApp, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while outcomes(app).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} outcomes",
            outcomes(app).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// In-process workers stop consuming, so only the child processes work the stream.
async fn without_in_process_worker(backend: Backend) -> (TestApp, Team) {
    let mut app = TestApp::spawn(backend).await;
    let team = app.register_team("processes").await;
    app.pause_consumer().await;
    (app, team)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_and_doubles_nothing() {
    let (app, team) = without_in_process_worker(Backend::Postgres).await;
    let first = WorkerProcess::start(&app).await;
    let ids = burst(&app, team.s4, 400).await;
    // Stop the first worker while it is busy with the burst.
    while outcomes(&app).await < 40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = first.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let done = outcomes(&app).await;
    assert!(
        done < ids.len() as u64,
        "the burst was still in flight at SIGTERM ({done} done)"
    );
    // A second worker takes over what was left.
    let second = WorkerProcess::start(&app).await;
    wait_for_outcomes(&app, ids.len() as u64).await;
    app.drained().await;
    assert_eq!(
        outcomes(&app).await,
        ids.len() as u64,
        "one outcome per command"
    );
    assert_eq!(
        procedure::Entity::find().count(app.db()).await.unwrap(),
        ids.len() as u64,
        "one effect per command"
    );
    for id in &ids {
        assert!(
            app.client
                .outcome(*id)
                .await
                .unwrap()
                .is_some_and(|o| o.is_accepted()),
            "{id}"
        );
    }
    assert!(second.terminate().await.success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_the_load_and_keep_every_guarantee() {
    let (app, team) = without_in_process_worker(Backend::Postgres).await;
    let (a, b) = (
        WorkerProcess::start(&app).await,
        WorkerProcess::start(&app).await,
    );
    let ids = burst(&app, team.s4, 400).await;
    wait_for_outcomes(&app, ids.len() as u64).await;
    app.drained().await;
    assert_eq!(
        procedure::Entity::find().count(app.db()).await.unwrap(),
        ids.len() as u64
    );
    let (by_a, by_b) = (a.commands_handled().await, b.commands_handled().await);
    assert_eq!(
        by_a + by_b,
        ids.len() as u64,
        "each command handled once: {by_a} + {by_b}"
    );
    assert!(
        by_a > 0 && by_b > 0,
        "both workers took a share: {by_a} / {by_b}"
    );
    // Every event exactly once, although two relays ran.
    let events = app.events().await;
    let unique: std::collections::BTreeSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(unique.len(), events.len());
    assert_eq!(events.len(), ids.len());
    assert!(a.terminate().await.success() && b.terminate().await.success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_metrics_health_readiness_and_trace_context() {
    let (app, team) = without_in_process_worker(Backend::Sqlite).await;
    let worker = WorkerProcess::start(&app).await;
    assert_eq!(worker.get("/healthz").await.0, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while worker.get("/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A traceparent on a command comes back on the events it causes.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut events = app
        .running
        .nats
        .subscribe(
            app.client
                .subjects()
                .event_filter(Some("procedure.drafted"), None),
        )
        .await
        .unwrap();
    let id = Uuid::now_v7();
    let body = json!({ "schema_version": 1, "command_id": id, "actor": team.s4, "payload": first_run_discovery() });
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID_HEADER, id.to_string().as_str());
    headers.insert(TRACEPARENT_HEADER, trace);
    let js = async_nats::jetstream::new(app.running.nats.clone());
    js.send_publish(
        app.client.subjects().command(C::DraftProcedure.as_str()),
        PublishMessage::build()
            .payload(serde_json::to_vec(&body).unwrap().into())
            .headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let event = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event
            .headers
            .unwrap()
            .get(TRACEPARENT_HEADER)
            .unwrap()
            .as_str(),
        trace
    );
    app.client
        .send(
            C::ApproveProcedure,
            team.s3,
            json!({ "procedure_id": Uuid::now_v7() }),
        )
        .await
        .unwrap();
    let (status, metrics) = worker.get("/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "sop_commands_total{command=\"procedure.draft\",outcome=\"accepted\"} 1",
        "sop_commands_total{command=\"procedure.approve\",outcome=\"rejected\"} 1",
        "sop_command_duration_seconds_bucket",
        "sop_ready 1",
        "sop_outbox_backlog",
        "sop_consumer_pending",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected}:\n{metrics}"
        );
    }
    assert!(worker.terminate().await.success());
    app.stop().await;
}

//! The worker as a real process: graceful shutdown under load loses and doubles nothing, and
//! two worker processes share one stream and one database, keeping every guarantee. Also the
//! operator's view: /metrics, /healthz, /readyz, and trace context carried to events.

use std::process::Stdio;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use entity::{command_inbox, procedure};
use futures::StreamExt;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::wire::command::{CommandName as C, MSG_ID_HEADER, TRACEPARENT_HEADER};
use vsm_sop::wire::outcome::Verdict;

/// A `sop worker` child process on the test's NATS, database and prefix.
pub(crate) struct WorkerProcess {
    child: Child,
    http: String,
    /// Its log so far, a line each.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl WorkerProcess {
    pub(crate) async fn start(app: &TestApp) -> WorkerProcess {
        Self::start_with(app, 8).await
    }

    /// A worker handling at most `concurrency` groups at once.
    async fn start_with(app: &TestApp, concurrency: usize) -> WorkerProcess {
        let http = format!("127.0.0.1:{}", free_port());
        let s = &app.settings;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sop"))
            .arg("worker")
            .env("SOP_NATS_URL", &s.connection.nats_url)
            .env("SOP_DATABASE_URL", &s.worker.database_url)
            .env("SOP_SUBJECT_PREFIX", &s.connection.subject_prefix)
            .env("SOP_HTTP_ADDR", &http)
            .env("SOP_CONCURRENCY", concurrency.to_string())
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
        // Keep reading its log so the pipe never fills.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        WorkerProcess { child, http, log }
    }

    /// The first line of its log that `found` accepts, once written.
    async fn log_line(&self, found: impl Fn(&str) -> bool) -> String {
        eventually("a log line", || async {
            self.log.lock().unwrap().iter().find(|l| found(l)).cloned()
        })
        .await
    }

    /// SIGTERM, then the exit status (bounded).
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        sigterm(&mut self.child, Duration::from_secs(30)).await
    }

    /// SIGKILL: no goodbye, nothing flushed, nothing acknowledged.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(&self.http).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, text)
    }

    /// The sum of the series whose lines start with `prefix`, from this process's /metrics.
    async fn metric(&self, prefix: &str) -> u64 {
        self.sum_of(|l| l.starts_with(prefix)).await
    }

    /// The sum of the series whose lines contain `part` (a label, say).
    async fn metric_matching(&self, part: &str) -> u64 {
        self.sum_of(|l| !l.starts_with('#') && l.contains(part))
            .await
    }

    async fn sum_of(&self, select: impl Fn(&str) -> bool) -> u64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|l| select(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// `sop_commands_total` over all commands and outcomes.
    async fn commands_handled(&self) -> u64 {
        self.metric("sop_commands_total{").await
    }
}

/// Publishes commands as fast as JetStream acknowledges them; `with_id: false` leaves out the
/// Nats-Msg-Id header (so JetStream stores a re-sent command again and the worker's inbox
/// must recognise it). A string body is sent as raw bytes.
async fn publish_all(app: &TestApp, commands: Vec<(&str, Uuid, serde_json::Value, bool)>) {
    let js = async_nats::jetstream::new(app.running.nats.clone());
    let mut acks = Vec::with_capacity(commands.len());
    for (name, id, body, with_id) in commands {
        let mut headers = HeaderMap::new();
        if with_id {
            headers.insert(MSG_ID_HEADER, id.to_string().as_str());
        }
        let bytes = match body {
            serde_json::Value::String(raw) => raw.into_bytes(),
            body => serde_json::to_vec(&body).unwrap(),
        };
        let publish = PublishMessage::build()
            .payload(bytes.into())
            .headers(headers);
        acks.push(
            js.send_publish(app.client.subjects().command(name), publish)
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

fn draft(i: usize, actor: Uuid) -> (&'static str, Uuid, serde_json::Value, bool) {
    let id = Uuid::now_v7();
    let mut sop = first_run_discovery();
    sop["name"] = json!(format!("Burst {i}"));
    let body = json!({ "schema_version": 1, "command_id": id, "actor": actor, "payload": sop });
    ("procedure.draft", id, body, true)
}

/// Publishes `n` drafts; returns their command ids.
async fn burst(app: &TestApp, actor: Uuid, n: usize) -> Vec<Uuid> {
    let commands: Vec<_> = (0..n).map(|i| draft(i, actor)).collect();
    let ids = commands.iter().map(|c| c.1).collect();
    publish_all(app, commands).await;
    ids
}

async fn outcomes(app: &TestApp) -> u64 {
    command_inbox::Entity::find().count(app.db()).await.unwrap()
}

/// `n` drafts were sent: each has exactly one outcome and made exactly one procedure.
async fn assert_each_once(app: &TestApp, n: u64) {
    assert_eq!(outcomes(app).await, n, "one outcome per command");
    assert_eq!(
        procedure::Entity::find().count(app.db()).await.unwrap(),
        n,
        "one effect per command"
    );
}

/// Bursts of hundreds of commands through worker processes: more time than one command needs.
const BURST: Duration = Duration::from_secs(60);

async fn wait_for_outcomes(app: &TestApp, n: u64) {
    eventually_within(BURST, &format!("{n} outcomes"), || async {
        (outcomes(app).await >= n).then_some(())
    })
    .await
}

/// `sop audit verify` finds `team`'s chain whole and the same in both copies, `events` long.
async fn assert_chain_whole(app: &TestApp, team: &str, events: usize) {
    let (code, out, err) = app
        .sop(&["audit", "verify", "--team", team, "--json"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let found: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found["database"]["events"], events, "{found}");
    assert_eq!(found["stream"]["events"], events, "{found}");
}

/// In-process workers stop consuming, so only the child processes work the stream.
async fn without_in_process_worker(backend: Backend) -> (TestApp, Team) {
    let mut app = TestApp::spawn(backend).await;
    let team = app.register_team("processes").await;
    app.pause_consumer().await;
    (app, team)
}

on_both_databases!(a_backlog_commits_in_groups_and_each_command_keeps_its_own_outcome);

/// A backlog is worked in groups (several commands per transaction); rejections, duplicates
/// and malformed messages in the middle of a group touch nothing of their neighbours.
async fn a_backlog_commits_in_groups_and_each_command_keeps_its_own_outcome(backend: Backend) {
    let (app, team) = without_in_process_worker(backend).await;
    let mut commands = Vec::new();
    let mut expected = Vec::new();
    for i in 0..240 {
        let (code, command) = match i % 8 {
            // A System1 may not draft: forbidden, between accepted drafts.
            3 => (Some("forbidden"), draft(i, team.s1a)),
            5 => {
                let id = Uuid::now_v7();
                let body = json!({ "schema_version": 1, "command_id": id, "actor": team.s3,
                    "payload": { "series_id": Uuid::now_v7() } });
                (Some("not_found"), ("procedure.execute", id, body, true))
            }
            7 => {
                let id = Uuid::now_v7();
                (
                    Some("invalid_payload"),
                    ("task.start", id, json!("{not json"), true),
                )
            }
            _ => (None, draft(i, team.s4)),
        };
        expected.push((command.1, code));
        commands.push(command);
    }
    // Re-sent ids JetStream stores again (no Nats-Msg-Id): the inbox answers them.
    let resent: Vec<_> = commands
        .iter()
        .step_by(12)
        .map(|(n, id, b, _)| (*n, *id, b.clone(), false))
        .collect();
    let messages = (commands.len() + resent.len()) as u64;
    commands.extend(resent);
    publish_all(&app, commands).await;

    let worker = WorkerProcess::start(&app).await;
    wait_for_outcomes(&app, expected.len() as u64).await;
    app.drained().await;
    for (id, code) in &expected {
        let outcome = app.client.outcome(*id).await.unwrap().expect("an outcome");
        match (code, outcome.verdict) {
            (None, Verdict::Accepted { .. }) => {}
            (Some(code), Verdict::Rejected { error }) => assert_eq!(&error.code, code),
            (code, verdict) => panic!("{id}: expected {code:?}, got {verdict:?}"),
        }
    }
    let accepted = expected.iter().filter(|(_, c)| c.is_none()).count() as u64;
    assert_eq!(
        procedure::Entity::find().count(app.db()).await.unwrap(),
        accepted,
        "one procedure per accepted draft, none for the rejected ones"
    );
    // Every message was handled in a committed transaction, and fewer transactions than
    // messages: commands shared commits. (A re-sent id in two concurrent groups makes one of
    // them fail and be redone, possibly with a retry: wait for the final handlings.)
    let retried = "outcome=\"retried\"";
    eventually_within(BURST, "every message handled", || async {
        (worker.commands_handled().await - worker.metric_matching(retried).await >= messages)
            .then_some(())
    })
    .await;
    let transactions = worker.metric("sop_transaction_commands_count").await;
    assert_eq!(
        worker.metric("sop_transaction_commands_sum").await,
        messages
    );
    assert!(
        transactions < messages,
        "{transactions} transactions for {messages} messages"
    );
    assert!(worker.terminate().await.success());
    app.stop().await;
}

on_both_databases!(executes_in_one_group_follow_the_approvals_and_retirements_before_them);

/// Executes of one group share their reads of the series (and team); an approval or a
/// retirement earlier in the same group is what the executes after it see.
async fn executes_in_one_group_follow_the_approvals_and_retirements_before_them(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let team = app.register_team("group-reads").await;
    let v1 = approved_sop(&app, &team).await;
    let v2 = revised_sop(&app, &team, v1).await.procedure_id.unwrap();
    app.pause_consumer().await;
    let before = outcomes(&app).await;

    let execute = || {
        let id = Uuid::now_v7();
        let body = json!({ "schema_version": 1, "command_id": id, "actor": team.s3,
            "payload": { "series_id": v1 } });
        ("procedure.execute", id, body, true)
    };
    let by = |name, actor, payload| {
        let id = Uuid::now_v7();
        let body =
            json!({ "schema_version": 1, "command_id": id, "actor": actor, "payload": payload });
        (name, id, body, true)
    };
    let mut commands: Vec<_> = (0..5).map(|_| execute()).collect();
    commands.push(by("procedure.approve", team.s5, app.approval(v2).await));
    commands.extend((0..5).map(|_| execute()));
    commands.push(by(
        "procedure.retire",
        team.s5,
        json!({ "procedure_id": v2, "reason": "obsolete" }),
    ));
    commands.extend((0..3).map(|_| execute()));
    let ids: Vec<Uuid> = commands.iter().map(|c| c.1).collect();
    publish_all(&app, commands).await;

    // One group at a time: the pull may hand the commands over in more than one group, and
    // concurrent groups would each be free to commit first (per-series order holds by commit
    // order, which the races tests check), not by stream order, which this test compares.
    let worker = WorkerProcess::start_with(&app, 1).await;
    wait_for_outcomes(&app, before + ids.len() as u64).await;
    app.drained().await;
    let mut seen = Vec::new();
    for id in &ids {
        seen.push(
            match app.client.outcome(*id).await.unwrap().unwrap().verdict {
                Verdict::Accepted { result } => format!("v{}", result.version.unwrap()),
                Verdict::Rejected { error } => error.code,
            },
        );
    }
    let expected: Vec<&str> = [vec!["v1"; 5], vec!["v2"], vec!["v2"; 5], vec!["v2"]]
        .concat()
        .into_iter()
        .chain(["invalid_state"; 3])
        .collect();
    assert_eq!(seen, expected);
    // They shared transactions (else this test would not test a group).
    eventually_within(BURST, "every command handled", || async {
        (worker.commands_handled().await >= ids.len() as u64).then_some(())
    })
    .await;
    assert!(worker.metric("sop_transaction_commands_count").await < ids.len() as u64);
    assert!(worker.terminate().await.success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_and_doubles_nothing() {
    let (app, team) = without_in_process_worker(Backend::Postgres).await;
    let first = WorkerProcess::start(&app).await;
    let ids = burst(&app, team.s4, 2000).await;
    // Stop the first worker while it is busy with the burst.
    wait_for_outcomes(&app, 40).await;
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
    assert_each_once(&app, ids.len() as u64).await;
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

on_both_databases!(sigkill_under_load_three_times_loses_and_doubles_nothing);

/// A worker killed three times under load: each kill may come between publishing messages and
/// taking them off the pending list (on SQLite they stay listed up to a moment), so the next
/// worker publishes them again and the streams drop the copies.
async fn sigkill_under_load_three_times_loses_and_doubles_nothing(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let team = app.register_team("crashes").await;
    let sop = approved_sop(&app, &team).await;
    app.pause_consumer().await;
    let before = outcomes(&app).await;
    // A few thousand commands of mixed kinds: drafts, executes, malformed messages, and
    // re-sent command ids that JetStream does not de-duplicate.
    let mut commands = Vec::new();
    for i in 0..1200 {
        commands.push(draft(i, team.s4));
    }
    for _ in 0..800 {
        let id = Uuid::now_v7();
        let body = json!({ "schema_version": 1, "command_id": id, "actor": team.s3, "payload": { "series_id": sop } });
        commands.push(("procedure.execute", id, body, true));
    }
    for _ in 0..50 {
        commands.push(("task.start", Uuid::now_v7(), json!("{not json"), true));
    }
    let resent: Vec<_> = commands[..2000]
        .iter()
        .step_by(20)
        .map(|(n, id, b, _)| (*n, *id, b.clone(), false))
        .collect();
    let unique = commands.len() as u64;
    let executes = 800u64;
    commands.extend(resent);
    publish_all(&app, commands).await;

    let mut worker = WorkerProcess::start(&app).await;
    for round in 1..=3u64 {
        wait_for_outcomes(&app, before + round * unique / 4).await;
        worker.kill().await;
        worker = WorkerProcess::start(&app).await;
    }
    wait_for_outcomes(&app, before + unique).await;
    app.drained().await;

    assert_eq!(
        outcomes(&app).await,
        before + unique,
        "every command id has exactly one outcome"
    );
    assert_eq!(
        procedure::Entity::find().count(app.db()).await.unwrap(),
        1 + 1200,
        "one procedure per draft"
    );
    let runs = entity::procedure_run::Entity::find()
        .count(app.db())
        .await
        .unwrap();
    let initiatives = entity::initiative::Entity::find()
        .count(app.db())
        .await
        .unwrap();
    let tasks = entity::task::Entity::find().count(app.db()).await.unwrap();
    assert_eq!(
        (runs, initiatives, tasks),
        (executes, executes, executes * 6),
        "runs match accepted executes one to one"
    );
    let events = app.events().await;
    let ids: std::collections::BTreeSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "each event id exactly once in the stream"
    );
    // The team's chain holds across the kills: a message sent again carries the same link.
    assert_chain_whole(&app, "crashes", events.len()).await;
    assert!(worker.terminate().await.success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_during_load_loses_and_doubles_nothing() {
    let mut nats = PrivateNats::start();
    let mut app = TestApp::spawn_on(Backend::Postgres, Some(nats.url())).await;
    let team = app.register_team("outage").await;
    app.pause_consumer().await;
    let worker = WorkerProcess::start(&app).await;
    let ids = burst(&app, team.s4, 800).await;
    wait_for_outcomes(&app, 150).await;
    // The server goes away for two seconds in the middle of the burst, then comes back with
    // its store: the worker and the relay reconnect by themselves.
    nats.restart(Duration::from_secs(2)).await;
    wait_for_outcomes(&app, ids.len() as u64).await;
    app.drained().await;
    assert_each_once(&app, ids.len() as u64).await;
    let events = app.events().await;
    let unique: std::collections::BTreeSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        (unique.len(), events.len()),
        (ids.len(), ids.len()),
        "every event once"
    );
    assert!(worker.terminate().await.success());
    app.stop().await;
}

on_both_databases!(a_sigterm_during_a_nats_outage_stops_the_worker_and_loses_nothing);

/// SIGTERM while the NATS server is gone (an orchestrator's stop, Ctrl-C on `sop up`): the
/// worker exits within its shutdown deadline whatever NATS does, and once NATS is back the
/// next worker carries on with every command the first had not finished.
async fn a_sigterm_during_a_nats_outage_stops_the_worker_and_loses_nothing(backend: Backend) {
    let mut nats = PrivateNats::start();
    let mut app = TestApp::spawn_on(backend, Some(nats.url())).await;
    let team = app.register_team("outage").await;
    app.pause_consumer().await;
    let worker = WorkerProcess::start(&app).await;
    let ids = burst(&app, team.s4, 400).await;
    wait_for_outcomes(&app, 50).await;
    nats.stop();
    eventually("/readyz answering 503", || async {
        (worker.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    let status = worker.terminate().await;
    assert!(
        status.success(),
        "a stop during an outage exits 0: {status:?}"
    );
    nats.resume();
    let next = WorkerProcess::start(&app).await;
    wait_for_outcomes(&app, ids.len() as u64).await;
    app.drained().await;
    assert_each_once(&app, ids.len() as u64).await;
    assert!(next.terminate().await.success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_waited_out_not_dead_lettered() {
    let pg = PrivatePostgres::start();
    let mut app = TestApp::spawn_with(Backend::Postgres, None, Some(pg.admin_url())).await;
    let team = app.register_team("outage").await;
    app.pause_consumer().await;
    let worker = WorkerProcess::start(&app).await;
    let ids = burst(&app, team.s4, 600).await;
    wait_for_outcomes(&app, 100).await;
    pg.down();
    // While the database is away the worker stays up and says it is not ready.
    eventually("/readyz answering 503", || async {
        (worker.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        worker.get("/healthz").await.0,
        200,
        "the worker is still up"
    );
    pg.up();
    wait_for_outcomes(&app, ids.len() as u64).await;
    app.drained().await;
    let rejected = command_inbox::Entity::find()
        .filter(command_inbox::Column::Status.eq(entity::enums::CommandStatus::Rejected))
        .count(app.db())
        .await
        .unwrap();
    assert_eq!(rejected, 0, "retried, not rejected or dead-lettered");
    assert_eq!(
        procedure::Entity::find().count(app.db()).await.unwrap(),
        ids.len() as u64
    );
    eventually("ready again", || async {
        (worker.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert!(worker.terminate().await.success());
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
    // Linked by two relays taking turns, from commits out of position order: one chain.
    assert_chain_whole(&app, "processes", events.len()).await;
    assert!(a.terminate().await.success() && b.terminate().await.success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_metrics_health_readiness_and_trace_context() {
    let (app, team) = without_in_process_worker(Backend::Sqlite).await;
    let worker = WorkerProcess::start(&app).await;
    assert_eq!(worker.get("/healthz").await.0, 200);
    eventually("ready", || async {
        (worker.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
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
    let body = json!({ "schema_version": 1, "command_id": id, "actor": team.s4,
        "correlation_id": "discovery-42", "payload": first_run_discovery() });
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
    let headers = event.headers.unwrap();
    assert_eq!(headers.get(TRACEPARENT_HEADER).unwrap().as_str(), trace);
    // Every header it carries is one the contract declares for events.
    let contract = vsm_sop::bus::contract::asyncapi();
    let declared = &contract["components"]["schemas"]["EventHeaders"]["properties"];
    for (name, _) in headers.iter() {
        assert!(
            declared.get(name.to_string()).is_some(),
            "{name} is not declared: {declared}"
        );
    }
    // Its log line ties the command to the agent's work and trace, and counts deliveries.
    let line = worker
        .log_line(|l| l.contains(&format!("command_id={id}")))
        .await;
    for field in [
        "correlation_id=\"discovery-42\"".to_owned(),
        format!("traceparent=\"{trace}\""),
        "delivered=1".to_owned(),
        "outcome=\"accepted\"".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} in {line}");
    }
    app.client
        .send(
            C::ApproveProcedure,
            team.s3,
            app.approval(Uuid::now_v7()).await,
        )
        .await
        .unwrap();
    // Counted as the worker settles the message, which may be after its outcome went out.
    let approved = "sop_commands_total{command=\"procedure.approve\",outcome=\"rejected\"} 1";
    eventually("the rejected approval counted", || async {
        worker
            .get("/metrics")
            .await
            .1
            .contains(approved)
            .then_some(())
    })
    .await;
    let (status, metrics) = worker.get("/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "sop_commands_total{command=\"procedure.draft\",outcome=\"accepted\"} 1",
        "sop_commands_total{command=\"procedure.approve\",outcome=\"rejected\"} 1",
        "sop_command_duration_seconds_bucket",
        "sop_ready 1",
        "sop_outbox_backlog",
        "sop_outbox_parked 0",
        "sop_consumer_pending",
        // Counters start at zero for every documented label value.
        "sop_commands_total{command=\"run.reject\",outcome=\"retried\"} 0",
        "sop_dead_letters_total{reason=\"internal\"} 0",
        "sop_redeliveries_total 0",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected}:\n{metrics}"
        );
    }
    // Every family has its HELP and TYPE.
    let body = metrics
        .split_once("\r\n\r\n")
        .map_or(metrics.as_str(), |(_, body)| body);
    let families: std::collections::BTreeSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| n.strip_suffix(suffix))
                .filter(|base| body.contains(&format!("# TYPE {base} histogram")))
                .unwrap_or(n)
        })
        .collect();
    for family in families {
        for kind in ["HELP", "TYPE"] {
            assert!(
                body.contains(&format!("# {kind} {family} ")),
                "{family} has no {kind}:\n{body}"
            );
        }
    }
    // Where CI provides Prometheus' own checker, it has the last word.
    if let Ok(promtool) = std::env::var("SOP_TEST_PROMTOOL") {
        use std::io::Write;
        let mut check = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("SOP_TEST_PROMTOOL={promtool}: {e}"));
        check
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let checked = check.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    assert!(worker.terminate().await.success());
    app.stop().await;
}

/// Two workers (this process and a child) race on the same series and the same command ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_between_two_workers_keep_the_invariants() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let team = app.register_team("races").await;
    let other = WorkerProcess::start(&app).await;
    let outcome = |id: Uuid| {
        let client = app.client.clone();
        async move {
            eventually(&format!("an outcome for {id}"), || async {
                client.outcome(id).await.unwrap()
            })
            .await
        }
    };
    let envelope = |id: Uuid, actor: Uuid, payload: serde_json::Value| json!({ "schema_version": 1, "command_id": id, "actor": actor, "payload": payload });
    for round in 0..5 {
        // Two approvals of one draft: exactly one wins.
        let draft = app
            .ok(C::DraftProcedure, team.s4, first_run_discovery())
            .await
            .procedure_id
            .unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        publish_all(
            &app,
            vec![
                (
                    "procedure.approve",
                    a,
                    envelope(a, team.s5, app.approval(draft).await),
                    true,
                ),
                (
                    "procedure.approve",
                    b,
                    envelope(b, team.s5, app.approval(draft).await),
                    true,
                ),
            ],
        )
        .await;
        let (oa, ob) = (outcome(a).await, outcome(b).await);
        assert_eq!(
            oa.is_accepted() as u8 + ob.is_accepted() as u8,
            1,
            "round {round}: one approval wins"
        );

        // Executes racing a retire: no run of a retired version.
        let mut commands = Vec::new();
        let mut executes = Vec::new();
        for i in 0..20 {
            let id = Uuid::now_v7();
            executes.push(id);
            commands.push((
                "procedure.execute",
                id,
                envelope(id, team.s3, json!({ "series_id": draft })),
                true,
            ));
            if i == 10 {
                let r = Uuid::now_v7();
                commands.push((
                    "procedure.retire",
                    r,
                    envelope(
                        r,
                        team.s5,
                        json!({ "procedure_id": draft, "reason": "race" }),
                    ),
                    true,
                ));
            }
        }
        // The same execute command id twice more, without de-duplication by JetStream.
        let twice = executes[0];
        commands.push((
            "procedure.execute",
            twice,
            envelope(twice, team.s3, json!({ "series_id": draft })),
            false,
        ));
        publish_all(&app, commands).await;
        let mut accepted = 0;
        for id in &executes {
            if outcome(*id).await.is_accepted() {
                accepted += 1;
            }
        }
        app.drained().await;
        let runs = entity::procedure_run::Entity::find()
            .filter(entity::procedure_run::Column::ProcedureId.eq(draft))
            .all(app.db())
            .await
            .unwrap();
        assert_eq!(
            runs.len(),
            accepted,
            "round {round}: one run per accepted execute, none for the re-sent id"
        );
        // Commit order, not clocks: a run's `run.started` entered the outbox before the
        // retirement did (timestamps are taken when handling starts, before any lock).
        let seq_of = |kind: &'static str, series: Option<Uuid>, run: Option<Uuid>| {
            let db = app.db().clone();
            async move {
                vsm_sop::store::outbox::trail(&db, series, run, None, 100_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|(m, _)| m.kind == kind)
                    .expect(kind)
                    .0
                    .publication
                    .seq
            }
        };
        let retired = seq_of("event.procedure.retired", Some(draft), None).await;
        for run in &runs {
            let started = seq_of("event.run.started", None, Some(run.id)).await;
            assert!(
                started < retired,
                "round {round}: no run of a retired version"
            );
        }
    }
    assert!(other.terminate().await.success());
    app.stop().await;
}

/// The full lifecycle suite's First Run Discovery scenario, with a second worker process on
/// the same stream and database: every check still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_lifecycle_holds_with_two_workers() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let other = WorkerProcess::start(&app).await;
    crate::lifecycle::first_run_discovery_lifecycle(&app).await;
    let handled = other.commands_handled().await;
    assert!(
        handled > 0,
        "the second worker took part ({handled} commands)"
    );
    assert!(other.terminate().await.success());
    app.stop().await;
}

/// Executes racing a run limit, on Postgres with two worker processes (and this test's own
/// worker) taking them: the limit holds exactly, whoever handles which command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_limit_holds_with_executes_racing_on_two_workers() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let other = WorkerProcess::start(&app).await;
    let team = app.register_team("racing").await;
    let sop = approved_sop(&app, &team).await;
    for limit in [1u64, 3] {
        app.ok(
            C::SetPolicy,
            team.s5,
            json!({ "rules": [{ "name": "cap", "max_open_runs": limit }] }),
        )
        .await;
        let outcomes = futures::future::join_all(
            (0..40).map(|_| app.send(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))),
        )
        .await;
        let accepted = outcomes.iter().filter(|o| o.is_accepted()).count() as u64;
        let denied = outcomes
            .iter()
            .filter(|o| o.error_code() == Some("policy_denied"))
            .count() as u64;
        let open = entity::procedure_run::Entity::find()
            .filter(entity::procedure_run::Column::SeriesId.eq(sop))
            .filter(entity::procedure_run::Column::Status.eq("started"))
            .count(app.db())
            .await
            .unwrap();
        // Runs from the previous round stay open: this round fills the limit up to `limit`.
        assert_eq!(open, limit, "open runs under a limit of {limit}");
        assert_eq!(accepted + denied, 40, "every execute accepted or denied");
        assert_eq!(accepted, limit - if limit == 1 { 0 } else { 1 });
    }
    assert!(other.terminate().await.success());
    app.stop().await;
}

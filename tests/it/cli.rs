//! The `sop` binary as people and scripts use it: YAML/JSON input, tables and `--json`,
//! the dependency graph, and exit codes that tell rejected, not found and unreachable apart.

use serde_json::Value;
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::wire::answer::RunDetail;
use vsm_sop::wire::query::QueryName;

on_both_databases!(the_cli_drives_a_procedure_from_yaml_to_run);

struct Sop<'a> {
    app: &'a TestApp,
}

impl Sop<'_> {
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.app.sop(args).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args).await;
        assert_eq!(code, 0, "sop {args:?}: {out}{err}");
        out
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all).await).expect("JSON output")
    }
}

async fn the_cli_drives_a_procedure_from_yaml_to_run(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sop = Sop { app: &app };
    let dir = std::env::temp_dir().join(format!("sop-cli-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let team_file = dir.join("team.yaml");
    std::fs::write(
        &team_file,
        "name: cli-team\nsystems:\n  - { name: System1/alpha, type: system1, skills: [interviewing] }\n  - { name: System3/root, type: system3 }\n  - { name: System4/root, type: system4 }\n  - { name: System5/root, type: system5 }\n",
    )
    .unwrap();
    let team = sop
        .json(&["team", "apply", "--file", team_file.to_str().unwrap()])
        .await;
    let id = |t: &str| {
        team["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == t)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (s1, s3, s4, s5) = (id("system1"), id("system3"), id("system4"), id("system5"));

    let draft_file = dir.join("draft.yaml");
    std::fs::write(
        &draft_file,
        "name: Onboarding\nrisk_level: low\nimpact: medium\nrollback_plan: Remove the account.\ntasks:\n  - name: Create account\n  - name: Welcome call\n    depends_on: [1]\n",
    )
    .unwrap();
    let drafted = sop
        .json(&[
            "procedure",
            "draft",
            "--actor",
            &s4,
            "--file",
            draft_file.to_str().unwrap(),
        ])
        .await;
    let procedure = drafted["result"]["procedure_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let digest = format!("digest={}", drafted["result"]["digest"].as_str().unwrap());
    let approved = sop
        .ok(&["procedure", "approve", &procedure, &digest, "--actor", &s5])
        .await;
    assert!(
        approved.starts_with("accepted procedure.approve"),
        "{approved}"
    );

    // Rejected, not found and unreachable have their own exit codes.
    let (code, out, _) = sop
        .run(&["procedure", "approve", &procedure, &digest, "--actor", &s4])
        .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("forbidden"), "{out}");
    let (code, _, _) = sop
        .run(&["task", "start", &Uuid::now_v7().to_string(), "--actor", &s1])
        .await;
    assert_eq!(code, 4);
    let (code, _, _) = sop
        .run(&[
            "procedure",
            "show",
            &Uuid::now_v7().to_string(),
            "--actor",
            &s3,
        ])
        .await;
    assert_eq!(code, 4);
    let (code, _, _) = sop
        .run(&[
            "procedure",
            "list",
            "--actor",
            &s3,
            "--nats-url",
            "nats://127.0.0.1:1",
            "--timeout",
            "2",
        ])
        .await;
    assert_eq!(code, 3);

    // The dependency graph, for people.
    let mermaid = sop
        .ok(&["procedure", "graph", &procedure, "--actor", &s3])
        .await;
    assert!(
        mermaid.starts_with("graph TD") && mermaid.contains("t1 --> t2"),
        "{mermaid}"
    );
    let dot = sop
        .ok(&[
            "procedure",
            "graph",
            &procedure,
            "--format",
            "dot",
            "--actor",
            &s3,
        ])
        .await;
    assert!(dot.contains("t1 -> t2;"), "{dot}");
    let list = sop.ok(&["procedure", "list", "--actor", &s3]).await;
    assert!(
        list.starts_with("PROCEDURE_ID") && list.contains("Onboarding"),
        "{list}"
    );

    // Execute, work a task with FIELD=VALUE arguments, look at the run and the events.
    let run = sop
        .json(&[
            "procedure",
            "execute",
            &procedure,
            "expected_version=1",
            "--actor",
            &s3,
        ])
        .await;
    let run_id = run["result"]["run_id"].as_str().unwrap().to_owned();
    let first = run["result"]["task_ids"][0].as_str().unwrap().to_owned();
    sop.ok(&["task", "start", &first, "--actor", &s1]).await;
    sop.ok(&[
        "task",
        "complete",
        &first,
        "result=Account created",
        "--actor",
        &s1,
    ])
    .await;
    let shown = sop.ok(&["run", "show", &run_id, "--actor", &s3]).await;
    assert!(
        shown.contains("completed") && shown.contains("Create account"),
        "{shown}"
    );
    // People get a table naming each assignee; scripts get the query's answer as it is.
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("POSITION") && l.ends_with("ASSIGNEE")),
        "{shown}"
    );
    assert!(shown.contains("System1/alpha"), "{shown}");
    let answer: RunDetail = app
        .client
        .query_pages(
            QueryName::GetRun,
            &serde_json::json!({ "actor": s3, "run_id": run_id }),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        sop.json(&["run", "show", &run_id, "--actor", &s3]).await,
        serde_json::to_value(&answer).unwrap()
    );
    let retired = sop
        .ok(&["procedure", "list", "--status", "retired", "--actor", &s3])
        .await;
    assert_eq!(retired.trim_end(), "no procedures");
    app.drained().await;
    let events = sop
        .ok(&[
            "events", "replay", "--team", "cli-team", "--limit", "4", "--json",
        ])
        .await;
    let kinds: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "procedure.drafted",
            "procedure.approved",
            "run.started",
            "initiative.created"
        ]
    );
    let ready = sop
        .ok(&["events", "replay", "--type", "task.ready", "--limit", "1"])
        .await;
    assert!(
        ready.contains("task.ready") && ready.contains(&first),
        "{ready}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}

/// A reader that stops early (`sop contract | head`) ends the output quietly, exit 0.
#[tokio::test]
async fn a_closed_pipe_ends_the_output_quietly() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"))
        .arg("contract")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap();
    assert_eq!(first.as_deref(), Some("asyncapi: 3.0.0"));
    drop(lines);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Usage errors exit 1 (clap's own code, 2, means "rejected" here); help exits 0.
#[tokio::test]
async fn usage_errors_exit_1_and_help_exits_0() {
    let run = |args: &'static [&'static str]| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"))
            .args(args)
            .output()
            .await
            .unwrap()
    };
    let unknown = run(&["procedure", "frobnicate"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("frobnicate"));
    assert_eq!(run(&["procedure"]).await.status.code(), Some(1));
    let help = run(&["--help"]).await;
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage"));
}

/// A payload that does not fit its command is told before anything is sent: here no server
/// even listens.
#[tokio::test]
async fn a_mistyped_payload_is_caught_before_sending() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"))
        .args(["task", "start", &Uuid::now_v7().to_string(), "colour=red"])
        .args(["--actor", &Uuid::now_v7().to_string()])
        .env("SOP_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a task.start payload: `colour`: unknown field `colour`"),
        "{stderr}"
    );
    // With --json, the error is JSON too.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"))
        .args([
            "task",
            "start",
            &Uuid::now_v7().to_string(),
            "colour=red",
            "--json",
        ])
        .args(["--actor", &Uuid::now_v7().to_string()])
        .env("SOP_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .await
        .unwrap();
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["error"]["exit_code"], 1);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
}

/// With no worker on the prefix the CLI sends nothing and says what to check; `--queue` sends
/// anyway and returns once the command is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_worker_the_cli_says_so_and_queues_only_when_asked() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let team = app.register_team("idle").await;
    app.pause_consumer().await;
    let s4 = team.s4.to_string();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/first-run-discovery.json"
    );
    let (code, _, stderr) = app
        .sop(&["procedure", "draft", "--file", file, "--actor", &s4])
        .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("no worker answers"), "{stderr}");
    let js = async_nats::jetstream::new(app.running.nats.clone());
    let mut commands = js
        .get_stream(app.client.subjects().commands_stream())
        .await
        .unwrap();
    assert_eq!(
        commands.info().await.unwrap().state.messages,
        0,
        "nothing sent"
    );
    let id = Uuid::now_v7().to_string();
    let (code, stdout, stderr) = app
        .sop(&[
            "procedure",
            "draft",
            "--file",
            file,
            "--actor",
            &s4,
            "--queue",
            "--command-id",
            &id,
        ])
        .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("queued procedure.draft as {id}")),
        "{stdout}"
    );
    assert_eq!(commands.info().await.unwrap().state.messages, 1);
    app.stop().await;
}

/// A replay ends with the last event stored, also when a filter the client applies drops that
/// last event; an unknown event type is named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_ends_at_the_end_of_the_history() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ours = app.register_team("ours").await;
    let theirs = app.register_team("theirs").await;
    approved_sop(&app, &ours).await;
    approved_sop(&app, &theirs).await;
    app.drained().await;
    let (code, stdout, stderr) = app.sop(&["events", "replay", "--team", "ours"]).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "drafted and approved: {stdout}");
    assert!(lines.iter().all(|l| l.contains(" ours ")), "{stdout}");
    let (code, stdout, _) = app
        .sop(&["events", "replay", "--type", "procedure.approved"])
        .await;
    assert_eq!((code, stdout.lines().count()), (0, 2), "{stdout}");
    let (code, _, stderr) = app.sop(&["events", "replay", "--team", "nobody"]).await;
    assert_eq!(code, 4);
    assert!(stderr.contains("no team `nobody`"), "{stderr}");
    let (code, _, stderr) = app
        .sop(&["events", "replay", "--type", "procedure.flown"])
        .await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no event type `procedure.flown`"),
        "{stderr}"
    );
    app.stop().await;
}

/// A command's help lists its own options first and ends with the payload fields it takes.
#[tokio::test]
async fn a_commands_help_names_its_payload_fields() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"))
        .args(["procedure", "draft", "--help"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    let own = help.find("--file").unwrap();
    let shared = help.find("--nats-url").unwrap();
    assert!(own < shared, "its own options first: {help}");
    assert!(help.contains("Payload fields (procedure.draft):"), "{help}");
    assert!(
        help.contains("rollback_plan") && help.contains("required"),
        "{help}"
    );
}

/// `sop` with `args` and nothing from the test's environment: (exit code, stdout, stderr).
async fn sop_alone(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"))
        .args(args)
        .env_clear()
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The worker's settings are flags of the subcommands that run a worker, the connection
/// settings of every subcommand; a config file may hold both, whatever the subcommand.
#[tokio::test]
async fn worker_settings_show_only_where_a_worker_runs() {
    let help = |words: &'static [&'static str]| async move {
        let (code, out, err) = sop_alone(&[words, &["--help"][..]].concat()).await;
        assert_eq!(code, 0, "{words:?}: {err}");
        out
    };
    for words in [&["procedure", "draft"][..], &["task", "start"]] {
        let out = help(words).await;
        assert!(
            !out.contains("--database-url") && !out.contains("--batch-max"),
            "{words:?}: {out}"
        );
    }
    for words in [&["worker"][..], &["up"]] {
        let out = help(words).await;
        assert!(
            out.contains("--database-url") && out.contains("--batch-max"),
            "{words:?}: {out}"
        );
    }
    let out = help(&["procedure", "list"]).await;
    assert!(
        out.contains("--nats-url") && out.contains("--subject-prefix"),
        "{out}"
    );

    let dir = std::env::temp_dir().join(format!("sop-settings-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sop.yaml");
    std::fs::write(
        &file,
        "database_url: postgres://file@db.example/sop\nnats_url: nats://nats.example:4222\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = sop_alone(&["--config", f, "config", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(shown["database_url"], "postgres://file@db.example/sop");
    assert_eq!(shown["nats_url"], "nats://nats.example:4222");
    assert_eq!(
        (
            &shown["sources"]["database_url"],
            &shown["sources"]["concurrency"]
        ),
        (&Value::from("file"), &Value::from("default"))
    );
    let (code, _, err) = sop_alone(&["--config", f, "contract"]).await;
    assert_eq!(code, 0, "a subcommand without worker flags: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

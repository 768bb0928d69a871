//! System5 governs execution: an approval is of the content its approver read, and every run
//! records which content it executed.

use sea_orm::EntityTrait;
use serde_json::json;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::wire::command::CommandName as C;
use vsm_sop::wire::query::QueryName as Q;

async fn policy_of(app: &TestApp, actor: uuid::Uuid) -> serde_json::Value {
    app.client
        .query::<_, serde_json::Value>(Q::GetPolicy, &json!({ "actor": actor }))
        .await
        .expect("policy.get")
}

async fn preview_of(app: &TestApp, actor: uuid::Uuid, procedure: uuid::Uuid) -> serde_json::Value {
    app.client
        .query::<_, serde_json::Value>(
            Q::Preview,
            &json!({ "actor": actor, "procedure_id": procedure }),
        )
        .await
        .expect("procedure.preview")
}

async fn runs_with_status(app: &TestApp, actor: uuid::Uuid, status: &str) -> serde_json::Value {
    app.client
        .query::<_, serde_json::Value>(Q::ListRuns, &json!({ "actor": actor, "status": status }))
        .await
        .expect("run.list")
}

on_both_databases!(
    an_approval_names_the_content_and_runs_record_it,
    a_team_policy_is_set_whole_by_system5_and_read_by_any_member,
    executes_meet_the_teams_policy,
    a_run_held_for_approval_waits_for_system5,
    system3_pauses_a_run_and_resumes_it_with_what_became_ready
);

async fn an_approval_names_the_content_and_runs_record_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("governed").await;
    let drafted = app
        .ok(C::DraftProcedure, team.s4, first_run_discovery())
        .await;
    let id = drafted.procedure_id.unwrap();
    // What System5 reads, with the digest it will name.
    let read = app.approval(id).await;
    let seen = read["digest"].as_str().unwrap().to_owned();
    assert_eq!(drafted.digest.as_deref(), Some(seen.as_str()));

    // System4 changes the draft after System5 read it: the approval no longer covers it.
    let edited = app
        .ok(
            C::EditProcedure,
            team.s4,
            json!({ "procedure_id": id, "rollback_plan": "Nothing to undo." }),
        )
        .await;
    let current = edited.digest.unwrap();
    assert_ne!(current, seen);
    let e = app.refused(C::ApproveProcedure, team.s5, read).await;
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        ("conflict", Some("digest"))
    );
    assert!(
        e.message.contains(&seen) && e.message.contains(&current),
        "{}",
        e.message
    );
    let still = entity::procedure::Entity::find_by_id(id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, "draft");

    // Read again, approved; the run, its initiative, its tasks and its review carry the digest.
    let approved = app
        .ok(C::ApproveProcedure, team.s5, app.approval(id).await)
        .await;
    assert_eq!(approved.digest.as_deref(), Some(current.as_str()));
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": id }))
        .await;
    assert_eq!(run.digest.as_deref(), Some(current.as_str()));
    let events = app.events().await;
    let of_run: Vec<_> = events
        .iter()
        .filter(|e| !e.kind.starts_with("procedure."))
        .collect();
    assert!(!of_run.is_empty());
    for e in of_run {
        assert_eq!(e.data["procedure_digest"], current.as_str(), "{}", e.kind);
    }
    let version = events
        .iter()
        .find(|e| e.kind == "procedure.approved")
        .unwrap();
    assert_eq!(version.data["procedure"]["digest"], current.as_str());
}

async fn a_team_policy_is_set_whole_by_system5_and_read_by_any_member(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("policed").await;
    let none = policy_of(&app, team.s1a).await;
    assert_eq!(
        (none["version"].as_u64(), &none["policy"]),
        (Some(0), &json!({ "rules": [] }))
    );

    let first = json!({ "rules": [{ "name": "one-at-a-time", "max_open_runs": 1 }] });
    let e = app.refused(C::SetPolicy, team.s4, first.clone()).await;
    assert_eq!(e.code, "forbidden");
    let bad_zone = json!({ "rules": [{ "freeze": [{ "weekly": {
        "days": ["sat"], "from": "00:00", "to": "24:00", "time_zone": "Mars/Olympus" } }] }] });
    let e = app.refused(C::SetPolicy, team.s5, bad_zone).await;
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        (
            "validation_failed",
            Some("rules[0].freeze[0].weekly.time_zone")
        )
    );
    // A rule this worker does not know is refused, not ignored.
    let unknown = json!({ "rules": [{ "max_concurrency": 2 }] });
    assert_eq!(
        app.refused(C::SetPolicy, team.s5, unknown).await.code,
        "invalid_payload"
    );

    // A rule that could never refuse is a mistake, told as one: one that limits nothing, one
    // that names a series the team does not have (or a version's id for its series').
    let idle = json!({ "rules": [{ "name": "idle", "min_risk": "high" }] });
    let e = app.refused(C::SetPolicy, team.s5, idle).await;
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        ("validation_failed", Some("rules[0]"))
    );
    let nowhere = uuid::Uuid::now_v7();
    let stray = json!({ "rules": [{ "max_open_runs": 1, "series": [nowhere] }] });
    let e = app.refused(C::SetPolicy, team.s5, stray).await;
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        ("validation_failed", Some("rules[0].series[0]"))
    );
    assert!(
        e.message.contains("has no procedure series"),
        "{}",
        e.message
    );
    // The first version's id is its series'; a revision's is its own.
    let series = approved_sop(&app, &team).await;
    let version = app
        .ok(
            C::ReviseProcedure,
            team.s4,
            json!({ "procedure_id": series }),
        )
        .await
        .procedure_id
        .unwrap();
    let by_version = json!({ "rules": [{ "max_open_runs": 1, "series": [series, version] }] });
    let e = app.refused(C::SetPolicy, team.s5, by_version).await;
    assert_eq!(e.field.as_deref(), Some("rules[0].series[1]"));
    assert!(
        e.message.contains(&format!("name its series, {series}")),
        "{}",
        e.message
    );
    assert_eq!(
        policy_of(&app, team.s1a).await["version"],
        0,
        "nothing was set"
    );

    let set = app.ok(C::SetPolicy, team.s5, first.clone()).await;
    assert_eq!(set.policy_version, Some(1));
    let second = json!({ "rules": [
        { "name": "one-at-a-time", "max_open_runs": 1 },
        { "name": "quiet", "min_risk": "high", "min_interval": "15m" },
    ] });
    let set = app.ok(C::SetPolicy, team.s5, second.clone()).await;
    assert_eq!(set.policy_version, Some(2));
    let read = policy_of(&app, team.s1a).await;
    assert_eq!(read["version"], 2);
    assert_eq!(read["policy"], second);
    assert_eq!(read["set_by_system_id"], team.s5.to_string());

    // The example file, through the CLI, as a System5 would set it.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.yaml");
    let s5 = team.s5.to_string();
    let (code, out, err) = app
        .sop(&["policy", "set", "--file", example, "--actor", &s5])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, shown, err) = app
        .sop(&["policy", "show", "--actor", &team.s1a.to_string()])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("risky") && shown.contains("sat,sun 00:00–24:00 Europe/Berlin"),
        "{shown}"
    );
    assert_eq!(policy_of(&app, team.s1a).await["version"], 3);

    let changes: Vec<_> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.kind == "policy.changed")
        .collect();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0].data["previous"], serde_json::Value::Null);
    assert_eq!(
        (
            &changes[1].data["previous"],
            &changes[1].data["policy"],
            &changes[1].data["version"]
        ),
        (&first, &second, &json!(2))
    );
}

pub(crate) async fn executes_meet_the_teams_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("limited").await;
    let sop = approved_sop(&app, &team).await;
    let execute = || app.send(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }));
    let set = |policy: serde_json::Value| app.ok(C::SetPolicy, team.s5, policy);
    let denied = |outcome: vsm_sop::wire::outcome::Outcome| match outcome.verdict {
        vsm_sop::wire::outcome::Verdict::Rejected { error } => {
            assert_eq!(error.code, "policy_denied", "{}", error.message);
            (error.field.unwrap(), error.message)
        }
        other => panic!("expected policy_denied, got {other:?}"),
    };

    // At most one open run: the second waits for the first to end.
    set(json!({ "rules": [{ "name": "one", "max_open_runs": 1 }] })).await;
    let first = execute().await;
    assert!(first.is_accepted(), "{first:?}");
    let (rule, message) = denied(execute().await);
    assert_eq!(rule, "one.max_open_runs");
    assert!(
        message.contains("has 1 open run;") && message.contains("at most 1"),
        "{message}"
    );
    let preview = preview_of(&app, team.s3, sop).await;
    assert_eq!(
        (&preview["executable"], &preview["policy_rule"]),
        (&json!(false), &json!("one.max_open_runs"))
    );
    let run_id = serde_json::to_value(&first).unwrap()["result"]["run_id"].clone();
    app.ok(
        C::CancelRun,
        team.s3,
        json!({ "run_id": run_id, "reason": "Make room" }),
    )
    .await;
    assert!(execute().await.is_accepted());

    // A rule above the procedure's risk (this one is low) leaves it alone.
    set(json!({ "rules": [{ "name": "risky", "min_risk": "high", "max_open_runs": 1 }] })).await;
    assert!(execute().await.is_accepted());

    // A minimum interval: the last run started moments ago.
    set(json!({ "rules": [{ "name": "gap", "min_interval": "1h" }] })).await;
    let (rule, message) = denied(execute().await);
    assert_eq!(rule, "gap.min_interval");
    assert!(message.contains("allowed at"), "{message}");

    // Runs per rolling window: three started within the hour already.
    set(json!({ "rules": [{ "name": "rate", "max_runs": { "count": 3, "per": "1h" } }] })).await;
    let (rule, message) = denied(execute().await);
    assert_eq!(rule, "rate.max_runs");
    assert!(
        message.contains("started 3 runs in the last 1h"),
        "{message}"
    );

    // A freeze around now.
    let now = chrono::Utc::now();
    let window = json!({ "rules": [{ "name": "holidays", "freeze": [{
        "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "to": (now + chrono::Duration::hours(1)).to_rfc3339() }] }] });
    set(window).await;
    let (rule, message) = denied(execute().await);
    assert_eq!(rule, "holidays.freeze");
    assert!(
        message.contains("frozen") && message.contains("until"),
        "{message}"
    );

    // No rules: no limits.
    set(json!({ "rules": [] })).await;
    assert!(execute().await.is_accepted());
}

async fn a_run_held_for_approval_waits_for_system5(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("gated").await;
    let sop = approved_sop(&app, &team).await;
    let execute = || app.send(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }));
    app.ok(
        C::SetPolicy,
        team.s5,
        json!({ "rules": [{ "name": "gate", "run_approval": true, "max_open_runs": 1 }] }),
    )
    .await;
    let preview = preview_of(&app, team.s3, sop).await;
    assert_eq!(
        (&preview["executable"], &preview["approval_rule"]),
        (&json!(true), &json!("gate"))
    );

    let held = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    assert_eq!(held.status.as_deref(), Some("awaiting_approval"));
    assert_eq!(held.task_ids.len(), 6);
    let run = held.run_id.unwrap();
    // System5 finds what awaits it.
    let awaiting = runs_with_status(&app, team.s5, "awaiting_approval").await;
    let runs = awaiting["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{awaiting}");
    assert_eq!(
        (&runs[0]["run_id"], &runs[0]["approval"]["rule"]),
        (&json!(run), &json!("gate"))
    );
    let (code, out, err) = app
        .sop(&[
            "run",
            "list",
            "--status",
            "awaiting_approval",
            "--actor",
            &team.s5.to_string(),
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&run.to_string()) && out.contains("gate"),
        "{out}"
    );
    // The held run is open: the limit of one counts it.
    let second = execute().await;
    assert_eq!(second.error_code(), Some("policy_denied"), "{second:?}");

    let first_task = held.task_ids[0];
    let assignee = entity::task::Entity::find_by_id(first_task)
        .one(app.db())
        .await
        .unwrap()
        .unwrap()
        .assignee_system_id;
    let e = app
        .refused(C::StartTask, assignee, json!({ "task_id": first_task }))
        .await;
    assert_eq!(e.code, "invalid_state", "{e:?}");
    assert!(e.message.contains("awaiting_approval"), "{}", e.message);
    let e = app
        .refused(C::ApproveRun, team.s3, json!({ "run_id": run }))
        .await;
    assert_eq!(
        e.code, "forbidden",
        "the executor cannot approve its own run"
    );

    let approved = app
        .ok(
            C::ApproveRun,
            team.s5,
            json!({ "run_id": run, "note": "rollback plan read" }),
        )
        .await;
    assert_eq!(approved.status.as_deref(), Some("started"));
    app.ok(C::StartTask, assignee, json!({ "task_id": first_task }))
        .await;
    let e = app
        .refused(C::ApproveRun, team.s5, json!({ "run_id": run }))
        .await;
    assert_eq!(e.code, "invalid_state", "approved once");

    // Withdrawn by System3, the next execute is held again; System5 refuses it, by the CLI.
    app.ok(
        C::CancelRun,
        team.s3,
        json!({ "run_id": run, "reason": "make room" }),
    )
    .await;
    let again = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    let refused_run = again.run_id.unwrap().to_string();
    let (code, out, err) = app
        .sop(&[
            "run",
            "reject",
            &refused_run,
            "--reason",
            "not during the audit",
            "--actor",
            &team.s5.to_string(),
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let row = entity::procedure_run::Entity::find_by_id(again.run_id.unwrap())
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "canceled");
    assert_eq!(row.reason.as_deref(), Some("not during the audit"));
    assert_eq!(row.approval_rule.as_deref(), Some("gate"));
    assert_eq!(row.approval_verdict.as_deref(), Some("reject"));
    assert_eq!(row.approval_by_system_id, Some(team.s5));

    let events = app.events().await;
    let of = |run: uuid::Uuid| -> Vec<&str> {
        events
            .iter()
            .filter(|e| e.data["run_id"] == run.to_string())
            .map(|e| e.kind.as_str())
            .filter(|k| !k.starts_with("task.created"))
            .collect()
    };
    assert_eq!(
        of(run)[..5],
        [
            "run.awaiting_approval",
            "initiative.created",
            "run.approved",
            "task.ready",
            "task.started"
        ]
    );
    assert_eq!(
        of(again.run_id.unwrap()),
        [
            vec!["run.awaiting_approval", "initiative.created"],
            vec!["task.canceled"; 6],
            vec!["initiative.canceled", "run.rejected"],
        ]
        .concat()
    );
    let approval = &events
        .iter()
        .find(|e| e.kind == "run.approved")
        .unwrap()
        .data["approval"];
    assert_eq!(
        (&approval["rule"], &approval["verdict"], &approval["note"]),
        (
            &json!("gate"),
            &json!("approve"),
            &json!("rollback plan read")
        )
    );
    assert_eq!(approval["decided_by_system_id"], team.s5.to_string());
}

pub(crate) async fn system3_pauses_a_run_and_resumes_it_with_what_became_ready(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("paused").await;
    let sop = approved_sop(&app, &team).await;
    app.ok(
        C::SetPolicy,
        team.s5,
        json!({ "rules": [{ "name": "one", "max_open_runs": 1 }] }),
    )
    .await;
    let started = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    let run = started.run_id.unwrap();
    let (first, second) = (started.task_ids[0], started.task_ids[1]);
    let app = &app;
    let task = |id: uuid::Uuid| async move {
        entity::task::Entity::find_by_id(id)
            .one(app.db())
            .await
            .unwrap()
            .unwrap()
    };
    let worker = task(first).await.assignee_system_id;

    // By the CLI: paused, the ready first task may not start.
    let (code, out, err) = app
        .sop(&[
            "run",
            "pause",
            &run.to_string(),
            "--reason",
            "waiting for the budget",
            "--actor",
            &team.s3.to_string(),
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let e = app
        .refused(C::StartTask, worker, json!({ "task_id": first }))
        .await;
    assert_eq!(e.code, "invalid_state", "{e:?}");
    assert!(e.message.contains("paused"), "{}", e.message);
    assert!(!task(first).await.ready, "nothing is offered while paused");
    let e = app
        .refused(
            C::PauseRun,
            worker,
            json!({ "run_id": run, "reason": "mine" }),
        )
        .await;
    assert_eq!(e.code, "forbidden", "only System3 pauses");
    // Paused is open: the policy's limit of one counts it.
    let denied = app
        .send(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    assert_eq!(denied.error_code(), Some("policy_denied"), "{denied:?}");
    let listed = runs_with_status(app, team.s3, "paused").await;
    assert_eq!(listed["runs"][0]["reason"], "waiting for the budget");

    // Resumed, then paused with work in progress: that work finishes, its dependent waits.
    app.ok(C::ResumeRun, team.s3, json!({ "run_id": run }))
        .await;
    app.ok(C::StartTask, worker, json!({ "task_id": first }))
        .await;
    app.ok(
        C::PauseRun,
        team.s3,
        json!({ "run_id": run, "reason": "audit" }),
    )
    .await;
    app.ok(
        C::CompleteTask,
        worker,
        json!({ "task_id": first, "result": "links" }),
    )
    .await;
    app.ok(
        C::ReviewTask,
        team.s3,
        json!({ "task_id": first, "verdict": "approve" }),
    )
    .await;
    assert!(
        !task(second).await.ready,
        "nothing becomes ready while paused"
    );
    let e = app
        .refused(
            C::PauseRun,
            team.s3,
            json!({ "run_id": run, "reason": "twice" }),
        )
        .await;
    assert_eq!(e.code, "invalid_state", "{e:?}");

    let resumed = app
        .ok(
            C::ResumeRun,
            team.s3,
            json!({ "run_id": run, "note": "audit passed" }),
        )
        .await;
    assert_eq!(resumed.status.as_deref(), Some("started"));
    assert!(task(second).await.ready);
    let events = app.events().await;
    let of_run: Vec<&str> = events
        .iter()
        .filter(|e| e.data["run_id"] == run.to_string())
        .map(|e| e.kind.as_str())
        .filter(|k| k.starts_with("run.") || *k == "task.ready")
        .collect();
    assert_eq!(
        of_run,
        [
            "run.started",
            "task.ready",
            "run.paused",
            "run.resumed",
            "task.ready",
            "run.paused",
            "run.resumed",
            "task.ready"
        ]
    );
    let paused = events.iter().find(|e| e.kind == "run.paused").unwrap();
    assert_eq!(paused.data["status"], "paused");
    assert_eq!(paused.data["reason"], "waiting for the budget");
}

/// Streams an earlier release created, without the `policy` family nor direct gets, and the
/// events stream all teams shared before 0.2.0: a worker's start adds the subjects, allows
/// direct gets of outcomes, keeps every other setting, and retires the shared stream with its
/// history.
#[tokio::test]
async fn streams_of_an_earlier_release_gain_the_policy_family() {
    use vsm_sop::bus::streams::{self, StreamOptions};
    use vsm_sop::wire::subjects::Subjects;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let nats = async_nats::connect(app.settings.connection.nats_url.as_str())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats);
    let s = Subjects::new(&format!("upgrade{}", uuid::Uuid::now_v7().simple()));
    let earlier = |mut config: async_nats::jetstream::stream::Config| {
        config.subjects.retain(|f| !f.contains("policy"));
        config.max_age = std::time::Duration::from_secs(3600);
        config
    };
    js.create_stream(earlier(streams::commands_config(&s)))
        .await
        .unwrap();
    // Before 0.2.0 every team's events went to one stream.
    let shared = async_nats::jetstream::stream::Config {
        name: s.shared_events_stream(),
        subjects: s.event_filters(),
        ..Default::default()
    };
    js.create_stream(shared).await.unwrap();
    js.publish(
        s.event(vsm_sop::domain::event::EventKind::ALL[0], "t"),
        "old".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut outcomes = streams::outcomes_config(&s);
    outcomes.allow_direct = false;
    js.create_stream(outcomes).await.unwrap();
    streams::ensure(&js, &s, &StreamOptions::default())
        .await
        .unwrap();
    // Kept with its history, on a subject nothing publishes to: the team streams take over.
    let mut retired = js.get_stream(s.shared_events_stream()).await.unwrap();
    let retired = retired.info().await.unwrap().clone();
    assert_eq!(retired.config.subjects, [s.retired_events_subject()]);
    assert_eq!(retired.state.messages, 1);
    js.create_stream(earlier(streams::events_config(&s, "t")))
        .await
        .unwrap();
    streams::ensure_team(&js, &s, "t", &StreamOptions::default())
        .await
        .unwrap();
    for (name, wanted) in [
        (s.commands_stream(), s.command_filters()),
        (s.team_events_stream("t"), s.team_event_filters("t")),
    ] {
        let mut stream = js.get_stream(&name).await.unwrap();
        let config = stream.info().await.unwrap().config.clone();
        for subject in &wanted {
            assert!(config.subjects.contains(subject), "{name}: {subject}");
        }
        assert_eq!(
            config.max_age,
            std::time::Duration::from_secs(3600),
            "{name}: kept"
        );
    }
    let mut outcomes = js.get_stream(s.outcomes_stream()).await.unwrap();
    let config = outcomes.info().await.unwrap().config.clone();
    assert!(
        config.allow_direct,
        "outcomes are fetched with a direct get"
    );
    streams::delete(&js, &s).await.unwrap();
    js.delete_stream(s.shared_events_stream()).await.unwrap();
    app.stop().await;
}

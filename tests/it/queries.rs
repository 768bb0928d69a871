//! Queries over the NATS service API: answers, team scoping, typed errors, discovery.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::bus::client::ClientError;
use vsm_sop::wire::command::CommandName as C;
use vsm_sop::wire::query::{QueryName as Q, SERVICE_ERROR_CODE_HEADER};

on_both_databases!(
    queries_answer_about_procedures_runs_and_their_history,
    a_system_lists_its_tasks_and_what_it_can_start_now
);

async fn ask(app: &TestApp, name: Q, request: Value) -> Value {
    app.client
        .query::<_, Value>(name, &request)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn refused(app: &TestApp, name: Q, request: Value) -> String {
    match app.client.query::<_, Value>(name, &request).await {
        Err(ClientError::Refused(e)) => e.code,
        other => panic!("{name}: expected a refusal, got {other:?}"),
    }
}

pub(crate) async fn queries_answer_about_procedures_runs_and_their_history(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("queries").await;
    let other = app.register_team("others").await;
    let v1 = approved_sop(&app, &team).await;
    let v2 = app
        .ok(C::ReviseProcedure, team.s4, json!({ "procedure_id": v1, "risk_level": "medium",
            "tasks": [ { "name": "Collect identity" }, { "name": "Interview", "depends_on": [1], "required_skills": ["interviewing"] } ] }))
        .await
        .procedure_id
        .unwrap();

    // A version with its templates; listing with filters.
    let got = ask(
        &app,
        Q::GetProcedure,
        json!({ "actor": team.s3, "procedure_id": v1 }),
    )
    .await;
    assert_eq!(got["procedure"]["status"], "approved");
    assert_eq!(got["tasks"].as_array().unwrap().len(), 6);
    assert_eq!(got["tasks"][1]["depends_on"], json!([1]));
    let drafts = ask(
        &app,
        Q::ListProcedures,
        json!({ "actor": team.s5, "status": "draft" }),
    )
    .await;
    assert_eq!(drafts["procedures"].as_array().unwrap().len(), 1);
    let named = ask(
        &app,
        Q::ListProcedures,
        json!({ "actor": team.s5, "name": "first run" }),
    )
    .await;
    assert_eq!(named["procedures"].as_array().unwrap().len(), 2);

    // Preview of the draft for System5: not executable yet, assignees chosen as execute would.
    let preview = ask(
        &app,
        Q::Preview,
        json!({ "actor": team.s5, "procedure_id": v2 }),
    )
    .await;
    assert_eq!(preview["executable"], false);
    assert!(preview["blocked_by"].as_str().unwrap().contains("draft"));
    assert_eq!(preview["tasks"][1]["assignee_name"], "System1/alpha");
    assert_eq!(preview["tasks"][1]["depends_on"], json!([1]));
    assert_eq!(preview["tasks"][0]["ready_at_start"], true);

    // Diff between the versions.
    let diff = ask(
        &app,
        Q::Diff,
        json!({ "actor": team.s5, "from": v1, "to": v2 }),
    )
    .await;
    assert_eq!(
        diff["fields"],
        json!([{ "field": "risk_level", "from": "low", "to": "medium" }])
    );
    assert_eq!(diff["tasks_removed"].as_array().unwrap().len(), 4);
    assert_eq!(diff["tasks_changed"].as_array().unwrap().len(), 2);

    // History after approving v2: who did what, when.
    app.ok(C::ApproveProcedure, team.s5, app.approval(v2).await)
        .await;
    let history = ask(
        &app,
        Q::History,
        json!({ "actor": team.s4, "series_id": v1 }),
    )
    .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["status"], "retired");
    assert_eq!(versions[0]["retired_by_system_id"], json!(team.s5));
    assert_eq!(versions[1]["approved_by_system_id"], json!(team.s5));
    assert_eq!(versions[1]["created_by_system_id"], json!(team.s4));

    // A run, its trace and its audit trail.
    let executed = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": v1 }))
        .await;
    let (run_id, initiative_id) = (executed.run_id.unwrap(), executed.initiative_id.unwrap());
    app.ok(
        C::CancelRun,
        team.s3,
        json!({ "run_id": run_id, "reason": "demo" }),
    )
    .await;
    app.ok(
        C::ReviewInitiative,
        team.s3,
        json!({ "initiative_id": initiative_id, "outcome": "failed", "summary": "stopped" }),
    )
    .await;
    let run = ask(
        &app,
        Q::GetRun,
        json!({ "actor": team.s1a, "run_id": run_id }),
    )
    .await;
    assert_eq!(run["run"]["status"], "canceled");
    assert_eq!(run["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(run["review"]["outcome"], "failed");
    assert_eq!(run["review"]["context"]["risk_level"], "medium");
    let trace = ask(
        &app,
        Q::Trace,
        json!({ "actor": team.s3, "initiative_id": initiative_id }),
    )
    .await;
    assert_eq!(trace["procedure"]["procedure_id"], json!(v2));
    assert_eq!(trace["procedure"]["version"], 2);
    assert_eq!(trace["run"]["run_id"], json!(run_id));
    assert!(trace["review_id"].is_string());
    app.drained().await;
    let audit = ask(&app, Q::Audit, json!({ "actor": team.s5, "series_id": v1 })).await;
    let kinds: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        &kinds[..4],
        [
            "procedure.drafted",
            "procedure.approved",
            "procedure.revised",
            "procedure.approved"
        ]
    );
    assert!(kinds.contains(&"run.canceled") && kinds.contains(&"initiative.reviewed"));
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["published"] == true && e["actor"].is_string())
    );
    let run_audit = ask(
        &app,
        Q::Audit,
        json!({ "actor": team.s5, "run_id": run_id }),
    )
    .await;
    assert!(
        run_audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["type"].as_str().unwrap().starts_with("procedure."))
    );
    let id = Uuid::now_v7();
    app.client
        .send_with_id(
            id,
            C::RetireProcedure,
            team.s5,
            json!({ "procedure_id": v1, "reason": "x" }),
        )
        .await
        .unwrap();
    let outcome = ask(
        &app,
        Q::Outcome,
        json!({ "actor": team.s4, "command_id": id }),
    )
    .await;
    assert_eq!(outcome["error"]["code"], "invalid_state");

    // Typed errors; another team's ids answer as ids that do not exist.
    assert_eq!(
        refused(
            &app,
            Q::GetProcedure,
            json!({ "actor": team.s3, "procedure_id": Uuid::now_v7() })
        )
        .await,
        "not_found"
    );
    assert_eq!(
        refused(
            &app,
            Q::GetProcedure,
            json!({ "actor": other.s3, "procedure_id": v1 })
        )
        .await,
        "not_found"
    );
    assert_eq!(
        refused(
            &app,
            Q::GetRun,
            json!({ "actor": other.s3, "run_id": run_id })
        )
        .await,
        "not_found"
    );
    assert_eq!(
        refused(
            &app,
            Q::Outcome,
            json!({ "actor": other.s3, "command_id": id })
        )
        .await,
        "not_found"
    );
    assert_eq!(
        refused(&app, Q::GetRun, json!({ "actor": team.s3 })).await,
        "invalid_payload"
    );
    assert_eq!(
        refused(&app, Q::Audit, json!({ "actor": team.s3 })).await,
        "validation_failed"
    );
    let others = ask(&app, Q::ListProcedures, json!({ "actor": other.s4 })).await;
    assert_eq!(others["procedures"], json!([]));
    // The error is in the service-API headers too.
    let reply = app
        .running
        .nats
        .request(
            app.client.subjects().query("run.get"),
            serde_json::to_vec(&json!({ "actor": team.s3, "run_id": Uuid::now_v7() }))
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
    assert_eq!(
        reply
            .headers
            .unwrap()
            .get(SERVICE_ERROR_CODE_HEADER)
            .unwrap()
            .as_str(),
        "404"
    );
    // ...and counted as one in the endpoint's statistics.
    let run_get = app.client.subjects().query("run.get");
    let stats = service_verb(&app, "STATS", &run_get).await;
    let endpoint = stats
        .iter()
        .find(|e| e["subject"] == run_get.as_str())
        .unwrap();
    assert!(endpoint["num_errors"].as_u64().unwrap() >= 1, "{endpoint}");
    let last = endpoint["last_error"].as_str().unwrap();
    assert!(last.starts_with("404:"), "{endpoint}");

    // Discoverable through the service API.
    let ours = app.client.subjects().query("procedure.preview");
    let endpoints = service_verb(&app, "INFO", &ours).await;
    // Each endpoint's metadata points at its schemas: a file here, and a place in it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for e in &endpoints {
        let pointer = e["metadata"]["schema"]
            .as_str()
            .unwrap_or_else(|| panic!("{e}"));
        let (file, place) = pointer.split_once('#').unwrap();
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_else(|_| panic!("{file}"));
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        let schema = doc
            .pointer(place)
            .unwrap_or_else(|| panic!("{pointer} names nothing"));
        assert!(schema["messages"].is_object(), "{pointer}");
    }
    app.stop().await;
}

/// The endpoints of our worker's service as `$SRV.<verb>.sop` reports them: the answer that
/// lists `ours` among those of every worker on the server.
async fn service_verb(app: &TestApp, verb: &str, ours: &str) -> Vec<Value> {
    let inbox = app.running.nats.new_inbox();
    let mut answers = app.running.nats.subscribe(inbox.clone()).await.unwrap();
    app.running
        .nats
        .publish_with_reply(format!("$SRV.{verb}.sop"), inbox, "".into())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = answers.next().await {
            let answer: Value = serde_json::from_slice(&m.payload).unwrap();
            let endpoints = answer["endpoints"].as_array().unwrap().clone();
            if endpoints.iter().any(|e| e["subject"] == ours) {
                return Some(endpoints);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("no $SRV.{verb} answer lists {ours}"))
}

/// `task.list`: a System1's work list, ready first of all; paged; scoped to the team.
pub(crate) async fn a_system_lists_its_tasks_and_what_it_can_start_now(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("workers").await;
    let other = app.register_team("elsewhere").await;
    let sop = approved_sop(&app, &team).await;
    let runs = [
        app.ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
            .await,
        app.ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
            .await,
    ];
    let list = |actor: Uuid, extra: Value| {
        let mut request = json!({ "actor": actor });
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ask(&app, Q::ListTasks, request)
    };
    // Each run's first task is ready; who works it is the assignment rule's choice.
    let first = runs.map(|r| r.task_ids[0]);
    let mut ready = Vec::new();
    for s1 in [team.s1a, team.s1b] {
        let mine = list(s1, json!({ "ready": true })).await;
        assert_eq!(mine["assignee_system_id"], s1.to_string());
        for t in mine["tasks"].as_array().unwrap() {
            assert_eq!(
                (&t["status"], &t["ready"]),
                (&json!("pending"), &json!(true))
            );
            assert_eq!(t["assignee_system_id"], s1.to_string());
            assert_eq!(t["series_id"], sop.to_string(), "with its provenance");
            ready.push(t["task_id"].as_str().unwrap().parse::<Uuid>().unwrap());
        }
    }
    ready.sort();
    assert_eq!(ready, first.to_vec());

    // The ready tasks started, so that a list holds tasks of two statuses, interleaved.
    for s1 in [team.s1a, team.s1b] {
        for t in list(s1, json!({ "ready": true })).await["tasks"]
            .as_array()
            .unwrap()
        {
            app.ok(C::StartTask, s1, json!({ "task_id": t["task_id"] }))
                .await;
        }
    }
    // Everything assigned to each System1, a page of one at a time, in creation order,
    // whatever their statuses.
    let mut statuses = std::collections::BTreeSet::new();
    let mut all = 0;
    for s1 in [team.s1a, team.s1b] {
        let whole = list(s1, json!({})).await["tasks"]
            .as_array()
            .unwrap()
            .clone();
        let (mut seen, mut cursor) = (Vec::new(), Value::Null);
        loop {
            let page = list(s1, json!({ "limit": 1, "cursor": cursor })).await;
            seen.extend(page["tasks"].as_array().unwrap().iter().cloned());
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert_eq!(seen, whole, "the pages make the whole list");
        let ids: Vec<&str> = seen
            .iter()
            .map(|t| t["task_id"].as_str().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "creation order");
        statuses.extend(
            seen.iter()
                .map(|t| t["status"].as_str().unwrap().to_owned()),
        );
        if s1 == team.s1a {
            all = seen.len();
        }
    }
    assert!(all >= 2, "{all}");
    assert_eq!(
        statuses,
        ["in_progress", "pending"].map(String::from).into(),
        "in one order across statuses"
    );
    // System3 may look at a System1's list; its own is empty.
    let theirs = list(team.s3, json!({ "assignee_system_id": team.s1a })).await;
    assert_eq!(theirs["tasks"].as_array().unwrap().len(), all);
    let pending = list(team.s1a, json!({ "status": "pending", "ready": false })).await;
    assert!(
        pending["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["ready"] == json!(false))
    );

    let request = |extra: Value| {
        let mut r = json!({ "actor": team.s1a });
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        r
    };
    assert_eq!(
        refused(
            &app,
            Q::ListTasks,
            request(json!({ "assignee_system_id": other.s1a }))
        )
        .await,
        "not_found",
        "another team's system is not to be found"
    );
    assert_eq!(
        refused(&app, Q::ListTasks, request(json!({ "status": "done" }))).await,
        "validation_failed"
    );
    let (code, out, err) = app
        .sop(&["task", "list", "--ready", "--actor", &team.s1a.to_string()])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending") || out.contains("no tasks"), "{out}");
    app.stop().await;
}

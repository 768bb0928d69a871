//! List queries answer in pages that fit the server's `max_payload`, each item exactly once in
//! a stable order; the client and the CLI follow the pages; what cannot fit is refused.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::bus::client::ClientError;
use vsm_sop::wire::answer::{History, RunDetail};
use vsm_sop::wire::command::CommandName as C;
use vsm_sop::wire::query::{QueryName as Q, SERVICE_ERROR_HEADER};

on_both_databases!(
    a_run_with_large_task_results_answers_in_pages,
    thirty_large_versions_list_and_history_in_pages,
    the_audit_trail_pages_in_seq_order,
    a_cursor_that_is_not_one_is_refused,
    an_answer_that_cannot_fit_is_refused_as_too_large,
);

/// The documented maximum of free text.
const LONG: usize = 20_000;

fn long_text(tag: &str) -> String {
    let mut text = format!("{tag} ");
    text.extend(std::iter::repeat_n('x', LONG - text.len()));
    text
}

/// Every page of a list query, asked directly on the bus: each page's raw bytes must fit the
/// server's max_payload, and a refusal fails the test.
async fn every_page(app: &TestApp, name: Q, mut request: Value) -> Vec<Value> {
    let nats = &app.running.nats;
    let mut pages = Vec::new();
    loop {
        let reply = tokio::time::timeout(
            WAIT,
            nats.request(
                app.client.subjects().query(name.as_str()),
                serde_json::to_vec(&request).unwrap().into(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer"))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let refused = reply
            .headers
            .as_ref()
            .is_some_and(|h| h.get(SERVICE_ERROR_HEADER).is_some());
        assert!(
            !refused,
            "{name} refused: {}",
            String::from_utf8_lossy(&reply.payload)
        );
        assert!(
            reply.payload.len() <= nats.max_payload(),
            "{name}: a page of {} bytes",
            reply.payload.len()
        );
        let page: Value = serde_json::from_slice(&reply.payload).unwrap();
        let next = page.get("next_cursor").cloned();
        pages.push(page);
        match next {
            Some(cursor) => request["cursor"] = cursor,
            None => return pages,
        }
        assert!(pages.len() <= 1_000, "{name}: paging does not end");
    }
}

/// The ids under `field` of the `items` of every page, in order.
fn ids(pages: &[Value], items: &str, field: &str) -> Vec<Uuid> {
    pages
        .iter()
        .flat_map(|p| p[items].as_array().unwrap().iter())
        .map(|i| serde_json::from_value(i[field].clone()).unwrap())
        .collect()
}

async fn refused(app: &TestApp, name: Q, request: Value) -> (String, Option<String>) {
    match app.client.query::<_, Value>(name, &request).await {
        Err(ClientError::Refused(e)) => (e.code, e.field),
        other => panic!("{name}: expected a refusal, got {other:?}"),
    }
}

/// A run of 60 independent tasks, each completed with a 20,000-character result: its id and
/// its task ids in creation order.
async fn large_run(app: &TestApp, team: &Team) -> (Uuid, Vec<Uuid>) {
    let tasks: Vec<Value> = (1..=60)
        .map(|i| json!({ "position": i, "name": format!("Step {i}"), "default_assignee_type": "system1" }))
        .collect();
    let drafted = app
        .ok(
            C::DraftProcedure,
            team.s4,
            json!({ "name": "Sixty steps", "risk_level": "low", "impact": "low",
                    "rollback_plan": "None needed.", "tasks": tasks }),
        )
        .await;
    let procedure = drafted.procedure_id.unwrap();
    app.ok(C::ApproveProcedure, team.s5, app.approval(procedure).await)
        .await;
    let executed = app
        .ok(
            C::ExecuteProcedure,
            team.s3,
            json!({ "series_id": procedure }),
        )
        .await;
    let run_id = executed.run_id.unwrap();
    let run: RunDetail = app
        .client
        .query_pages(
            Q::GetRun,
            &json!({ "actor": team.s3, "run_id": run_id }),
            None,
        )
        .await
        .unwrap();
    let work = run.tasks.iter().map(|t| {
        let task = t.task_id;
        let assignee = t.assignee_system_id.0;
        async move {
            app.ok(C::StartTask, assignee, json!({ "task_id": task }))
                .await;
            app.ok(
                C::CompleteTask,
                assignee,
                json!({ "task_id": task, "result": long_text(&task.to_string()) }),
            )
            .await;
        }
    });
    futures::future::join_all(work).await;
    (run_id, executed.task_ids)
}

async fn a_run_with_large_task_results_answers_in_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("paging-run").await;
    let (run_id, task_ids) = large_run(&app, &team).await;
    assert_eq!(task_ids.len(), 60);

    let pages = every_page(
        &app,
        Q::GetRun,
        json!({ "actor": team.s3, "run_id": run_id }),
    )
    .await;
    assert_eq!(ids(&pages, "tasks", "task_id"), task_ids);
    assert!(
        pages.len() >= 2 || 60 * LONG < app.running.nats.max_payload(),
        "60 × 20,000 characters in one answer"
    );
    for page in &pages {
        assert_eq!(page["run"]["run_id"], json!(run_id));
        assert_eq!(page["run"]["task_counts"]["completed"], 60);
        assert_eq!(page["initiative"]["task_ids"].as_array().unwrap().len(), 60);
    }
    let completed = pages
        .iter()
        .flat_map(|p| p["tasks"].as_array().unwrap().iter())
        .all(|t| t["status"] == "completed" && t["result"].as_str().unwrap().len() == LONG);
    assert!(completed);
    // A smaller limit pages by count; the pages join into the same list.
    let by_seven = every_page(
        &app,
        Q::GetRun,
        json!({ "actor": team.s3, "run_id": run_id, "limit": 7 }),
    )
    .await;
    assert_eq!(by_seven.len(), 9);
    assert_eq!(ids(&by_seven, "tasks", "task_id"), task_ids);

    // The CLI shows the whole run, as a table and as JSON.
    let shown = sop(
        &app,
        &[
            "run",
            "show",
            &run_id.to_string(),
            "--actor",
            &team.s3.to_string(),
        ],
    )
    .await;
    for id in &task_ids {
        assert!(
            shown.contains(&id.to_string()),
            "{id} missing from the table"
        );
    }
    let json: Value = serde_json::from_str(
        &sop(
            &app,
            &[
                "run",
                "show",
                &run_id.to_string(),
                "--actor",
                &team.s3.to_string(),
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    let listed: Vec<Uuid> = ids(std::slice::from_ref(&json), "tasks", "task_id");
    assert_eq!(listed, task_ids);
    assert!(json.get("next_cursor").is_none());
    app.stop().await;
}

/// Runs the `sop` binary against the test's worker and expects exit code 0.
async fn sop(app: &TestApp, args: &[&str]) -> String {
    let (code, stdout, stderr) = app.sop(args).await;
    assert_eq!(code, 0, "sop {args:?}: {stdout}{stderr}");
    stdout
}

/// One series of 30 versions (drafted, then revised 29 times), each with a 20,000-character
/// description and rollback plan: the version ids, oldest first.
async fn thirty_large_versions(app: &TestApp, team: &Team) -> (Uuid, Vec<Uuid>) {
    let mut draft = first_run_discovery();
    draft["description"] = json!(long_text("description"));
    draft["rollback_plan"] = json!(long_text("rollback"));
    let series = app
        .ok(C::DraftProcedure, team.s4, draft)
        .await
        .procedure_id
        .unwrap();
    let mut versions = vec![series];
    loop {
        let latest = *versions.last().unwrap();
        app.ok(C::ApproveProcedure, team.s5, app.approval(latest).await)
            .await;
        if versions.len() == 30 {
            return (series, versions);
        }
        let revised = app
            .ok(
                C::ReviseProcedure,
                team.s4,
                json!({ "procedure_id": latest }),
            )
            .await;
        versions.push(revised.procedure_id.unwrap());
    }
}

async fn thirty_large_versions_list_and_history_in_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("paging-versions").await;
    let (series, versions) = thirty_large_versions(&app, &team).await;

    let history = every_page(
        &app,
        Q::History,
        json!({ "actor": team.s3, "series_id": series }),
    )
    .await;
    assert_eq!(ids(&history, "versions", "procedure_id"), versions);
    let numbers: Vec<u64> = history
        .iter()
        .flat_map(|p| p["versions"].as_array().unwrap().iter())
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=30).collect::<Vec<u64>>());
    assert!(
        history.len() >= 2 || 30 * 2 * LONG < app.running.nats.max_payload(),
        "30 × 40,000 characters in one answer"
    );
    let by_four = every_page(
        &app,
        Q::History,
        json!({ "actor": team.s3, "series_id": series, "limit": 4 }),
    )
    .await;
    assert_eq!(by_four.len(), 8);
    assert_eq!(ids(&by_four, "versions", "procedure_id"), versions);

    let listed = every_page(&app, Q::ListProcedures, json!({ "actor": team.s3 })).await;
    assert_eq!(ids(&listed, "procedures", "procedure_id"), versions);
    let retired = every_page(
        &app,
        Q::ListProcedures,
        json!({ "actor": team.s3, "status": "retired", "name": "FIRST RUN", "limit": 10 }),
    )
    .await;
    assert_eq!(ids(&retired, "procedures", "procedure_id"), versions[..29]);

    // Versions drafted between two pages neither repeat nor hide the ones listed.
    let request = json!({ "actor": team.s3, "limit": 5 });
    let first: Value = app.client.query(Q::ListProcedures, &request).await.unwrap();
    app.ok(C::DraftProcedure, team.s4, first_run_discovery())
        .await;
    let mut rest_request = request.clone();
    rest_request["cursor"] = first["next_cursor"].clone();
    let rest = every_page(&app, Q::ListProcedures, rest_request).await;
    let all: Vec<Uuid> = ids(std::slice::from_ref(&first), "procedures", "procedure_id")
        .into_iter()
        .chain(ids(&rest, "procedures", "procedure_id"))
        .collect();
    assert_eq!(all.len(), all.iter().collect::<HashSet<_>>().len());
    assert_eq!(all[..30], versions);
    assert_eq!(all.len(), 31);

    // The typed client and the CLI join the pages.
    let whole: History = app
        .client
        .query_pages(
            Q::History,
            &json!({ "actor": team.s3, "series_id": series }),
            None,
        )
        .await
        .unwrap();
    assert_eq!(whole.versions.len(), 30);
    let listed: Value = serde_json::from_str(
        &sop(
            &app,
            &[
                "procedure",
                "list",
                "--actor",
                &team.s3.to_string(),
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(listed["procedures"].as_array().unwrap().len(), 31);
    let history: Value = serde_json::from_str(
        &sop(
            &app,
            &[
                "procedure",
                "history",
                &series.to_string(),
                "--actor",
                &team.s3.to_string(),
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        ids(std::slice::from_ref(&history), "versions", "procedure_id"),
        versions
    );
    app.stop().await;
}

pub(crate) async fn the_audit_trail_pages_in_seq_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("paging-audit").await;
    let v1 = approved_sop(&app, &team).await;
    let v2 = revised_sop(&app, &team, v1).await.procedure_id.unwrap();
    app.ok(C::ApproveProcedure, team.s5, app.approval(v2).await)
        .await;
    app.ok(C::ExecuteProcedure, team.s3, json!({ "series_id": v1 }))
        .await;

    let whole: Value = app
        .client
        .query(Q::Audit, &json!({ "actor": team.s4, "series_id": v1 }))
        .await
        .unwrap();
    assert!(whole.get("next_cursor").is_none());
    let seqs = |pages: &[Value]| -> Vec<i64> {
        pages
            .iter()
            .flat_map(|p| p["entries"].as_array().unwrap().iter())
            .map(|e| e["seq"].as_i64().unwrap())
            .collect()
    };
    let all = seqs(std::slice::from_ref(&whole));
    assert!(all.len() > 10, "{} events", all.len());
    assert!(all.windows(2).all(|w| w[0] < w[1]), "seq order: {all:?}");
    let by_three = every_page(
        &app,
        Q::Audit,
        json!({ "actor": team.s4, "series_id": v1, "limit": 3 }),
    )
    .await;
    assert_eq!(seqs(&by_three), all);
    assert!(
        by_three
            .iter()
            .all(|p| p["entries"].as_array().unwrap().len() <= 3)
    );
    assert_eq!(by_three.len(), all.len().div_ceil(3));
    // The CLI's --limit bounds what it shows, whatever the pages.
    let shown: Value = serde_json::from_str(
        &sop(
            &app,
            &[
                "audit",
                "--series",
                &v1.to_string(),
                "--limit",
                "5",
                "--actor",
                &team.s4.to_string(),
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(seqs(std::slice::from_ref(&shown)), all[..5]);
    app.stop().await;
}

async fn a_cursor_that_is_not_one_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("paging-cursor").await;
    let v1 = approved_sop(&app, &team).await;
    revised_sop(&app, &team, v1).await;
    let executed = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": v1 }))
        .await;
    let run_id = executed.run_id.unwrap();
    let cursor = Some("cursor".to_owned());
    let validation = ("validation_failed".to_owned(), cursor.clone());

    for garbage in ["not a cursor", "AAAA", ""] {
        let requests = [
            (
                Q::ListProcedures,
                json!({ "actor": team.s3, "cursor": garbage }),
            ),
            (
                Q::History,
                json!({ "actor": team.s3, "series_id": v1, "cursor": garbage }),
            ),
            (
                Q::GetRun,
                json!({ "actor": team.s3, "run_id": run_id, "cursor": garbage }),
            ),
            (
                Q::Audit,
                json!({ "actor": team.s3, "run_id": run_id, "cursor": garbage }),
            ),
        ];
        for (name, request) in requests {
            assert_eq!(
                refused(&app, name, request).await,
                validation,
                "{name} {garbage:?}"
            );
        }
    }
    // A real cursor of another list, or of another series' audit, is refused the same way.
    let list: Value = app
        .client
        .query(Q::ListProcedures, &json!({ "actor": team.s3, "limit": 1 }))
        .await
        .unwrap();
    let foreign = list["next_cursor"].clone();
    assert!(foreign.is_string());
    assert_eq!(
        refused(
            &app,
            Q::History,
            json!({ "actor": team.s3, "series_id": v1, "cursor": foreign })
        )
        .await,
        validation
    );
    let audit: Value = app
        .client
        .query(
            Q::Audit,
            &json!({ "actor": team.s3, "series_id": v1, "limit": 1 }),
        )
        .await
        .unwrap();
    assert_eq!(
        refused(
            &app,
            Q::Audit,
            json!({ "actor": team.s3, "run_id": run_id, "cursor": audit["next_cursor"] })
        )
        .await,
        validation
    );
    app.stop().await;
}

async fn an_answer_that_cannot_fit_is_refused_as_too_large(backend: Backend) {
    let mut nats = PrivateNats::start();
    let app = TestApp::spawn_on(backend, Some(nats.url())).await;
    let team = app.register_team("paging-too-large").await;
    let mut draft = first_run_discovery();
    draft["description"] = json!(long_text("description"));
    let procedure = app
        .ok(C::DraftProcedure, team.s4, draft)
        .await
        .procedure_id
        .unwrap();

    // The same server, now accepting far less than one version takes.
    nats.restart_with_max_payload(8 * 1024).await;
    let asking = app.client.clone().with_timeout(Duration::from_secs(2));
    let request = json!({ "actor": team.s3, "procedure_id": procedure });
    let refusal = eventually("an answer after the restart", || async {
        match asking.query::<_, Value>(Q::GetProcedure, &request).await {
            Err(ClientError::Refused(e)) => Some(e),
            // Not reconnected yet.
            Err(ClientError::Nats(_)) => None,
            other => panic!("procedure.get: expected too_large, got {other:?}"),
        }
    })
    .await;
    assert_eq!(refusal.code, "too_large");
    assert_eq!(app.running.nats.max_payload(), 8 * 1024);
    // A list whose one item cannot fit is refused too, not answered with an empty page.
    match asking
        .query::<_, Value>(Q::ListProcedures, &json!({ "actor": team.s3 }))
        .await
    {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, "too_large"),
        other => panic!("procedure.list: expected too_large, got {other:?}"),
    }
    app.stop().await;
}

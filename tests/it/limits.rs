//! At the contract's limits, as the verbose, retrying agents that use it reach them: a long
//! run's review, a draft at the command size limit, a malformed copy of a command, a signature
//! moved to another command, a captured query replayed, another team's ids.

use std::collections::HashMap;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::bus::client::{ClientError, EventStart};
use vsm_sop::wire::command::{CommandName as C, MSG_ID_HEADER, REPLY_TO_HEADER};
use vsm_sop::wire::outcome::Outcome;
use vsm_sop::wire::query::QueryName as Q;
use vsm_sop::wire::signature::{self, SIGNATURE_HEADER, SIGNED_AT_HEADER};

on_both_databases!(
    a_malformed_copy_does_not_use_up_the_id_it_names,
    a_signature_is_bound_to_the_command_it_was_made_for,
    queries_of_a_system_with_a_key_are_signed_and_fresh,
    another_teams_ids_answer_as_ids_that_do_not_exist,
    text_is_measured_as_the_json_it_becomes,
    the_review_of_a_long_verbose_run_is_published_and_the_bus_flows_on,
);

/// Publishes `bytes` on a command subject with the given headers and awaits its outcome
/// through a reply inbox.
async fn publish(
    app: &TestApp,
    subject: &str,
    headers: &[(&str, &str)],
    bytes: Vec<u8>,
) -> Outcome {
    let inbox = app.running.nats.new_inbox();
    let mut replies = app.running.nats.subscribe(inbox.clone()).await.unwrap();
    let mut map = HeaderMap::new();
    map.insert(REPLY_TO_HEADER, inbox.as_str());
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    let js = async_nats::jetstream::new(app.running.nats.clone());
    js.send_publish(
        subject.to_owned(),
        PublishMessage::build().payload(bytes.into()).headers(map),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let reply = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("an outcome within the timeout")
        .expect("a reply");
    serde_json::from_slice(&reply.payload).unwrap()
}

fn envelope(id: Uuid, actor: Uuid, payload: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schema_version": 1, "command_id": id, "actor": actor, "payload": payload,
    }))
    .unwrap()
}

async fn a_malformed_copy_does_not_use_up_the_id_it_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("ids").await;
    let subject = app.client.subjects().command("procedure.draft");

    // The copy first: rejected under its own Nats-Msg-Id, the genuine command still runs.
    let (genuine, copy) = (Uuid::now_v7(), Uuid::now_v7());
    let bytes = envelope(genuine, team.s4, first_run_discovery());
    let refused = app.client.send_raw(&subject, copy, bytes).await.unwrap();
    assert_eq!(refused.command_id, copy);
    assert_eq!(refused.error_code(), Some("invalid_payload"));
    let ran = app
        .client
        .send_with_id(genuine, C::DraftProcedure, team.s4, first_run_discovery())
        .await
        .unwrap();
    assert!(ran.is_accepted(), "{ran:?}");

    // The genuine command first: the copy is refused, the first outcome stands.
    let (genuine, copy) = (Uuid::now_v7(), Uuid::now_v7());
    let ran = app
        .client
        .send_with_id(genuine, C::DraftProcedure, team.s4, first_run_discovery())
        .await
        .unwrap();
    assert!(ran.is_accepted(), "{ran:?}");
    let bytes = envelope(genuine, team.s4, first_run_discovery());
    let refused = app.client.send_raw(&subject, copy, bytes).await.unwrap();
    assert_eq!(refused.command_id, copy);
    assert_eq!(refused.error_code(), Some("invalid_payload"));
    let stored = app
        .client
        .query::<_, Outcome>(
            Q::Outcome,
            &json!({ "actor": team.s4, "command_id": genuine }),
        )
        .await
        .unwrap();
    assert_eq!(stored, ran);
    app.stop().await;
}

async fn a_signature_is_bound_to_the_command_it_was_made_for(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("bound").await;
    let sop = approved_sop(&app, &team).await;
    let pair = nkeys::KeyPair::new_user();
    app.register_key("bound", "System5/root", "system5", pair.public_key())
        .await;

    // A body signed for procedure.reject, the same shape as procedure.retire's.
    let payload = json!({ "procedure_id": sop, "reason": "superseded by practice" });
    let signed_for_reject = |sent_on: &'static str| {
        let (app, pair, payload) = (&app, &pair, payload.clone());
        async move {
            let id = Uuid::now_v7();
            let body = envelope(id, team.s5, payload);
            let message = signature::command_message("procedure.reject", &body);
            let signed = signature::sign(pair, &message);
            let id_text = id.to_string();
            let headers = [
                (MSG_ID_HEADER, id_text.as_str()),
                (SIGNATURE_HEADER, signed.as_str()),
            ];
            let subject = app.client.subjects().command(sent_on);
            publish(app, &subject, &headers, body).await
        }
    };
    let moved = signed_for_reject("procedure.retire").await;
    assert_eq!(moved.error_code(), Some("forbidden"), "{moved:?}");
    // On the subject it was made for, the signature holds (the draft is approved, so the
    // rejection is about state, not identity).
    let kept = signed_for_reject("procedure.reject").await;
    assert_eq!(kept.error_code(), Some("invalid_state"), "{kept:?}");
    // The typed client signs the command it sends.
    let signer = app
        .client
        .clone()
        .with_signing_seed(&pair.seed().unwrap())
        .unwrap();
    let retired = signer
        .send(C::RetireProcedure, team.s5, payload)
        .await
        .unwrap();
    assert!(retired.is_accepted(), "{retired:?}");
    app.stop().await;
}

/// Asks a query signed at `signed_at` with `pair`, as a client would.
async fn signed_query(
    app: &TestApp,
    pair: &nkeys::KeyPair,
    name: Q,
    signed_at: &str,
    request: &Value,
) -> Result<Value, String> {
    let body = serde_json::to_vec(request).unwrap();
    let message = signature::query_message(name.as_str(), signed_at, &body);
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, signature::sign(pair, &message).as_str());
    headers.insert(SIGNED_AT_HEADER, signed_at);
    let reply = app
        .running
        .nats
        .request_with_headers(
            app.client.subjects().query(name.as_str()),
            headers,
            body.into(),
        )
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    match answer.get("error") {
        Some(error) => Err(error["code"].as_str().unwrap().to_owned()),
        None => Ok(answer),
    }
}

async fn queries_of_a_system_with_a_key_are_signed_and_fresh(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("readers").await;
    let sop = approved_sop(&app, &team).await;
    let pair = nkeys::KeyPair::new_user();
    app.register_key("readers", "System3/root", "system3", pair.public_key())
        .await;
    let request = json!({ "actor": team.s3, "procedure_id": sop });

    let unsigned = app
        .client
        .query::<_, Value>(Q::GetProcedure, &request)
        .await;
    assert!(
        matches!(&unsigned, Err(ClientError::Refused(e)) if e.code == "forbidden"),
        "{unsigned:?}"
    );
    let signer = app
        .client
        .clone()
        .with_signing_seed(&pair.seed().unwrap())
        .unwrap();
    let answer: Value = signer.query(Q::GetProcedure, &request).await.unwrap();
    assert_eq!(answer["procedure"]["procedure_id"], json!(sop));

    let now = chrono::Utc::now();
    let fresh = now.to_rfc3339();
    assert!(
        signed_query(&app, &pair, Q::GetProcedure, &fresh, &request)
            .await
            .is_ok()
    );
    // A captured query replayed later, or one dated ahead, is refused.
    let old = (now - chrono::Duration::minutes(5)).to_rfc3339();
    let ahead = (now + chrono::Duration::minutes(5)).to_rfc3339();
    for at in [old, ahead, "yesterday".to_owned()] {
        let replayed = signed_query(&app, &pair, Q::GetProcedure, &at, &request).await;
        assert_eq!(replayed, Err("forbidden".to_owned()), "signed at {at}");
    }
    // A signature made for one query does not answer another.
    let history = json!({ "actor": team.s3, "series_id": sop });
    let body = serde_json::to_vec(&history).unwrap();
    let message = signature::query_message("procedure.get", &fresh, &body);
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, signature::sign(&pair, &message).as_str());
    headers.insert(SIGNED_AT_HEADER, fresh.as_str());
    let reply = app
        .running
        .nats
        .request_with_headers(
            app.client.subjects().query("procedure.history"),
            headers,
            body.into(),
        )
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    // Systems without a key still ask unsigned.
    let other: Value = app
        .client
        .query(
            Q::GetProcedure,
            &json!({ "actor": team.s4, "procedure_id": sop }),
        )
        .await
        .unwrap();
    assert_eq!(other["procedure"]["procedure_id"], json!(sop));
    app.stop().await;
}

async fn another_teams_ids_answer_as_ids_that_do_not_exist(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ours = app.register_team("ours").await;
    let theirs = app.register_team("theirs").await;
    let sop = approved_sop(&app, &ours).await;
    let run = app
        .ok(C::ExecuteProcedure, ours.s3, json!({ "series_id": sop }))
        .await;
    let (run_id, task) = (run.run_id.unwrap(), run.task_ids[0]);
    let missing = Uuid::now_v7();

    // Commands: the same code and the same words as for an id that was never used.
    for (name, actor, id, what, payload) in [
        (
            C::RetireProcedure,
            theirs.s5,
            sop,
            "procedure",
            json!({ "procedure_id": sop, "reason": "x" }),
        ),
        (
            C::ExecuteProcedure,
            theirs.s3,
            sop,
            "procedure series",
            json!({ "series_id": sop }),
        ),
        (
            C::StartTask,
            theirs.s1a,
            task,
            "task",
            json!({ "task_id": task }),
        ),
        (
            C::CancelRun,
            theirs.s3,
            run_id,
            "run",
            json!({ "run_id": run_id, "reason": "x" }),
        ),
    ] {
        let theirs = app.refused(name, actor, payload.clone()).await;
        let text = serde_json::to_string(&payload)
            .unwrap()
            .replace(&id.to_string(), &missing.to_string());
        let never = app
            .refused(name, actor, serde_json::from_str(&text).unwrap())
            .await;
        assert_eq!(theirs.code, "not_found", "{name}");
        assert_eq!(theirs.message, format!("no {what} {id}"), "{name}");
        assert_eq!(never.message, format!("no {what} {missing}"), "{name}");
    }
    // Queries alike.
    for (name, what, request) in [
        (
            Q::GetProcedure,
            "procedure",
            json!({ "actor": theirs.s3, "procedure_id": sop }),
        ),
        (
            Q::History,
            "procedure series",
            json!({ "actor": theirs.s3, "series_id": sop }),
        ),
        (
            Q::GetRun,
            "run",
            json!({ "actor": theirs.s3, "run_id": run_id }),
        ),
    ] {
        match app.client.query::<_, Value>(name, &request).await {
            Err(ClientError::Refused(e)) => {
                assert_eq!(e.code, "not_found", "{name}");
                assert!(
                    e.message.starts_with(&format!("no {what} ")),
                    "{name}: {}",
                    e.message
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    app.stop().await;
}

async fn text_is_measured_as_the_json_it_becomes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("escapes").await;
    // 1,000 tasks of 163 control characters each: a command under the 1 MiB limit whose
    // `procedure.drafted` event would be larger than that, once each character is escaped.
    let tasks: Vec<Value> = (1..=1_000)
        .map(|p| json!({ "position": p, "name": format!("t{p}"), "description": "\u{1}".repeat(163) }))
        .collect();
    let mut draft = first_run_discovery();
    draft["tasks"] = json!(tasks);
    let e = app.refused(C::DraftProcedure, team.s4, draft).await;
    assert_eq!(e.code, "validation_failed");
    assert_eq!(e.field.as_deref(), Some("tasks"));
    // Over the command limit: the client says so, with the figures, before sending.
    let mut draft = first_run_discovery();
    draft["description"] = json!("x".repeat(2 << 20));
    let sent = app.client.send(C::DraftProcedure, team.s4, draft).await;
    assert!(
        matches!(sent, Err(ClientError::TooLarge { limit, .. }) if limit == 1 << 20),
        "{sent:?}"
    );
    // PostgreSQL cannot store a NUL character: refused on both databases alike.
    let mut draft = first_run_discovery();
    draft["description"] = json!("before\u{0}after");
    let e = app.refused(C::DraftProcedure, team.s4, draft).await;
    assert_eq!(e.code, "validation_failed");
    assert_eq!(e.field.as_deref(), Some("description"));
    app.stop().await;
}

/// Each task's assignee, from the `task.created` events.
async fn assignees(app: &TestApp) -> HashMap<Uuid, Uuid> {
    app.events()
        .await
        .into_iter()
        .filter(|e| e.kind == "task.created")
        .map(|e| {
            let id = |k: &str| e.data[k].as_str().unwrap().parse::<Uuid>().unwrap();
            (id("task_id"), id("assignee_system_id"))
        })
        .collect()
}

/// How many commands are in flight at once when a test works many tasks.
const IN_FLIGHT: usize = 64;

async fn all_accepted(app: &TestApp, commands: Vec<(C, Uuid, Value)>) {
    // Patient: a thousand commands queue behind each other on a busy machine, and this test
    // is about what they produce, not how fast.
    let client = app.client.clone().with_timeout(WAIT * 3);
    let outcomes: Vec<Outcome> = futures::stream::iter(commands)
        .map(|(name, actor, payload)| {
            let client = &client;
            async move { client.send(name, actor, payload).await.unwrap() }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for o in outcomes {
        assert!(o.is_accepted(), "{o:?}");
    }
}

async fn the_review_of_a_long_verbose_run_is_published_and_the_bus_flows_on(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("verbose").await;
    // 1,000 tasks with names of 190 characters, each completed with 780 characters of
    // ordinary text full of quotes: the review's context once made a 1.1 MB event.
    let tasks: Vec<Value> = (1..=1_000)
        .map(|p| json!({ "position": p, "name": format!("{p:04} {}", "n".repeat(185)) }))
        .collect();
    let mut draft = first_run_discovery();
    draft["tasks"] = json!(tasks);
    let sop = approved(&app, &team, draft).await;
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    let assignees = assignees(&app).await;
    assert_eq!(assignees.len(), 1_000);
    let result = "\"a\",\"b\",\"c\",".repeat(60);
    let each = |f: &dyn Fn(Uuid) -> (C, Uuid, Value)| run.task_ids.iter().map(|&t| f(t)).collect();
    all_accepted(
        &app,
        each(&|t| (C::StartTask, assignees[&t], json!({ "task_id": t }))),
    )
    .await;
    all_accepted(
        &app,
        each(&|t| {
            (
                C::CompleteTask,
                assignees[&t],
                json!({ "task_id": t, "result": result }),
            )
        }),
    )
    .await;
    all_accepted(
        &app,
        each(&|t| {
            (
                C::ReviewTask,
                team.s3,
                json!({ "task_id": t, "verdict": "approve" }),
            )
        }),
    )
    .await;
    let review = app
        .ok(
            C::ReviewInitiative,
            team.s3,
            json!({ "initiative_id": run.initiative_id, "outcome": "succeeded",
                    "summary": "Every task done; the results are in the tasks." }),
        )
        .await;
    assert!(review.review_id.is_some());

    // The review's event reached the stream, within the server's limit.
    let subject = app
        .client
        .subjects()
        .event_filter(Some("initiative.reviewed"), Some("verbose"));
    let events = app
        .client
        .events(&subject, EventStart::First)
        .await
        .unwrap();
    let mut events = std::pin::pin!(events);
    let reviewed = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("the review's event within the timeout")
        .unwrap()
        .unwrap();
    let size = serde_json::to_vec(&reviewed).unwrap().len();
    assert!(size < app.running.nats.max_payload(), "{size} bytes");
    let context = reviewed.data["context"]["tasks"].as_array().unwrap();
    assert_eq!(context.len(), 1_000);
    assert!(context.iter().all(|t| t["status"] == "approved"));
    // And every team's work flows on behind it.
    let later = app
        .ok(C::DraftProcedure, team.s4, first_run_discovery())
        .await;
    assert!(later.procedure_id.is_some());
    app.drained().await;
    app.stop().await;
}

on_both_databases!(a_command_whose_event_would_not_fit_is_refused_whole);

async fn a_command_whose_event_would_not_fit_is_refused_whole(backend: Backend) {
    // A server that takes 64 KiB: a review whose summary and frozen rollback plan are each
    // 32 KB of JSON fits no message, though the command carrying it does.
    let nats = PrivateNats::with_max_payload(64 * 1024);
    let app = TestApp::spawn_on(backend, Some(nats.url())).await;
    let team = app.register_team("tight").await;
    let mut draft = first_run_discovery();
    draft["rollback_plan"] = json!("\"".repeat(16_000));
    let sop = approved(&app, &team, draft).await;
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    let assignees = assignees(&app).await;
    for &task in &run.task_ids {
        let worker = assignees[&task];
        app.ok(C::StartTask, worker, json!({ "task_id": task }))
            .await;
        app.ok(
            C::CompleteTask,
            worker,
            json!({ "task_id": task, "result": "done" }),
        )
        .await;
        app.ok(
            C::ReviewTask,
            team.s3,
            json!({ "task_id": task, "verdict": "approve" }),
        )
        .await;
    }
    let review = |summary: String| json!({ "initiative_id": run.initiative_id, "outcome": "succeeded", "summary": summary });
    let e = app
        .refused(C::ReviewInitiative, team.s3, review("\"".repeat(16_500)))
        .await;
    assert_eq!(e.code, "too_large", "{e:?}");
    assert_eq!(e.field.as_deref(), Some("initiative.reviewed"));
    // Nothing of it was written: the run has no review, and a shorter one is recorded.
    let detail: Value = app
        .client
        .query(
            Q::GetRun,
            &json!({ "actor": team.s3, "run_id": run.run_id }),
        )
        .await
        .unwrap();
    assert_eq!(detail["review"], Value::Null);
    let recorded = app
        .ok(
            C::ReviewInitiative,
            team.s3,
            review("Done, as planned.".into()),
        )
        .await;
    assert!(recorded.review_id.is_some());
    app.drained().await;
    app.stop().await;
}

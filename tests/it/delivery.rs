//! Delivery guarantees: one outcome per command id, no second effect for a duplicate, a
//! rejection outcome for every malformed message, and replayable events.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use entity::{command_inbox, procedure};
use futures::StreamExt;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::bus::client::EventStart;
use vsm_sop::store;
use vsm_sop::wire::command::{CommandName as C, REPLY_TO_HEADER};
use vsm_sop::wire::outcome::Outcome;

on_both_databases!(
    a_resent_command_id_has_one_effect_and_the_same_outcome,
    every_malformed_message_gets_one_rejection_outcome,
    a_listener_replays_every_event_from_the_start,
    the_sender_hears_its_outcome_before_the_events_it_caused
);

async fn procedures(app: &TestApp) -> u64 {
    procedure::Entity::find().count(app.db()).await.unwrap()
}

async fn a_resent_command_id_has_one_effect_and_the_same_outcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("dups").await;
    let id = Uuid::now_v7();
    let first = app
        .client
        .send_with_id(id, C::DraftProcedure, team.s4, first_run_discovery())
        .await
        .unwrap();
    assert!(first.is_accepted());
    // Inside JetStream's duplicate window: the stream drops the copy, the client reads the
    // first outcome.
    let second = app
        .client
        .send_with_id(id, C::DraftProcedure, team.s4, first_run_discovery())
        .await
        .unwrap();
    assert_eq!(first, second);

    // Past the window (simulated: no Nats-Msg-Id, so JetStream stores the copy), the worker's
    // inbox recognises the id and answers with the stored outcome, applying nothing.
    let envelope = json!({ "schema_version": 1, "command_id": id, "actor": team.s4, "payload": first_run_discovery() });
    let inbox = app.running.nats.new_inbox();
    let mut replies = app.running.nats.subscribe(inbox.clone()).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(REPLY_TO_HEADER, inbox.as_str());
    let js = async_nats::jetstream::new(app.running.nats.clone());
    js.send_publish(
        app.client.subjects().command("procedure.draft"),
        PublishMessage::build()
            .payload(serde_json::to_vec(&envelope).unwrap().into())
            .headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let reply = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("reply")
        .expect("message");
    let third: Outcome = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(first, third);

    assert_eq!(procedures(&app).await, 1);
    // The client read the first outcome from the worker; the stream has it once published.
    app.drained().await;
    assert_eq!(app.client.outcome(id).await.unwrap(), Some(first));
    app.stop().await;
}

async fn every_malformed_message_gets_one_rejection_outcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("poison").await;
    let s = app.client.subjects().clone();
    let envelope = |schema: u32, payload: serde_json::Value| {
        serde_json::to_vec(&json!({ "schema_version": schema, "command_id": Uuid::nil(), "actor": team.s4, "payload": payload })).unwrap()
    };
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "invalid_payload",
            s.command("procedure.draft"),
            b"{not json".to_vec(),
        ),
        (
            "invalid_payload",
            s.command("procedure.draft"),
            vec![0xff, 0xfe, 0x00, 0x80],
        ),
        (
            "invalid_payload",
            s.command("procedure.draft"),
            b"[1,2,3]".to_vec(),
        ),
        (
            "unknown_command",
            s.command("procedure.fly"),
            envelope(1, json!({})),
        ),
        (
            "unsupported_schema",
            s.command("procedure.draft"),
            envelope(99, first_run_discovery()),
        ),
        (
            "invalid_payload",
            s.command("procedure.approve"),
            envelope(1, json!({ "procedure_id": "not-a-uuid" })),
        ),
        (
            "invalid_payload",
            s.command("procedure.draft"),
            envelope(1, json!({ "name": "missing the rest" })),
        ),
    ];
    for (code, subject, bytes) in cases {
        let id = Uuid::now_v7();
        // The body's command id is nil; give the real one through Nats-Msg-Id only where the
        // body has none of its own.
        let bytes = String::from_utf8(bytes.clone())
            .map(|t| {
                t.replace(&Uuid::nil().to_string(), &id.to_string())
                    .into_bytes()
            })
            .unwrap_or(bytes);
        let outcome = app.client.send_raw(&subject, id, bytes).await.unwrap();
        assert_eq!(outcome.command_id, id);
        assert_eq!(outcome.error_code(), Some(code), "{subject}: {outcome:?}");
    }
    // A message with no id anywhere is still answered: keyed by its stream position.
    let before = command_inbox::Entity::find().count(app.db()).await.unwrap();
    app.running
        .nats
        .publish(s.command("task.start"), "garbage".into())
        .await
        .unwrap();
    eventually("an outcome for an id-less message", || async {
        (command_inbox::Entity::find().count(app.db()).await.unwrap() > before).then_some(())
    })
    .await;
    let rejected = command_inbox::Entity::find()
        .filter(command_inbox::Column::Command.eq("task.start"))
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    let (outcome, _) = store::inbox::find_with_actor(app.db(), rejected.command_id)
        .await
        .unwrap()
        .expect("its outcome");
    assert_eq!(
        serde_json::to_value(&outcome).unwrap()["error"]["code"],
        "invalid_payload"
    );
    // Each was kept as a dead letter, with its reason and its bytes.
    let letters = entity::dead_letter::Entity::find()
        .all(app.db())
        .await
        .unwrap();
    assert_eq!(letters.len(), 8, "seven cases and the id-less message");
    assert!(
        letters
            .iter()
            .any(|l| l.reason == "unknown_command" && l.subject.ends_with("procedure.fly"))
    );
    assert!(
        letters
            .iter()
            .any(|l| l.payload == "garbage" && l.reason == "invalid_payload")
    );
    // Oversized commands never enter the stream: the publisher is told at once.
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let js = async_nats::jetstream::new(app.running.nats.clone());
    let refused = match js.publish(s.command("procedure.draft"), huge.into()).await {
        Err(_) => true,
        Ok(ack) => ack.await.is_err(),
    };
    assert!(refused, "a 2 MiB command is refused at publish");
    // Other traffic flows.
    assert!(
        app.send(C::DraftProcedure, team.s4, first_run_discovery())
            .await
            .is_accepted()
    );
    assert_eq!(procedures(&app).await, 1);
    app.stop().await;
}

async fn a_listener_replays_every_event_from_the_start(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("replay").await;
    let sop = approved_sop(&app, &team).await;
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    let first = app.events().await;
    // Every committed event exactly once, in commit order per command.
    let ids: BTreeSet<Uuid> = first.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), first.len());
    let kinds: Vec<&str> = first.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        &kinds[..4],
        [
            "procedure.drafted",
            "procedure.approved",
            "run.started",
            "initiative.created"
        ]
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "task.created").count(),
        run.task_ids.len()
    );
    // A second listener, filtering by team, replays the same history.
    let again = app
        .client
        .events(
            &app.client.subjects().team_events("replay"),
            EventStart::First,
        )
        .await
        .unwrap();
    let again: Vec<_> = again
        .take(first.len())
        .map(|e| e.unwrap().event_id)
        .collect()
        .await;
    assert_eq!(again, first.iter().map(|e| e.event_id).collect::<Vec<_>>());
    // Replay from a time: only what happened since.
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.ok(
        C::CancelRun,
        team.s3,
        json!({ "run_id": run.run_id, "reason": "replay demo" }),
    )
    .await;
    app.drained().await;
    let later = app
        .client
        .events(">", EventStart::Time(since))
        .await
        .unwrap();
    let later: Vec<_> = later.take(1).map(|e| e.unwrap()).collect().await;
    assert!(
        later[0].occurred_at >= since && later[0].kind == "task.canceled",
        "{:?}",
        later[0].kind
    );
    // Replay from a sequence: the stream's n-th event onwards.
    let from_third = app
        .client
        .events(">", EventStart::Sequence(3))
        .await
        .unwrap();
    let third: Vec<_> = from_third
        .take(1)
        .map(|e| e.unwrap().event_id)
        .collect()
        .await;
    assert_eq!(third[0], first[2].event_id);
    // Events carry their cause.
    assert!(
        first
            .iter()
            .all(|e| e.causation_id != Uuid::nil() && e.actor != Uuid::nil())
    );
    app.stop().await;
}

/// The worker answers a sender as soon as the command commits, before its relay publishes
/// the command's events: one subscriber that takes both (a System3 that executes, then works
/// the tasks it learns of) always sees the ids it created before the events that mention them.
async fn the_sender_hears_its_outcome_before_the_events_it_caused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("order").await;
    let sop = approved_sop(&app, &team).await;
    let subjects = app.client.subjects().clone();
    // One subscription for everything under the app's prefix, the reply inbox included, so
    // arrival order is the server's delivery order on this connection.
    let listener = async_nats::connect(app.settings.connection.nats_url.as_str())
        .await
        .unwrap();
    let mut everything = listener
        .subscribe(format!("{}>", subjects.prefix()))
        .await
        .unwrap();
    listener.flush().await.unwrap();
    let js = async_nats::jetstream::new(app.running.nats.clone());
    for _ in 0..5 {
        let id = Uuid::now_v7();
        let inbox = format!("{}reply.{}", subjects.prefix(), Uuid::now_v7().simple());
        let envelope = json!({ "schema_version": 1, "command_id": id, "actor": team.s3, "payload": { "series_id": sop } });
        let mut headers = HeaderMap::new();
        headers.insert(REPLY_TO_HEADER, inbox.as_str());
        js.send_publish(
            subjects.command("procedure.execute"),
            PublishMessage::build()
                .payload(serde_json::to_vec(&envelope).unwrap().into())
                .message_id(id.to_string())
                .headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let (mut replied, mut events) = (false, 0);
        while events < 5 {
            let msg = tokio::time::timeout(WAIT, everything.next())
                .await
                .expect("a message")
                .expect("subscribed");
            if msg.subject.as_str() == inbox {
                let outcome: Outcome = serde_json::from_slice(&msg.payload).unwrap();
                assert_eq!(outcome.command_id, id);
                assert!(outcome.is_accepted());
                replied = true;
                continue;
            }
            let caused_by_this = serde_json::from_slice::<serde_json::Value>(&msg.payload)
                .is_ok_and(|e| e["causation_id"] == json!(id) && e.get("event_id").is_some());
            if caused_by_this {
                assert!(replied, "event {} before the outcome", msg.subject);
                events += 1;
            }
        }
    }
    app.stop().await;
}

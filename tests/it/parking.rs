//! A message the server will never accept is parked, and everything behind it keeps flowing:
//! events and outcomes of later commands arrive, the pending list drains, and an operator
//! republishes the parked message once the cause is fixed.

use std::collections::BTreeSet;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::bus::client::EventStart;
use vsm_sop::store::outbox::{self as store_outbox, Parked, Publication, Selection};
use vsm_sop::wire::command::CommandName as C;

on_both_databases!(
    an_event_above_the_servers_max_payload_is_parked_and_later_messages_flow,
    an_event_the_stream_refuses_is_parked_and_arrives_once_when_republished
);

/// A draft whose `procedure.drafted` event is about 40 KB: two texts at their limit.
fn large_draft() -> Value {
    let mut draft = first_run_discovery();
    draft["description"] = json!("d".repeat(19_000));
    draft["rollback_plan"] = json!("r".repeat(19_000));
    draft
}

async fn parked_messages(app: &TestApp) -> Vec<Parked> {
    store_outbox::parked(app.db()).await.unwrap()
}

/// The one `procedure.drafted` event of the large draft, from the outbox.
async fn large_event(app: &TestApp) -> Publication {
    app.stored()
        .await
        .into_iter()
        .filter(|m| m.kind == "event.procedure.drafted")
        .map(|m| m.publication)
        .max_by_key(|m| m.payload.len())
        .expect("a drafted event")
}

/// The event ids the teams' events streams hold, each as often as they hold it.
pub(crate) async fn stream_event_ids(app: &TestApp) -> Vec<Uuid> {
    let js = jetstream::new(app.running.nats.clone());
    let mut stored = 0;
    for name in vsm_sop::bus::streams::team_streams(&js, app.client.subjects())
        .await
        .unwrap()
    {
        let mut stream = js.get_stream(&name).await.unwrap();
        stored += stream.info().await.unwrap().state.messages as usize;
    }
    let events = app.client.events(">", EventStart::First).await.unwrap();
    let mut events = std::pin::pin!(events);
    let mut ids = Vec::with_capacity(stored);
    while ids.len() < stored {
        let next = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {stored} events replayed", ids.len()));
        ids.push(next.expect("stream ended").expect("event").event_id);
    }
    ids
}

/// The ids of the outbox's events, but for the parked ones.
async fn unparked_event_ids(app: &TestApp) -> BTreeSet<Uuid> {
    let parked: BTreeSet<i64> = parked_messages(app).await.iter().map(|p| p.seq).collect();
    app.stored()
        .await
        .into_iter()
        .filter(|m| m.kind.starts_with("event.") && !parked.contains(&m.publication.seq))
        .map(|m| m.publication.message_id)
        .collect()
}

/// A command sent after the parked message: accepted, its outcome in `SOP_OUTCOMES`.
async fn later_command_flows(app: &TestApp, team: &Team) {
    let id = Uuid::now_v7();
    let outcome = app
        .client
        .send_with_id(id, C::DraftProcedure, team.s4, first_run_discovery())
        .await
        .unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
    let stored = eventually("the outcome in its stream", || async {
        app.client.outcome(id).await.unwrap()
    })
    .await;
    assert_eq!(stored, outcome);
}

/// The issue's own case: a server restarted with a `max_payload` below an event still pending.
async fn an_event_above_the_servers_max_payload_is_parked_and_later_messages_flow(
    backend: Backend,
) {
    let mut nats = PrivateNats::start();
    let app = TestApp::spawn_on(backend, Some(nats.url())).await;
    let team = app.register_team("payload").await;
    let subjects = app.client.subjects().clone();
    let js = jetstream::new(app.running.nats.clone());
    // Without its stream the event cannot be published (no responders): it stays pending,
    // retried, while the outcome goes to the sender and to its own stream.
    js.delete_stream(subjects.team_events_stream("payload"))
        .await
        .unwrap();
    let drafted = app.send(C::DraftProcedure, team.s4, large_draft()).await;
    assert!(drafted.is_accepted(), "{drafted:?}");
    let event = large_event(&app).await;
    let max_payload = 32 * 1024;
    assert!(event.payload.len() > max_payload, "{}", event.payload.len());
    let pending = store_outbox::pending(app.db(), None, 100).await.unwrap();
    assert!(pending.contains(&event.seq), "the large event waits");
    // The command has left its work queue: nothing larger than the new limit is redelivered.
    eventually("the command acknowledged", || async {
        let mut commands = js.get_stream(subjects.commands_stream()).await.ok()?;
        (commands.info().await.ok()?.state.messages == 0).then_some(())
    })
    .await;

    nats.restart_with_max_payload(max_payload).await;
    eventually("the worker reconnected under the new limit", || async {
        let connected =
            app.running.nats.connection_state() == async_nats::connection::State::Connected;
        (connected && app.running.nats.server_info().max_payload == max_payload).then_some(())
    })
    .await;
    eventually("the events stream created again", || async {
        js.create_stream(vsm_sop::bus::streams::events_config(&subjects, "payload"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    let parked = eventually("the large event parked", || async {
        Some(parked_messages(&app).await).filter(|p| !p.is_empty())
    })
    .await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].seq, event.seq);
    assert_eq!(parked[0].kind, "event.procedure.drafted");
    assert_eq!(parked[0].bytes, event.payload.len());
    assert!(!parked[0].reason.is_empty());

    later_command_flows(&app, &team).await;
    app.drained().await;
    let expected = unparked_event_ids(&app).await;
    assert!(!expected.is_empty());
    let stored = stream_event_ids(&app).await;
    assert_eq!(stored.len(), expected.len(), "each event once");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), expected);
    app.stop().await;
}

/// A stream whose maximum message size is below an event: the server answers the publish with
/// a JetStream API error. Once the limit is raised, republishing delivers the event once.
async fn an_event_the_stream_refuses_is_parked_and_arrives_once_when_republished(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("limits").await;
    let js = jetstream::new(app.running.nats.clone());
    let events_stream = app.client.subjects().team_events_stream("limits");
    let mut config = js
        .get_stream(&events_stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    let limit = 16 * 1024;
    config.max_message_size = limit;
    js.update_stream(&config).await.unwrap();

    let drafted = app.send(C::DraftProcedure, team.s4, large_draft()).await;
    assert!(drafted.is_accepted(), "{drafted:?}");
    let event = large_event(&app).await;
    assert!(event.payload.len() > limit as usize);
    let parked = eventually("the large event parked", || async {
        Some(parked_messages(&app).await).filter(|p| !p.is_empty())
    })
    .await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].seq, event.seq);
    assert!(!parked[0].reason.is_empty());
    let listed = app.sop(&["outbox", "parked", "--json"]).await;
    assert_eq!(listed.0, 0, "{listed:?}");
    let listed: Value = serde_json::from_str(&listed.1).unwrap();
    assert_eq!(listed[0]["seq"], json!(event.seq));
    assert_eq!(listed[0]["subject"], json!(event.subject));

    later_command_flows(&app, &team).await;
    app.drained().await;
    let before = stream_event_ids(&app).await;
    assert!(!before.contains(&event.message_id));
    assert_eq!(
        before.iter().copied().collect::<BTreeSet<_>>(),
        unparked_event_ids(&app).await
    );

    config.max_message_size = -1;
    js.update_stream(&config).await.unwrap();
    let moved = store_outbox::republish(app.db(), Selection::Seqs(&[event.seq]))
        .await
        .unwrap();
    assert_eq!(moved.iter().map(|p| p.seq).collect::<Vec<_>>(), [event.seq]);
    assert!(parked_messages(&app).await.is_empty());
    app.drained().await;
    let after = stream_event_ids(&app).await;
    assert_eq!(
        after.iter().filter(|id| **id == event.message_id).count(),
        1,
        "the republished event, once"
    );
    assert_eq!(after.len(), before.len() + 1, "and nothing else again");
    // Not parked any more: the operator is told, with the exit code for "not found".
    let again = app
        .sop(&["outbox", "republish", &event.seq.to_string()])
        .await;
    assert_eq!(again.0, 4, "{again:?}");
    app.stop().await;
}

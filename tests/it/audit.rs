//! Each team's events form a hash chain, held by the database and by the team's stream:
//! `sop audit verify` finds an edited event row, a message deleted from the stream and two
//! reordered there, each at its place, and a long clean history intact.

use std::time::Instant;

use async_nats::jetstream;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::{Value, json};

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::bus::audit::{self, Verification};
use vsm_sop::store;
use vsm_sop::wire::chain::Break;
use vsm_sop::wire::command::CommandName as C;

on_both_databases!(
    an_edited_row_a_deleted_message_and_two_reordered_are_found_at_their_place,
    a_history_of_ten_thousand_events_verifies,
    a_history_rewritten_whole_is_caught_by_the_signed_checkpoints
);

/// Runs `executes` executes of the team's approved procedure.
async fn history(app: &TestApp, team: &Team, executes: usize) {
    let series = approved_sop(app, team).await;
    for _ in 0..executes {
        app.ok(C::ExecuteProcedure, team.s3, json!({ "series_id": series }))
            .await;
    }
    app.drained().await;
}

async fn verified(app: &TestApp, team: &str) -> Verification {
    let js = jetstream::new(app.running.nats.clone());
    audit::verify(app.db(), &js, app.client.subjects(), team, Vec::new())
        .await
        .unwrap()
}

async fn an_edited_row_a_deleted_message_and_two_reordered_are_found_at_their_place(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let names = ["edited", "deleted", "reordered"];
    let mut teams = Vec::new();
    for name in names {
        let team = app.register_team(name).await;
        history(&app, &team, 3).await;
        let clean = verified(&app, name).await;
        assert!(clean.intact(), "{clean:?}");
        assert_eq!(clean.database.first, Some(1));
        assert_eq!(clean.stream.last, Some(clean.recorded_length));
        assert!(clean.recorded_length > 20, "{}", clean.recorded_length);
        teams.push(team);
    }
    let js = jetstream::new(app.running.nats.clone());

    // One event row edited in the database: the 5th event's record, its payload changed.
    let events = store::outbox::team_events(app.db(), teams[0].id)
        .await
        .unwrap();
    let fifth = &events[4].publication;
    let (seq, index) = entity::outbox::record_of(fifth.seq);
    let record = entity::outbox::Entity::find_by_id(seq)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    let mut messages = entity::outbox::decode(&record.body).unwrap();
    let mut payload: Value = serde_json::from_str(messages[index].payload.get()).unwrap();
    payload["data"]["tampered"] = json!(true);
    messages[index].payload = serde_json::value::to_raw_value(&payload).unwrap();
    let mut edited: entity::outbox::ActiveModel = record.into();
    edited.body = Set(entity::outbox::encode(&messages).unwrap());
    edited.update(app.db()).await.unwrap();
    let found = verified(&app, "edited").await;
    // The database links a run of a command's events at a time: by itself it sees the change
    // where the run ends; held against the stream, the event itself.
    assert!(
        matches!(
            found.database.first_break,
            Some(Break::Changed { index, .. }) if index >= 5
        ),
        "{found:?}"
    );
    assert_eq!(found.stream.first_break, None, "the stream's copy stands");
    assert_eq!(found.disagree_at, Some(5));

    // One message deleted from the stream: the 7th event.
    let stream = js
        .get_stream(app.client.subjects().team_events_stream("deleted"))
        .await
        .unwrap();
    assert!(stream.delete_message(7).await.unwrap());
    let found = verified(&app, "deleted").await;
    assert!(
        matches!(
            found.stream.first_break,
            Some(Break::Missing { index: 7, .. })
        ),
        "{found:?}"
    );
    assert_eq!(found.database.first_break, None);

    // Two reordered in the stream: the 9th and 10th taken out and put back, 10th first.
    let stream = js
        .get_stream(app.client.subjects().team_events_stream("reordered"))
        .await
        .unwrap();
    let ninth = stream.get_raw_message(9).await.unwrap();
    let tenth = stream.get_raw_message(10).await.unwrap();
    for seq in [9, 10] {
        assert!(stream.delete_message(seq).await.unwrap());
    }
    for message in [tenth, ninth] {
        let mut headers = async_nats::HeaderMap::new();
        for (name, values) in message.headers.iter() {
            // Without its message id: the stream would drop it as a copy it has seen.
            if AsRef::<str>::as_ref(name) != "Nats-Msg-Id" {
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        js.publish_with_headers(message.subject.to_string(), headers, message.payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let found = verified(&app, "reordered").await;
    assert!(
        matches!(
            found.stream.first_break,
            Some(Break::Reordered { index: 9, .. })
        ),
        "{found:?}"
    );
    assert_eq!(found.database.first_break, None);

    // The command says the same, and fails.
    let said = app
        .sop(&["audit", "verify", "--team", "reordered", "--json"])
        .await;
    assert_eq!(said.0, 2, "{said:?}");
    let said: Value = serde_json::from_str(&said.1).unwrap();
    assert_eq!(said["stream"]["first_break"]["kind"], "reordered");
    assert_eq!(said["stream"]["first_break"]["index"], 9);
    app.stop().await;
}

async fn a_history_of_ten_thousand_events_verifies(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("long").await;
    let series = approved_sop(&app, &team).await;
    loop {
        for _ in 0..100 {
            app.ok(C::ExecuteProcedure, team.s3, json!({ "series_id": series }))
                .await;
        }
        let row = entity::team::Entity::find_by_id(team.id)
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        if row.chain_length >= 10_000 {
            break;
        }
    }
    app.drained().await;
    let started = Instant::now();
    let found = verified(&app, "long").await;
    let took = started.elapsed();
    assert!(found.intact(), "{found:?}");
    assert!(found.database.events >= 10_000, "{}", found.database.events);
    assert_eq!(found.stream.events, found.database.events);
    let said = app.sop(&["audit", "verify", "--team", "long"]).await;
    assert_eq!(said.0, 0, "{said:?}");
    assert!(said.1.contains("copies    agree"), "{said:?}");
    eprintln!(
        "{backend:?}: {} events verified in both copies in {took:?}",
        found.database.events
    );
    app.stop().await;
}

/// Someone with the database rewrites an event and every link after it, and the team's head:
/// the database's copy then checks by itself, but the worker's signed checkpoint of the head
/// from before says otherwise.
async fn a_history_rewritten_whole_is_caught_by_the_signed_checkpoints(backend: Backend) {
    let worker_key = nkeys::KeyPair::new_user();
    let seed = worker_key.seed().unwrap();
    let app = TestApp::spawn_configured(backend, None, None, |s| {
        s.worker.audit_seed = Some(seed.clone());
        s.worker.checkpoint_secs = 1;
    })
    .await;
    let team = app.register_team("rewritten").await;
    history(&app, &team, 2).await;
    let checked = eventually("a checkpoint of the whole chain", || async {
        let found = verified(&app, "rewritten").await;
        let whole = found.checkpoints.confirmed_to == Some(found.recorded_length);
        (whole && found.intact()).then_some(found)
    })
    .await;
    assert_eq!(checked.checkpoints.keys, [worker_key.public_key()]);

    // The rewrite: the 3rd event changed, and every run's link from there recomputed.
    let runs = entity::outbox_chain::Entity::find()
        .filter(entity::outbox_chain::Column::TeamId.eq(team.id))
        .order_by_asc(entity::outbox_chain::Column::Place)
        .all(app.db())
        .await
        .unwrap();
    let mut head = vsm_sop::wire::chain::Head::default();
    for run in runs {
        let record = entity::outbox::Entity::find_by_id(run.seq)
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        let mut messages = entity::outbox::decode(&record.body).unwrap();
        let mut linked: entity::outbox_chain::ActiveModel = run.clone().into();
        linked.prev = Set(head.hash.clone());
        linked.update(app.db()).await.unwrap();
        let first = run.first as usize;
        for m in &mut messages[first..first + run.events as usize] {
            if head.length == 2 {
                let mut payload: Value = serde_json::from_str(m.payload.get()).unwrap();
                payload["data"]["rewritten"] = json!(true);
                m.payload = serde_json::value::to_raw_value(&payload).unwrap();
            }
            head.append(team.id, m.id, m.payload.get().as_bytes());
        }
        let mut rewritten: entity::outbox::ActiveModel = record.into();
        rewritten.body = Set(entity::outbox::encode(&messages).unwrap());
        rewritten.update(app.db()).await.unwrap();
    }
    let mut row: entity::team::ActiveModel = entity::team::Entity::find_by_id(team.id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap()
        .into();
    row.chain_head = Set(Some(head.hash.clone()));
    row.update(app.db()).await.unwrap();

    let found = verified(&app, "rewritten").await;
    assert_eq!(found.database.first_break, None, "consistent by itself");
    let contradiction = found
        .checkpoints
        .first_contradiction
        .expect("a contradiction");
    assert!(contradiction.signature_holds);
    assert_ne!(contradiction.chain_has, Some(contradiction.head.clone()));
    let said = app.sop(&["audit", "verify", "--team", "rewritten"]).await;
    assert_eq!(said.0, 2, "{said:?}");
    assert!(
        said.1.contains("history was rewritten after it"),
        "{said:?}"
    );
    app.stop().await;
}

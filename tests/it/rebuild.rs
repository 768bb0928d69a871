//! A lost stream is rebuilt from the outbox: `sop outbox relist` lists the stored messages
//! again, and the relay publishes them in their order under their own message ids. History
//! older than a horizon is archived and removed (`sop archive create`), and the archive
//! replayed rebuilds what the outbox no longer holds (`sop archive replay`).

use async_nats::jetstream;

use crate::harness::*;
use crate::on_both_databases;
use crate::parking::stream_event_ids;
use crate::processes::WorkerProcess;
use vsm_sop::store;
use vsm_sop::wire::command::CommandName as C;

on_both_databases!(
    a_deleted_events_stream_is_rebuilt_from_the_outbox_identical,
    history_older_than_a_horizon_is_archived_removed_and_replayed_into_a_fresh_stream
);

async fn a_deleted_events_stream_is_rebuilt_from_the_outbox_identical(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let team = app.register_team("rebuilt").await;
    let series = approved_sop(&app, &team).await;
    for _ in 0..3 {
        let run = app
            .ok(
                C::ExecuteProcedure,
                team.s3,
                serde_json::json!({ "series_id": series }),
            )
            .await;
        app.ok(
            C::CancelRun,
            team.s3,
            serde_json::json!({ "run_id": run.run_id, "reason": "rebuilt" }),
        )
        .await;
    }
    app.drained().await;
    let before = stream_event_ids(&app).await;
    assert!(before.len() > 30, "{} events", before.len());

    app.pause_consumer().await;
    let js = jetstream::new(app.running.nats.clone());
    js.delete_stream(app.client.subjects().team_events_stream("rebuilt"))
        .await
        .unwrap();
    let after_event = before[before.len() - 5].to_string();
    let tail = app
        .sop(&[
            "outbox",
            "relist",
            "--events",
            "--after-event",
            &after_event,
            "--json",
        ])
        .await;
    assert_eq!(tail.0, 0, "{tail:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&tail.1).unwrap()["listed"],
        4,
        "the events after the one named"
    );
    let unknown = app
        .sop(&[
            "outbox",
            "relist",
            "--events",
            "--after-event",
            &uuid::Uuid::now_v7().to_string(),
        ])
        .await;
    assert_eq!(unknown.0, 4, "not found: {unknown:?}");
    let all = app.sop(&["outbox", "relist", "--events"]).await;
    assert_eq!(all.0, 0, "{all:?}");
    assert!(
        all.1.contains(&format!("{} messages listed", before.len())),
        "{all:?}"
    );
    assert_eq!(
        store::outbox::backlog(app.db()).await.unwrap() as usize,
        before.len()
    );

    published_again_in_order(&app, &before).await;
    app.stop().await;
}

async fn history_older_than_a_horizon_is_archived_removed_and_replayed_into_a_fresh_stream(
    backend: Backend,
) {
    let mut app = TestApp::spawn(backend).await;
    let team = app.register_team("archived").await;
    let series = approved_sop(&app, &team).await;
    let execute = serde_json::json!({ "series_id": series });
    let old = app
        .send(C::ExecuteProcedure, team.s3, execute.clone())
        .await;
    let old_run = match &old.verdict {
        vsm_sop::wire::outcome::Verdict::Accepted { result } => result.run_id.unwrap(),
        other => panic!("{other:?}"),
    };
    app.ok(
        C::CancelRun,
        team.s3,
        serde_json::json!({ "run_id": old_run, "reason": "old" }),
    )
    .await;
    // A message given up on: a dead letter.
    app.running
        .nats
        .publish(
            app.client.subjects().command("task.start"),
            "garbage".into(),
        )
        .await
        .unwrap();
    eventually("a dead letter", || async {
        let letters = store::dead_letters::latest(app.db(), 10).await.unwrap();
        (!letters.is_empty()).then_some(())
    })
    .await;
    app.drained().await;
    let horizon = chrono::Utc::now();
    let new_run = app
        .ok(C::ExecuteProcedure, team.s3, execute)
        .await
        .run_id
        .unwrap();
    app.drained().await;
    let before = stream_event_ids(&app).await;
    let db = app.db().clone();
    let trail = |run| {
        let db = db.clone();
        async move {
            store::outbox::trail(&db, None, Some(run), None, 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|(m, _)| m.publication.message_id)
                .collect::<Vec<_>>()
        }
    };
    let new_trail = trail(new_run).await;
    assert!(!trail(old_run).await.is_empty() && !new_trail.is_empty());

    let dir = tempfile_dir();
    let file = dir.join("archive.jsonl");
    let file = file.to_str().unwrap();
    let horizon_text = horizon.to_rfc3339();
    let created = app
        .sop(&[
            "archive",
            "create",
            "--before",
            &horizon_text,
            "--to",
            file,
            "--json",
        ])
        .await;
    assert_eq!(created.0, 0, "{created:?}");
    let counts: serde_json::Value = serde_json::from_str(&created.1).unwrap();
    assert_eq!(counts["dead_letters"], 1, "{counts}");
    assert_eq!(counts["kept_unpublished"], 0, "{counts}");
    let archived_events = before.len() - new_trail.len();
    let lines = std::fs::read_to_string(file).unwrap();
    let events_in_file = lines
        .lines()
        .filter(|l| l.contains("\"kind\":\"event."))
        .count();
    assert_eq!(
        events_in_file, archived_events,
        "every event before the horizon"
    );
    let again = app
        .sop(&["archive", "create", "--before", &horizon_text, "--to", file])
        .await;
    assert_ne!(
        again.0, 0,
        "an existing archive is not overwritten: {again:?}"
    );

    // The chain stays verifiable: the archive holds its first part, the database the rest.
    let whole = app
        .sop(&[
            "audit",
            "verify",
            "--team",
            "archived",
            "--archive",
            file,
            "--json",
        ])
        .await;
    assert_eq!(whole.0, 0, "{whole:?}");
    let whole: serde_json::Value = serde_json::from_str(&whole.1).unwrap();
    assert_eq!(whole["database"]["first"], 1, "{whole}");
    assert_eq!(whole["disagree_at"], serde_json::Value::Null);
    let rest = app
        .sop(&["audit", "verify", "--team", "archived", "--json"])
        .await;
    assert_eq!(rest.0, 0, "the database's part checks alone too: {rest:?}");
    let rest: serde_json::Value = serde_json::from_str(&rest.1).unwrap();
    assert!(rest["database"]["first"].as_i64().unwrap() > 1, "{rest}");

    // What is left: the newer run's trail whole, the older run's gone, no dead letter.
    assert!(trail(old_run).await.is_empty());
    assert_eq!(trail(new_run).await, new_trail);
    assert!(
        store::dead_letters::latest(app.db(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A command whose outcome was archived is still known: answered, never applied again.
    let answer: vsm_sop::wire::outcome::Outcome = app
        .client
        .query(
            vsm_sop::wire::query::QueryName::Outcome,
            &serde_json::json!({ "actor": team.s3, "command_id": old.command_id }),
        )
        .await
        .unwrap();
    match &answer.verdict {
        vsm_sop::wire::outcome::Verdict::Rejected { error } => {
            assert_eq!(error.code, "conflict");
            assert!(error.message.contains("archived"), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    let duplicates = store::inbox::find_many(app.db(), &[old.command_id])
        .await
        .unwrap();
    assert_eq!(duplicates[&old.command_id], answer);

    // The events stream rebuilt: the archive first, then what the outbox still holds.
    app.pause_consumer().await;
    let js = jetstream::new(app.running.nats.clone());
    js.delete_stream(app.client.subjects().team_events_stream("archived"))
        .await
        .unwrap();
    let replayed = app
        .sop(&["archive", "replay", "--from", file, "--json"])
        .await;
    assert_eq!(replayed.0, 0, "{replayed:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&replayed.1).unwrap()["published"],
        archived_events
    );
    let relisted = app.sop(&["outbox", "relist", "--events"]).await;
    assert_eq!(relisted.0, 0, "{relisted:?}");
    published_again_in_order(&app, &before).await;
    std::fs::remove_dir_all(dir).ok();
    app.stop().await;
}

/// A worker started again creates the missing stream and publishes what is listed: the
/// stream then holds `before`, every event once, in its order.
async fn published_again_in_order(app: &TestApp, before: &[uuid::Uuid]) {
    let worker = WorkerProcess::start(app).await;
    app.drained().await;
    assert_eq!(
        stream_event_ids(app).await,
        before,
        "every event once, in order"
    );
    assert!(worker.terminate().await.success());
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sop-archive-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

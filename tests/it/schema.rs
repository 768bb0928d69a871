//! The schema backs the version invariants by itself, whatever the code above it does:
//! `(series, version)` is unique, and a series has at most one draft and one approved version.
//! Migrations that convert data keep it, both ways.

use chrono::Utc;
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::domain::ids::*;
use vsm_sop::domain::procedure::*;
use vsm_sop::store;

on_both_databases!(
    the_database_refuses_duplicate_versions_and_second_approved_or_draft_versions,
    outbox_messages_survive_migrations_6_and_7_both_ways,
    versions_and_runs_stored_before_digests_get_theirs,
    runs_survive_the_status_migrations_both_ways,
    every_message_keeps_its_bytes_order_and_place_across_migration_17_both_ways
);

/// Migrations 13 and 15 widen the run status CHECK (SQLite rebuilds the table for it): runs
/// stored before keep every row, index and foreign key, the new status is allowed and no
/// other, and undoing 13 ends the runs awaiting approval, undoing 15 starts the paused ones
/// again, rather than losing them.
async fn runs_survive_the_status_migrations_both_ways(backend: Backend) {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, EntityTrait};

    let mut app = TestApp::spawn(backend).await;
    let run = executed(&app, "migrated").await.1.run_id.unwrap();
    app.pause_consumer().await;
    let db = app.db();
    let literal = match backend {
        Backend::Postgres => format!("'{run}'"),
        Backend::Sqlite => format!("X'{}'", run.simple()),
    };
    let set_status =
        |status: &str| format!("UPDATE procedure_run SET status = '{status}' WHERE id = {literal}");

    // Migration 13 and those after it.
    let from_13 = (Migrator::migrations().len() - 12) as u32;
    Migrator::down(db, Some(from_13)).await.unwrap();
    assert!(
        db.execute_unprepared(&set_status("awaiting_approval"))
            .await
            .is_err(),
        "not a status before migration 13"
    );
    Migrator::up(db, None).await.unwrap();
    let kept = || async {
        entity::procedure_run::Entity::find_by_id(run)
            .one(db)
            .await
            .unwrap()
            .expect("the run kept")
    };
    let row = kept().await;
    assert_eq!(row.status, "started");
    assert_eq!(row.approval_rule, None);
    for index in ["ix_run_series_status", "ix_run_team_status_id"] {
        assert!(has_index(db, index).await, "{index} kept");
    }
    db.execute_unprepared(&set_status("awaiting_approval"))
        .await
        .expect("the new status");
    assert!(db.execute_unprepared(&set_status("frozen")).await.is_err());
    assert!(
        db.execute_unprepared(&format!("DELETE FROM procedure_run WHERE id = {literal}"))
            .await
            .is_err(),
        "its initiative still refers to it"
    );

    Migrator::down(db, Some(from_13)).await.unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT status FROM procedure_run WHERE id = {literal}"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "status").unwrap(), "canceled");
    Migrator::up(db, None).await.unwrap();

    // Migration 15 (`paused`) the same way: undone, a paused run is started again.
    db.execute_unprepared(&set_status("paused"))
        .await
        .expect("the new status");
    let from_15 = (Migrator::migrations().len() - 14) as u32;
    Migrator::down(db, Some(from_15)).await.unwrap();
    assert_eq!(kept().await.status, "started");
    assert!(db.execute_unprepared(&set_status("paused")).await.is_err());
    Migrator::up(db, None).await.unwrap();
    for index in ["ix_run_series_status", "ix_run_team_status_id"] {
        assert!(has_index(db, index).await, "{index} kept");
    }
    app.stop().await;
}

/// A new team's approved SOP (its series) and one run of it.
async fn executed(app: &TestApp, team: &str) -> (Uuid, vsm_sop::wire::outcome::Accepted) {
    let team = app.register_team(team).await;
    let series = approved_sop(app, &team).await;
    let run = app
        .ok(
            vsm_sop::wire::command::CommandName::ExecuteProcedure,
            team.s3,
            serde_json::json!({ "series_id": series }),
        )
        .await;
    (series, run)
}

async fn versions_and_runs_stored_before_digests_get_theirs(backend: Backend) {
    use sea_orm::{ConnectionTrait, EntityTrait};
    let app = TestApp::spawn(backend).await;
    let (series, run) = executed(&app, "digests").await;
    let digest_of = || async {
        let p = entity::procedure::Entity::find_by_id(series)
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        let r = entity::procedure_run::Entity::find_by_id(run.run_id.unwrap())
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        let i = entity::initiative::Entity::find_by_id(run.initiative_id.unwrap())
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        (p.digest, r.procedure_digest, i.procedure_digest)
    };
    let (digest, of_run, of_initiative) = digest_of().await;
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!((&of_run, &of_initiative), (&digest, &digest));
    assert_eq!(run.digest.as_deref(), Some(digest.as_str()));

    // As rows written before the digest columns existed hold them: empty.
    for sql in [
        "UPDATE procedure SET digest = ''",
        "UPDATE procedure_run SET procedure_digest = ''",
        "UPDATE initiative SET procedure_digest = ''",
    ] {
        app.db().execute_unprepared(sql).await.unwrap();
    }
    store::migrate(app.db()).await.unwrap();
    assert_eq!(digest_of().await, (digest.clone(), digest.clone(), digest));
}

fn version(series: SeriesId, team: Uuid, by: Uuid, n: u32, state: ProcedureState) -> Procedure {
    let now = Utc::now();
    Procedure {
        id: ProcedureId(if n == 1 { series.0 } else { Uuid::now_v7() }),
        series_id: series,
        team_id: TeamId(team),
        version: Version(n),
        meta: ProcedureMeta::parse(MetaDraft {
            name: "p".into(),
            description: String::new(),
            risk_level: "low".into(),
            impact: "low".into(),
            rollback_plan: "r".into(),
        })
        .unwrap(),
        digest: Digest::from_stored(format!("sha256:{n:064}")),
        state,
        created_by: SystemId(by),
        created_at: now,
        updated_at: now,
    }
}

async fn the_database_refuses_duplicate_versions_and_second_approved_or_draft_versions(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("schema").await;
    let series = SeriesId(Uuid::now_v7());
    let approved = || {
        ProcedureState::Approved(Approval {
            by: SystemId(team.s5),
            at: Utc::now(),
        })
    };
    let draft = || ProcedureState::Draft { rejection: None };
    store::procedures::insert(app.db(), &version(series, team.id, team.s4, 1, approved()))
        .await
        .unwrap();

    let same_number =
        store::procedures::insert(app.db(), &version(series, team.id, team.s4, 1, draft())).await;
    assert!(store::is_unique_violation(&same_number.unwrap_err()));
    let second_approved =
        store::procedures::insert(app.db(), &version(series, team.id, team.s4, 2, approved()))
            .await;
    assert!(store::is_unique_violation(&second_approved.unwrap_err()));

    store::procedures::insert(app.db(), &version(series, team.id, team.s4, 2, draft()))
        .await
        .unwrap();
    let second_draft =
        store::procedures::insert(app.db(), &version(series, team.id, team.s4, 3, draft())).await;
    assert!(store::is_unique_violation(&second_draft.unwrap_err()));
    app.stop().await;
}

/// The outbox payload became raw bytes (migration 6) and what is left to publish moved to
/// `outbox_pending` (migration 7): an unpublished message written as JSON before them reads
/// back as the same JSON, still to be published, after them, and after undoing them (and
/// every later migration, such as 8, which drops an index).
async fn outbox_messages_survive_migrations_6_and_7_both_ways(backend: Backend) {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::ConnectionTrait;

    let mut app = TestApp::spawn(backend).await;
    app.pause_consumer().await;
    let db = app.db();
    let from_6 = Some((Migrator::migrations().len() - 5) as u32);
    Migrator::down(db, from_6).await.unwrap();
    let message =
        serde_json::json!({ "actor": Uuid::now_v7(), "data": { "name": "Ünïcode \"quoted\"" } });
    let id = Uuid::now_v7();
    let literal = message.to_string().replace('\'', "''");
    let (uuid, json) = match backend {
        Backend::Postgres => (format!("'{id}'"), format!("'{literal}'::jsonb")),
        Backend::Sqlite => (format!("X'{}'", id.simple()), format!("'{literal}'")),
    };
    db.execute_unprepared(&format!(
        "INSERT INTO outbox (message_id, kind, subject, payload, created_at) \
         VALUES ({uuid}, 'event.x', 's', {json}, CURRENT_TIMESTAMP)"
    ))
    .await
    .unwrap();

    assert!(has_index(db, "ix_outbox_team").await, "migration 8 undone");
    Migrator::up(db, None).await.unwrap();
    assert!(
        !has_index(db, "ix_outbox_team").await,
        "dropped by migration 8"
    );
    let pending = store::outbox::unpublished(db, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "still to be published");
    let row = &pending[0].publication;
    assert_eq!(row.message_id, id);
    let stored: serde_json::Value = serde_json::from_slice(&row.payload).unwrap();
    assert_eq!(stored, message);
    assert_eq!(
        store::outbox::actor_of(&row.payload),
        message["actor"].as_str().map(|a| a.parse().unwrap())
    );

    Migrator::down(db, from_6).await.unwrap();
    let back = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(payload AS TEXT) AS payload FROM outbox WHERE published_at IS NULL",
        ))
        .await
        .unwrap()
        .unwrap();
    let text: String = back.try_get("", "payload").unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        message
    );
    Migrator::up(db, None).await.unwrap();
    app.stop().await;
}

/// Migration 17 turns a row per message into records (and back): every message keeps its
/// bytes and its order, a pending or parked message stays pending or parked, each outcome
/// stays its command's (in the inbox's own column before 17, from the outbox after), and the
/// audit trail of a run reads the same.
async fn every_message_keeps_its_bytes_order_and_place_across_migration_17_both_ways(
    backend: Backend,
) {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Statement};
    use vsm_sop::wire::command::CommandName as C;

    let mut app = TestApp::spawn(backend).await;
    let (_, run) = executed(&app, "migrated").await;
    let run_id = run.run_id.expect("a run");
    let team = app.register_team("other").await;
    let canceled = app
        .send(
            C::CancelRun,
            team.s3,
            serde_json::json!({ "run_id": Uuid::now_v7(), "reason": "no such run" }),
        )
        .await;
    assert!(!canceled.is_accepted(), "a refusal: an outcome of its own");
    app.drained().await;
    app.pause_consumer().await;
    let db = app.db();
    // Below migration 20 there is no chain: the events' links go with it.
    let unlinked = |headers: &Option<serde_json::Value>| {
        let mut headers = headers.clone()?;
        let map = headers.as_object_mut()?;
        map.retain(|name, _| !name.starts_with("Sop-Chain-"));
        (!map.is_empty()).then_some(headers)
    };
    let shape = |m: &store::outbox::Stored| {
        let p = &m.publication;
        (
            p.message_id,
            m.kind.clone(),
            p.subject.clone(),
            unlinked(&p.headers),
            p.payload.clone(),
            m.causation_id,
            m.created_at.timestamp_micros(),
        )
    };
    let before = app.stored().await;
    assert!(before.len() > 10, "{} messages", before.len());
    let trail = |db| async move {
        store::outbox::trail(db, None, Some(run_id), None, 1000)
            .await
            .unwrap()
            .iter()
            .map(|(m, published)| (m.publication.message_id, *published))
            .collect::<Vec<_>>()
    };
    // Two left to publish, one of them parked meanwhile.
    let (last, parked) = (&before[before.len() - 1], &before[before.len() - 3]);
    for m in [last, parked] {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            match backend {
                Backend::Postgres => "INSERT INTO outbox_pending (seq) VALUES ($1)",
                Backend::Sqlite => "INSERT INTO outbox_pending (seq) VALUES (?)",
            },
            [m.publication.seq.into()],
        ))
        .await
        .unwrap();
    }
    store::outbox::park(db, parked.publication.seq, "too large", Utc::now())
        .await
        .unwrap();
    let trail_before = trail(db).await;
    let (outcome, _) = store::inbox::find_with_actor(db, canceled.command_id)
        .await
        .unwrap()
        .expect("the refusal's outcome");

    let from_17 = (Migrator::migrations().len() - 16) as u32;
    Migrator::down(db, Some(from_17)).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT message_id FROM outbox ORDER BY seq",
        ))
        .await
        .unwrap();
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r.try_get("", "message_id").unwrap())
        .collect();
    let before_ids: Vec<Uuid> = before.iter().map(|m| m.publication.message_id).collect();
    assert_eq!(ids, before_ids, "a row per message, in order");
    let listed = |table: &str| {
        format!("SELECT o.message_id FROM {table} l JOIN outbox o ON o.seq = l.seq ORDER BY o.seq")
    };
    let one = |sql: String| async move {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<Uuid>("", "message_id").unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        one(listed("outbox_pending")).await,
        [last.publication.message_id]
    );
    assert_eq!(
        one(listed("outbox_parked")).await,
        [parked.publication.message_id]
    );
    let cast = match backend {
        Backend::Postgres => "outcome::text",
        Backend::Sqlite => "outcome",
    };
    let stored_outcome = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!(
                "SELECT {cast} AS outcome FROM command_inbox WHERE command_id = {}",
                if backend == Backend::Postgres {
                    "$1"
                } else {
                    "?"
                }
            ),
            [canceled.command_id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "outcome")
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored_outcome).unwrap(),
        serde_json::to_value(&outcome).unwrap(),
        "the outcome back in the inbox"
    );

    Migrator::up(db, None).await.unwrap();
    let after = app.stored().await;
    assert_eq!(
        after.iter().map(shape).collect::<Vec<_>>(),
        before.iter().map(shape).collect::<Vec<_>>(),
        "every message as it was, in order"
    );
    let position_of = |id: Uuid| {
        after
            .iter()
            .find(|m| m.publication.message_id == id)
            .unwrap()
            .publication
            .seq
    };
    assert_eq!(
        store::outbox::pending(db, None, 10).await.unwrap(),
        [position_of(last.publication.message_id)]
    );
    let parked_now = store::outbox::parked(db).await.unwrap();
    assert_eq!(
        parked_now
            .iter()
            .map(|p| (p.seq, p.reason.as_str()))
            .collect::<Vec<_>>(),
        [(position_of(parked.publication.message_id), "too large")]
    );
    assert_eq!(trail(db).await, trail_before, "the run's audit trail");
    let (again, _) = store::inbox::find_with_actor(db, canceled.command_id)
        .await
        .unwrap()
        .expect("the outcome");
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&outcome).unwrap()
    );
    app.stop().await;
}

async fn has_index(db: &sea_orm::DatabaseConnection, name: &str) -> bool {
    use sea_orm::ConnectionTrait;
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "SELECT 1 AS x FROM pg_indexes WHERE indexname = $1",
        _ => "SELECT 1 AS x FROM sqlite_master WHERE type = 'index' AND name = ?",
    };
    db.query_one_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [name.into()],
    ))
    .await
    .unwrap()
    .is_some()
}

on_both_databases!(a_groups_inserts_keep_every_value_every_null_and_the_order);

/// A group's inserts ([`store::writes::Writes`]): on Postgres one `UNNEST` insert per table
/// (one array per column, a mask for NULLs), all but the last as `WITH` clauses of the last,
/// their `$n` parameters renumbered; on SQLite power-of-two pieces sent as one
/// multi-statement query, whose `?` parameters run on across its statements. Either way
/// every value, every NULL and the order come back as written, with the `seq` each row got.
async fn a_groups_inserts_keep_every_value_every_null_and_the_order(backend: Backend) {
    use entity::outbox;
    use sea_orm::{EntityTrait, QueryOrder, Set};

    let mut app = TestApp::spawn(backend).await;
    app.pause_consumer().await;
    let at = Utc::now();
    let rows: Vec<outbox::ActiveModel> = (0..7)
        .map(|i| outbox::ActiveModel {
            team_id: Set((i % 2 == 0).then(Uuid::now_v7)),
            causation_id: Set(Uuid::now_v7()),
            series_id: Set(None),
            run_id: Set((i % 3 != 0).then(Uuid::now_v7)),
            messages: Set(1000 + i as i32),
            body: Set(format!("{{\"n\":{i},\"t\":\"Ünïcode\"}}").into_bytes()),
            created_at: Set(at + chrono::Duration::milliseconds(i)),
            ..Default::default()
        })
        .collect();
    // A first table, then seven rows: three statements on SQLite (4 + 2 + 1), one `WITH`
    // clause and the statement that returns the rows on Postgres.
    let mut writes = store::writes::Writes::new(app.db().get_database_backend());
    let pending: Vec<entity::outbox_pending::ActiveModel> = (0..3)
        .map(|i| entity::outbox_pending::ActiveModel {
            seq: Set(1_000_000 + i),
        })
        .collect();
    writes.insert(pending, None).unwrap();
    writes.insert(rows.clone(), Some("seq")).unwrap();
    let returned = writes.run(app.db()).await.unwrap();
    let mut seqs: Vec<i64> = returned
        .iter()
        .map(|r| r.try_get::<i64>("", "seq").unwrap())
        .collect();
    seqs.sort_unstable();

    let stored = outbox::Entity::find()
        .order_by_asc(outbox::Column::Seq)
        .all(app.db())
        .await
        .unwrap();
    let stored: Vec<_> = stored.iter().filter(|m| m.messages >= 1000).collect();
    assert_eq!(stored.len(), rows.len());
    let stored_seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, stored_seqs, "each row's seq returned");
    assert_eq!(
        store::outbox::pending(app.db(), Some(999_999), 10)
            .await
            .unwrap(),
        [1_000_000, 1_000_001, 1_000_002],
        "the first table's rows, its parameters before the second's"
    );
    for (row, got) in rows.iter().zip(stored) {
        assert_eq!(got.team_id, row.team_id.clone().unwrap());
        assert_eq!(got.causation_id, row.causation_id.clone().unwrap());
        assert_eq!(got.series_id, None);
        assert_eq!(got.run_id, row.run_id.clone().unwrap());
        assert_eq!(got.messages, row.messages.clone().unwrap());
        assert_eq!(got.body, row.body.clone().unwrap());
        assert_eq!(
            got.created_at.timestamp_micros(),
            row.created_at.clone().unwrap().timestamp_micros()
        );
    }
    app.stop().await;
}

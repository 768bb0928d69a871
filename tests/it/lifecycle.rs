//! The SOP lifecycle end to end: draft → approve → execute → tasks worked by System1s and
//! reviewed by System3 → run completed → post-run review recorded; and versioning.

use std::collections::BTreeMap;

use entity::{initiative, procedure, procedure_run, procedure_task, run_review, task};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::wire::command::CommandName as C;

on_both_databases!(
    first_run_discovery_from_draft_to_recorded_review,
    revising_v1_and_approving_v2_retires_v1_and_execute_takes_v2,
    a_rejected_task_is_replaced_and_the_run_still_completes,
    canceling_a_run_ends_it_canceled
);

fn uuid(v: &Value) -> Uuid {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a uuid: {v}"))
}

pub(crate) async fn first_run_discovery_from_draft_to_recorded_review(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    first_run_discovery_lifecycle(&app).await;
    app.stop().await;
}

/// The whole lifecycle of the First Run Discovery SOP, with every check; also run with two
/// workers on one stream (`processes.rs`).
pub async fn first_run_discovery_lifecycle(app: &TestApp) {
    let team = app.register_team("discovery").await;

    // System4 drafts, System5 approves.
    let drafted = app
        .ok(C::DraftProcedure, team.s4, first_run_discovery())
        .await;
    let procedure_id = drafted.procedure_id.unwrap();
    assert_eq!(drafted.version, Some(1));
    assert_eq!(drafted.status.as_deref(), Some("draft"));
    let approved = app
        .ok(
            C::ApproveProcedure,
            team.s5,
            app.approval(procedure_id).await,
        )
        .await;
    assert_eq!(approved.status.as_deref(), Some("approved"));
    let row = procedure::Entity::find_by_id(procedure_id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.approved_by_system_id, Some(team.s5));
    assert_eq!(row.created_by_system_id, team.s4);
    assert!(row.approved_at.is_some());

    // System3 executes: one initiative and six tasks matching the template.
    let run = app
        .ok(
            C::ExecuteProcedure,
            team.s3,
            json!({ "series_id": procedure_id, "expected_version": 1 }),
        )
        .await;
    let (run_id, initiative_id) = (run.run_id.unwrap(), run.initiative_id.unwrap());
    assert_eq!(run.task_ids.len(), 6);
    let ini = initiative::Entity::find_by_id(initiative_id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ini.procedure_id, Some(procedure_id));
    assert_eq!(ini.procedure_version, Some(1));
    assert_eq!(ini.run_id, Some(run_id));
    assert_eq!(ini.name, "First Run Discovery");
    let templates = procedure_task::Entity::find()
        .filter(procedure_task::Column::ProcedureId.eq(procedure_id))
        .order_by_asc(procedure_task::Column::Position)
        .all(app.db())
        .await
        .unwrap();
    let tasks = task::Entity::find()
        .filter(task::Column::InitiativeId.eq(initiative_id))
        .order_by_asc(task::Column::Seq)
        .all(app.db())
        .await
        .unwrap();
    assert_eq!(tasks.len(), templates.len());
    for (i, (t, tpl)) in tasks.iter().zip(&templates).enumerate() {
        assert_eq!(t.id, run.task_ids[i]);
        assert_eq!(t.name, tpl.name);
        assert_eq!(t.content, tpl.description);
        assert_eq!(t.position, tpl.position);
        assert_eq!(t.procedure_task_id, Some(tpl.id));
        let deps: Vec<Uuid> = serde_json::from_value(t.depends_on.clone()).unwrap();
        assert_eq!(
            deps,
            if i == 0 {
                vec![]
            } else {
                vec![tasks[i - 1].id]
            }
        );
        assert_eq!(t.ready, i == 0);
    }
    // The interview needs the interviewing skill: alpha has it.
    assert_eq!(tasks[4].assignee_system_id, team.s1a);

    // System1s work each task once it is ready; System3 approves it.
    for (i, task_id) in run.task_ids.iter().enumerate() {
        let assignee = tasks[i].assignee_system_id;
        if i + 1 < run.task_ids.len() {
            let early = app
                .refused(
                    C::StartTask,
                    tasks[i + 1].assignee_system_id,
                    json!({ "task_id": run.task_ids[i + 1] }),
                )
                .await;
            assert_eq!(
                early.code,
                "invalid_state",
                "task {} is not ready yet",
                i + 2
            );
        }
        let started = app
            .ok(C::StartTask, assignee, json!({ "task_id": task_id }))
            .await;
        assert_eq!(started.status.as_deref(), Some("in_progress"));
        app.ok(
            C::CompleteTask,
            assignee,
            json!({ "task_id": task_id, "result": format!("result {i}") }),
        )
        .await;
        let reviewed = app
            .ok(
                C::ReviewTask,
                team.s3,
                json!({ "task_id": task_id, "verdict": "approve", "reasoning": "fine" }),
            )
            .await;
        assert_eq!(reviewed.status.as_deref(), Some("approved"));
    }
    let run_row = procedure_run::Entity::find_by_id(run_id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run_row.status, "completed");
    assert!(run_row.completed_at.is_some());
    let ini = initiative::Entity::find_by_id(initiative_id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ini.status, "completed");

    // System3 records the post-run review, once.
    let review = json!({
        "initiative_id": initiative_id, "outcome": "succeeded", "summary": "Discovery done",
        "lessons": ["Ask for documents before the interview"], "follow_ups": ["Schedule a check-in"],
    });
    let recorded = app.ok(C::ReviewInitiative, team.s3, review.clone()).await;
    let again = app.refused(C::ReviewInitiative, team.s3, review).await;
    assert_eq!(again.code, "conflict");
    let stored = run_review::Entity::find_by_id(recorded.review_id.unwrap())
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stored.run_id,
            stored.initiative_id,
            stored.procedure_id,
            stored.procedure_version
        ),
        (run_id, initiative_id, procedure_id, 1)
    );
    assert_eq!(stored.context["risk_level"], "low");
    assert_eq!(stored.context["impact"], "high");
    assert_eq!(
        stored.context["rollback_plan"],
        "Revert to prior purpose/strategy and re-interview the user."
    );
    assert_eq!(stored.context["tasks"].as_array().unwrap().len(), 6);
    assert!(
        stored.context["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "approved")
    );

    // Events: every change, on team-scoped subjects, complete enough to act on.
    let events = app.events().await;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        *counts.entry(e.kind.as_str()).or_default() += 1;
        assert_eq!(e.team, "discovery");
        assert_eq!(e.team_id, team.id);
    }
    let expected = [
        ("procedure.drafted", 1),
        ("procedure.approved", 1),
        ("run.started", 1),
        ("initiative.created", 1),
        ("task.created", 6),
        ("task.ready", 6),
        ("task.started", 6),
        ("initiative.started", 1),
        ("task.completed", 6),
        ("task.approved", 6),
        ("initiative.completed", 1),
        ("run.completed", 1),
        ("initiative.reviewed", 1),
    ];
    assert_eq!(counts, expected.into_iter().collect::<BTreeMap<_, _>>());
    let created = events
        .iter()
        .find(|e| e.kind == "initiative.created")
        .unwrap();
    assert_eq!(uuid(&created.data["procedure_id"]), procedure_id);
    assert_eq!(created.data["procedure_version"], 1);
    assert_eq!(uuid(&created.data["run_id"]), run_id);
    let ready: Vec<&Value> = events
        .iter()
        .filter(|e| e.kind == "task.ready")
        .map(|e| &e.data)
        .collect();
    for (i, r) in ready.iter().enumerate() {
        // A System1 listener needs nothing else to start work.
        assert_eq!(r["position"], i + 1);
        assert_eq!(uuid(&r["task_id"]), run.task_ids[i]);
        assert_eq!(uuid(&r["assignee_system_id"]), tasks[i].assignee_system_id);
        assert_eq!(uuid(&r["run_id"]), run_id);
        assert!(r["name"].is_string() && r["content"].is_string());
    }
    let ended = events.iter().find(|e| e.kind == "run.completed").unwrap();
    assert_eq!(ended.data["status"], "completed");
    assert!(ended.data["completed_at"].is_string());
    let reviewed = events
        .iter()
        .find(|e| e.kind == "initiative.reviewed")
        .unwrap();
    assert_eq!(
        uuid(&reviewed.data["review_id"]),
        recorded.review_id.unwrap()
    );
    assert_eq!(
        reviewed.data["context"]["tasks"].as_array().unwrap().len(),
        6
    );
}

async fn revising_v1_and_approving_v2_retires_v1_and_execute_takes_v2(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("versions").await;
    let v1 = approved_sop(&app, &team).await;

    // A revision copies the templates with new ids and remapped dependencies.
    let v2 = revised_sop(&app, &team, v1).await;
    assert_eq!((v2.version, v2.series_id), (Some(2), Some(v1)));
    let v2_id = v2.procedure_id.unwrap();
    let v2_templates = procedure_task::Entity::find()
        .filter(procedure_task::Column::ProcedureId.eq(v2_id))
        .order_by_asc(procedure_task::Column::Position)
        .all(app.db())
        .await
        .unwrap();
    assert_eq!(v2_templates.len(), 6);
    for pair in v2_templates.windows(2) {
        let deps: Vec<Uuid> = serde_json::from_value(pair[1].depends_on.clone()).unwrap();
        assert_eq!(
            deps,
            vec![pair[0].id],
            "dependencies point at v2's own templates"
        );
    }
    // One open draft per series; only the latest version can be revised.
    let second = app
        .refused(
            C::ReviseProcedure,
            team.s4,
            json!({ "procedure_id": v2_id }),
        )
        .await;
    assert_eq!(second.code, "invalid_state");
    // Edit the draft (fixable before approval), replacing its templates.
    let edited = app
        .ok(
            C::EditProcedure,
            team.s4,
            json!({ "procedure_id": v2_id, "tasks": [
            { "name": "Collect identity" }, { "name": "Interview", "depends_on": [1] } ] }),
        )
        .await;
    assert_eq!(edited.version, Some(2));

    let approved = app
        .ok(C::ApproveProcedure, team.s5, app.approval(v2_id).await)
        .await;
    assert_eq!(approved.superseded_procedure_id, Some(v1));
    let v1_row = procedure::Entity::find_by_id(v1)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v1_row.status, "retired");
    assert_eq!(
        v1_row.retired_kind,
        Some(entity::enums::RetireKind::Superseded)
    );
    // Approved versions are immutable.
    let edit_v1 = app
        .refused(
            C::EditProcedure,
            team.s4,
            json!({ "procedure_id": v1, "name": "x" }),
        )
        .await;
    assert_eq!(edit_v1.code, "invalid_state");
    let stale = app
        .refused(C::ReviseProcedure, team.s4, json!({ "procedure_id": v1 }))
        .await;
    assert_eq!(stale.code, "conflict");

    let pinned = app
        .refused(
            C::ExecuteProcedure,
            team.s3,
            json!({ "series_id": v1, "expected_version": 1 }),
        )
        .await;
    assert_eq!(pinned.code, "conflict");
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": v1 }))
        .await;
    assert_eq!((run.procedure_id, run.version), (Some(v2_id), Some(2)));
    assert_eq!(run.task_ids.len(), 2);

    // Retired by System5: readable, no longer executable.
    app.ok(
        C::RetireProcedure,
        team.s5,
        json!({ "procedure_id": v2_id, "reason": "obsolete" }),
    )
    .await;
    let none = app
        .refused(C::ExecuteProcedure, team.s3, json!({ "series_id": v1 }))
        .await;
    assert_eq!(none.code, "invalid_state");

    let events = app.events().await;
    let approved_v2 = events
        .iter()
        .find(|e| {
            e.kind == "procedure.approved" && uuid(&e.data["procedure"]["procedure_id"]) == v2_id
        })
        .unwrap();
    assert_eq!(uuid(&approved_v2.data["superseded"]), v1);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "procedure.retired")
            .count(),
        2
    );
    app.stop().await;
}

pub(crate) async fn a_rejected_task_is_replaced_and_the_run_still_completes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("remediation").await;
    let sop = app
        .ok(C::DraftProcedure, team.s4, json!({
            "name": "Two steps", "risk_level": "medium", "impact": "low", "rollback_plan": "Undo step one.",
            "tasks": [ { "name": "one" }, { "name": "two", "depends_on": [1] } ] }))
        .await
        .procedure_id
        .unwrap();
    app.ok(C::ApproveProcedure, team.s5, app.approval(sop).await)
        .await;
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    let (first, second) = (run.task_ids[0], run.task_ids[1]);
    let rows = task::Entity::find()
        .filter(task::Column::InitiativeId.eq(run.initiative_id.unwrap()))
        .all(app.db())
        .await
        .unwrap();
    let assignee = |id: Uuid| rows.iter().find(|t| t.id == id).unwrap().assignee_system_id;

    app.ok(C::StartTask, assignee(first), json!({ "task_id": first }))
        .await;
    app.ok(
        C::BlockTask,
        assignee(first),
        json!({ "task_id": first, "reason": "waiting on access" }),
    )
    .await;
    app.ok(
        C::UnblockTask,
        team.s3,
        json!({ "task_id": first, "note": "access granted" }),
    )
    .await;
    app.ok(C::StartTask, assignee(first), json!({ "task_id": first }))
        .await;
    app.ok(
        C::CompleteTask,
        assignee(first),
        json!({ "task_id": first, "result": "half done" }),
    )
    .await;
    app.ok(
        C::ReviewTask,
        team.s3,
        json!({ "task_id": first, "verdict": "reject", "reasoning": "incomplete" }),
    )
    .await;
    let replacement = app
        .ok(
            C::ReplaceTask,
            team.s3,
            json!({ "task_id": first, "reason": "redo fully", "content": "Do all of it" }),
        )
        .await
        .task_id
        .unwrap();
    assert_ne!(replacement, first);
    let new_row = task::Entity::find_by_id(replacement)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new_row.replaces_task_id, Some(first));
    assert!(new_row.ready);
    let old_row = task::Entity::find_by_id(first)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old_row.follow_up_task_id, Some(replacement));
    let second_row = task::Entity::find_by_id(second)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    let deps: Vec<Uuid> = serde_json::from_value(second_row.depends_on).unwrap();
    assert_eq!(deps, vec![replacement]);

    for id in [replacement, second] {
        app.ok(
            C::StartTask,
            assignee(if id == replacement { first } else { id }),
            json!({ "task_id": id }),
        )
        .await;
        app.ok(
            C::CompleteTask,
            assignee(if id == replacement { first } else { id }),
            json!({ "task_id": id, "result": "done" }),
        )
        .await;
        app.ok(
            C::ReviewTask,
            team.s3,
            json!({ "task_id": id, "verdict": "approve" }),
        )
        .await;
    }
    let run_row = procedure_run::Entity::find_by_id(run.run_id.unwrap())
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run_row.status, "completed");
    app.stop().await;
}

async fn canceling_a_run_ends_it_canceled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("cancel").await;
    let sop = approved_sop(&app, &team).await;
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": sop }))
        .await;
    let canceled = app
        .ok(
            C::CancelRun,
            team.s3,
            json!({ "run_id": run.run_id, "reason": "priorities changed" }),
        )
        .await;
    assert_eq!(canceled.status.as_deref(), Some("canceled"));
    let rows = task::Entity::find()
        .filter(task::Column::InitiativeId.eq(run.initiative_id.unwrap()))
        .all(app.db())
        .await
        .unwrap();
    assert!(rows.iter().all(|t| t.status == "canceled"));
    let review = app
        .ok(C::ReviewInitiative, team.s3, json!({ "initiative_id": run.initiative_id, "outcome": "failed", "summary": "Stopped early" }))
        .await;
    assert!(review.review_id.is_some());
    let events = app.events().await;
    assert_eq!(
        events.iter().filter(|e| e.kind == "task.canceled").count(),
        6
    );
    assert_eq!(
        events.iter().filter(|e| e.kind == "run.canceled").count(),
        1
    );
    app.stop().await;
}

//! Every rejection path, each with its stable code (and field, where one is at fault).

use sea_orm::EntityTrait;
use serde_json::json;
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::wire::command::CommandName as C;

on_both_databases!(rules_are_enforced_with_precise_codes, teams_are_isolated);

async fn rules_are_enforced_with_precise_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("rules").await;

    // Roles: only System4 drafts.
    let e = app
        .refused(C::DraftProcedure, team.s3, first_run_discovery())
        .await;
    assert_eq!(e.code, "forbidden");
    // Unknown systems are refused.
    let e = app
        .refused(C::DraftProcedure, Uuid::now_v7(), first_run_discovery())
        .await;
    assert_eq!(e.code, "forbidden");

    // Validation names the offending field.
    let mut bad = first_run_discovery();
    bad["risk_level"] = json!("extreme");
    let e = app.refused(C::DraftProcedure, team.s4, bad).await;
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        ("validation_failed", Some("risk_level"))
    );
    let mut bad = first_run_discovery();
    bad["rollback_plan"] = json!("  ");
    let e = app.refused(C::DraftProcedure, team.s4, bad).await;
    assert_eq!(e.field.as_deref(), Some("rollback_plan"));
    let mut bad = first_run_discovery();
    bad["tasks"][0]["depends_on"] = json!([6]);
    let e = app.refused(C::DraftProcedure, team.s4, bad).await;
    assert_eq!(e.code, "validation_failed");
    assert!(e.message.contains("cycle"), "{}", e.message);
    let mut bad = first_run_discovery();
    bad["tasks"][2]["depends_on"] = json!([42]);
    let e = app.refused(C::DraftProcedure, team.s4, bad).await;
    assert_eq!(e.field.as_deref(), Some("tasks[position=3].depends_on"));
    let mut bad = first_run_discovery();
    bad["tasks"][2]["position"] = json!(1);
    let e = app.refused(C::DraftProcedure, team.s4, bad).await;
    assert_eq!(e.field.as_deref(), Some("tasks[2].position"));
    let e = app
        .refused(C::DraftProcedure, team.s4, json!({ "name": "x", "risk_level": "low", "impact": "low", "rollback_plan": "r", "tasks": [] }))
        .await;
    assert_eq!(e.field.as_deref(), Some("tasks"));
    let many: Vec<_> = (1..=1001)
        .map(|i| json!({ "name": format!("t{i}") }))
        .collect();
    let e = app
        .refused(C::DraftProcedure, team.s4, json!({ "name": "x", "risk_level": "low", "impact": "low", "rollback_plan": "r", "tasks": many }))
        .await;
    assert_eq!(e.field.as_deref(), Some("tasks"));

    // Drafts cannot execute; only System5 approves; unknown ids are not found.
    let draft = app
        .ok(C::DraftProcedure, team.s4, first_run_discovery())
        .await
        .procedure_id
        .unwrap();
    let e = app
        .refused(C::ExecuteProcedure, team.s3, json!({ "series_id": draft }))
        .await;
    assert_eq!(e.code, "invalid_state");
    let e = app
        .refused(C::ApproveProcedure, team.s4, app.approval(draft).await)
        .await;
    assert_eq!(e.code, "forbidden");
    let e = app
        .refused(
            C::ApproveProcedure,
            team.s5,
            app.approval(Uuid::now_v7()).await,
        )
        .await;
    assert_eq!(e.code, "not_found");
    let e = app
        .refused(
            C::ExecuteProcedure,
            team.s3,
            json!({ "series_id": Uuid::now_v7() }),
        )
        .await;
    assert_eq!(e.code, "not_found");
    let e = app
        .refused(
            C::RetireProcedure,
            team.s5,
            json!({ "procedure_id": draft, "reason": "x" }),
        )
        .await;
    assert_eq!(e.code, "invalid_state");
    // Reject sends the draft back; the reason is required.
    let e = app
        .refused(
            C::RejectProcedure,
            team.s5,
            json!({ "procedure_id": draft, "reason": "" }),
        )
        .await;
    assert_eq!(e.field.as_deref(), Some("reason"));
    app.ok(
        C::RejectProcedure,
        team.s5,
        json!({ "procedure_id": draft, "reason": "Too vague" }),
    )
    .await;
    app.ok(
        C::EditProcedure,
        team.s4,
        json!({ "procedure_id": draft, "description": "Clearer" }),
    )
    .await;
    app.ok(C::ApproveProcedure, team.s5, app.approval(draft).await)
        .await;

    // Only System3 executes; tasks belong to their assignee; readiness and run state hold.
    let e = app
        .refused(C::ExecuteProcedure, team.s4, json!({ "series_id": draft }))
        .await;
    assert_eq!(e.code, "forbidden");
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": draft }))
        .await;
    let first = run.task_ids[0];
    let row = entity::task::Entity::find_by_id(first)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    let other = if row.assignee_system_id == team.s1a {
        team.s1b
    } else {
        team.s1a
    };
    let e = app
        .refused(C::StartTask, other, json!({ "task_id": first }))
        .await;
    assert_eq!(e.code, "forbidden");
    let e = app
        .refused(
            C::CompleteTask,
            row.assignee_system_id,
            json!({ "task_id": first, "result": "r" }),
        )
        .await;
    assert_eq!(e.code, "invalid_state");
    let e = app
        .refused(C::StartTask, team.s1a, json!({ "task_id": Uuid::now_v7() }))
        .await;
    assert_eq!(e.code, "not_found");
    let e = app
        .refused(
            C::ReviewInitiative,
            team.s3,
            json!({ "initiative_id": run.initiative_id, "outcome": "succeeded", "summary": "s" }),
        )
        .await;
    assert_eq!(e.code, "invalid_state");
    let e = app
        .refused(
            C::ReviewTask,
            team.s3,
            json!({ "task_id": first, "verdict": "approve" }),
        )
        .await;
    assert_eq!(e.code, "invalid_state");
    // Retiring the approved version blocks execution.
    app.ok(
        C::RetireProcedure,
        team.s5,
        json!({ "procedure_id": draft, "reason": "obsolete" }),
    )
    .await;
    let e = app
        .refused(C::ExecuteProcedure, team.s3, json!({ "series_id": draft }))
        .await;
    assert_eq!(e.code, "invalid_state");
    app.stop().await;
}

async fn teams_are_isolated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ours = app.register_team("ours").await;
    let theirs = app.register_team("theirs").await;
    let sop = approved_sop(&app, &ours).await;
    for (cmd, actor, payload) in [
        (
            C::ReviseProcedure,
            theirs.s4,
            json!({ "procedure_id": sop }),
        ),
        (
            C::RetireProcedure,
            theirs.s5,
            json!({ "procedure_id": sop, "reason": "mine now" }),
        ),
        (C::ExecuteProcedure, theirs.s3, json!({ "series_id": sop })),
    ] {
        let e = app.refused(cmd, actor, payload).await;
        assert_eq!(e.code, "not_found", "{cmd}");
    }
    let run = app
        .ok(C::ExecuteProcedure, ours.s3, json!({ "series_id": sop }))
        .await;
    let e = app
        .refused(
            C::StartTask,
            theirs.s1a,
            json!({ "task_id": run.task_ids[0] }),
        )
        .await;
    assert_eq!(e.code, "not_found");
    let e = app
        .refused(
            C::CancelRun,
            theirs.s3,
            json!({ "run_id": run.run_id, "reason": "x" }),
        )
        .await;
    assert_eq!(e.code, "not_found");
    // Their listeners see none of our events.
    let events = app.events().await;
    assert!(events.iter().all(|e| e.team == "ours"));
    app.stop().await;
}

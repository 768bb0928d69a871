//! System5 governs execution: an approval is of the content its approver read, and every run
//! records which content it executed.

use sea_orm::EntityTrait;
use serde_json::json;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::wire::command::CommandName as C;

on_both_databases!(an_approval_names_the_content_and_runs_record_it);

async fn an_approval_names_the_content_and_runs_record_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("governed").await;
    let drafted = app
        .ok(C::DraftProcedure, team.s4, first_run_discovery())
        .await;
    let id = drafted.procedure_id.unwrap();
    // What System5 reads, with the digest it will name.
    let read = app.approval(id).await;
    let seen = read["digest"].as_str().unwrap().to_owned();
    assert_eq!(drafted.digest.as_deref(), Some(seen.as_str()));

    // System4 changes the draft after System5 read it: the approval no longer covers it.
    let edited = app
        .ok(
            C::EditProcedure,
            team.s4,
            json!({ "procedure_id": id, "rollback_plan": "Nothing to undo." }),
        )
        .await;
    let current = edited.digest.unwrap();
    assert_ne!(current, seen);
    let e = app.refused(C::ApproveProcedure, team.s5, read).await;
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        ("conflict", Some("digest"))
    );
    assert!(
        e.message.contains(&seen) && e.message.contains(&current),
        "{}",
        e.message
    );
    let still = entity::procedure::Entity::find_by_id(id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, entity::enums::ProcedureStatus::Draft);

    // Read again, approved; the run, its initiative, its tasks and its review carry the digest.
    let approved = app
        .ok(C::ApproveProcedure, team.s5, app.approval(id).await)
        .await;
    assert_eq!(approved.digest.as_deref(), Some(current.as_str()));
    let run = app
        .ok(C::ExecuteProcedure, team.s3, json!({ "series_id": id }))
        .await;
    assert_eq!(run.digest.as_deref(), Some(current.as_str()));
    let events = app.events().await;
    let of_run: Vec<_> = events
        .iter()
        .filter(|e| !e.kind.starts_with("procedure."))
        .collect();
    assert!(!of_run.is_empty());
    for e in of_run {
        assert_eq!(e.data["procedure_digest"], current.as_str(), "{}", e.kind);
    }
    let version = events
        .iter()
        .find(|e| e.kind == "procedure.approved")
        .unwrap();
    assert_eq!(version.data["procedure"]["digest"], current.as_str());
}

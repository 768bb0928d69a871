//! The schema backs the version invariants by itself, whatever the code above it does:
//! `(series, version)` is unique, and a series has at most one draft and one approved version.

use chrono::Utc;
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::domain::ids::*;
use vsm_sop::domain::procedure::*;
use vsm_sop::store;

on_both_databases!(the_database_refuses_duplicate_versions_and_second_approved_or_draft_versions);

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

//! Fixtures for the domain's unit tests: one team, its systems, and the "First Run Discovery"
//! SOP from the original system.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::error::DomainError;
use super::event::Event;
use super::ids::*;
use super::procedure::*;
use super::run::{Execution, NewRunIds, RunTerms};
use super::system::{Actor, SystemKind};
use super::template::{TemplateDraft, Templates};

pub fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
}

pub fn pid(n: u128) -> ProcedureId {
    ProcedureId(Uuid::from_u128(n))
}

pub fn team() -> TeamId {
    TeamId(Uuid::from_u128(100))
}

fn system(n: u128, kind: SystemKind, team: TeamId, name: &str) -> Actor {
    Actor {
        id: SystemId(Uuid::from_u128(n)),
        team_id: team,
        kind,
        name: name.into(),
        skills: vec![],
        public_key: None,
    }
}

pub fn system1(n: u128) -> Actor {
    system(
        200 + n,
        SystemKind::System1,
        team(),
        &format!("System1/worker-{n}"),
    )
}
pub fn system3() -> Actor {
    system(303, SystemKind::System3, team(), "System3/root")
}
pub fn system4() -> Actor {
    system(304, SystemKind::System4, team(), "System4/root")
}
pub fn system5() -> Actor {
    system(305, SystemKind::System5, team(), "System5/root")
}
pub fn other_team(kind: SystemKind) -> Actor {
    system(999, kind, TeamId(Uuid::from_u128(101)), "intruder")
}

pub fn the_team() -> Vec<Actor> {
    vec![system1(1), system1(2), system3(), system4(), system5()]
}

pub fn meta() -> ProcedureMeta {
    ProcedureMeta::parse(MetaDraft {
        name: "First Run Discovery".into(),
        description: "Discover who the user is and what they need.".into(),
        risk_level: "low".into(),
        impact: "high".into(),
        rollback_plan: "Revert to prior purpose/strategy and re-interview the user.".into(),
    })
    .unwrap()
}

/// The digest of every version the helpers here make (`meta()`, `first_run_discovery()`).
pub fn digest() -> String {
    Digest::of(&meta(), &first_run_discovery()).to_string()
}

/// Version `new` of `s`, revised from version `base` by System4 at `t(at)`, with the content
/// of the other helpers.
pub fn revise(s: &Series, base: u128, new: u128, at: i64) -> Result<Procedure, DomainError> {
    s.revise(
        pid(base),
        meta(),
        &first_run_discovery(),
        pid(new),
        &system4(),
        t(at),
    )
    .map(|(p, _)| p)
}

pub fn draft_v1() -> Procedure {
    Procedure::draft(pid(1), meta(), &first_run_discovery(), &system4(), t(0))
        .unwrap()
        .0
}

pub fn approved_series() -> Series {
    let mut s = Series::new(vec![draft_v1()]).unwrap();
    s.approve(pid(1), &digest(), &system5(), t(1)).unwrap();
    s
}

/// Six sequential tasks, each depending on the one before.
pub fn first_run_discovery() -> Templates {
    let names = [
        "Collect user identity and links",
        "Collect user documents and sources",
        "Analyse documents for needs and active work",
        "Prepare a discovery interview plan",
        "Conduct the interview",
        "Propose initial purpose and strategy",
    ];
    Templates::parse(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| TemplateDraft {
                position: Some(i as u32 + 1),
                name: (*name).into(),
                depends_on: if i == 0 { vec![] } else { vec![i as u32] },
                ..Default::default()
            })
            .collect(),
    )
    .unwrap()
}

pub fn run_ids(n: usize) -> NewRunIds {
    NewRunIds {
        run: RunId(Uuid::from_u128(500)),
        initiative: InitiativeId(Uuid::from_u128(600)),
        tasks: (0..n)
            .map(|i| TaskId(Uuid::from_u128(700 + i as u128)))
            .collect(),
    }
}

pub fn execute(templates: &Templates) -> (Execution, Vec<Event>) {
    execute_with(templates, RunTerms::default())
}

pub fn execute_with(templates: &Templates, terms: RunTerms) -> (Execution, Vec<Event>) {
    let series = approved_series();
    let approved = series.executable(&system3(), None).unwrap();
    Execution::materialise(
        approved,
        templates,
        &the_team(),
        run_ids(templates.len()),
        terms,
        &system3(),
        t(10),
    )
    .unwrap()
}

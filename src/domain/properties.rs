//! Property tests: random sequences of commands — any actor, any order, repeated — against the
//! domain core. Whatever happens, the invariants hold and a refused command changes nothing.

use proptest::prelude::*;

use super::error::DomainError;
use super::ids::*;
use super::procedure::*;
use super::run::*;
use super::system::{Actor, SystemKind};
use super::testing::*;

fn actor(n: u8) -> Actor {
    match n % 6 {
        0 => system1(1),
        1 => system1(2),
        2 => system3(),
        3 => system4(),
        4 => system5(),
        _ => other_team(SystemKind::System5),
    }
}

#[derive(Debug, Clone)]
enum SeriesOp {
    Revise(u8),
    Edit(u8),
    Discard(u8),
    Approve(u8),
    Reject(u8),
    Retire(u8),
}

fn series_op() -> impl Strategy<Value = (SeriesOp, u8)> {
    let op = prop_oneof![
        any::<u8>().prop_map(SeriesOp::Revise),
        any::<u8>().prop_map(SeriesOp::Edit),
        any::<u8>().prop_map(SeriesOp::Discard),
        any::<u8>().prop_map(SeriesOp::Approve),
        any::<u8>().prop_map(SeriesOp::Reject),
        any::<u8>().prop_map(SeriesOp::Retire),
    ];
    (op, any::<u8>())
}

/// Applies one operation as the application would; `Err` leaves `series` as it was.
fn apply(series: &mut Series, op: &SeriesOp, who: &Actor, step: i64) -> Result<(), DomainError> {
    let pick = |i: &u8, s: &Series| s.versions()[*i as usize % s.versions().len()].id;
    let mut next = series.clone();
    match op {
        SeriesOp::Revise(i) => {
            let base = pick(i, &next);
            let id = ProcedureId(uuid::Uuid::from_u128(10_000 + step as u128));
            let (new, _) = next.revise(base, meta(), &first_run_discovery(), id, who, t(step))?;
            let mut all = next.versions().to_vec();
            all.push(new);
            next = Series::new(all).expect("not empty");
        }
        SeriesOp::Edit(i) => {
            let id = pick(i, &next);
            next.get_mut(id).expect("picked").edit(
                meta(),
                &first_run_discovery(),
                false,
                who,
                t(step),
            )?;
        }
        SeriesOp::Discard(i) => {
            let id = pick(i, &next);
            next.get_mut(id)
                .expect("picked")
                .discard("x".into(), who, t(step))?;
        }
        SeriesOp::Approve(i) => {
            let id = pick(i, &next);
            next.approve(id, &digest(), who, t(step))?;
        }
        SeriesOp::Reject(i) => {
            let id = pick(i, &next);
            next.get_mut(id)
                .expect("picked")
                .reject("x".into(), who, t(step))?;
        }
        SeriesOp::Retire(i) => {
            let id = pick(i, &next);
            next.get_mut(id)
                .expect("picked")
                .retire("x".into(), who, t(step))?;
        }
    }
    *series = next;
    Ok(())
}

fn check_series(s: &Series) {
    let versions: Vec<u32> = s.versions().iter().map(|p| p.version.0).collect();
    let expected: Vec<u32> = (1..=versions.len() as u32).collect();
    assert_eq!(
        versions, expected,
        "versions are 1, 2, 3, … with no gap or repeat"
    );
    let count = |st: ProcedureStatus| s.versions().iter().filter(|p| p.status() == st).count();
    assert!(
        count(ProcedureStatus::Approved) <= 1,
        "at most one approved version"
    );
    assert!(count(ProcedureStatus::Draft) <= 1, "at most one draft");
    if let Some(draft) = s
        .versions()
        .iter()
        .find(|p| p.status() == ProcedureStatus::Draft)
    {
        assert_eq!(draft.id, s.latest().id, "the draft is the latest version");
    }
    for p in s.versions() {
        if let ProcedureState::Approved(a) = &p.state {
            assert_eq!(a.by, system5().id, "only System5 of the team approves");
        }
    }
}

#[derive(Debug, Clone)]
enum RunOp {
    Start(u8),
    Complete(u8),
    Block(u8),
    Unblock(u8),
    Review(u8, bool),
    Cancel(u8),
    Replace(u8),
    CancelRun,
    ApproveRun,
    RejectRun,
    PauseRun,
    ResumeRun,
}

fn run_op() -> impl Strategy<Value = (RunOp, u8)> {
    let op = prop_oneof![
        4 => any::<u8>().prop_map(RunOp::Start),
        4 => any::<u8>().prop_map(RunOp::Complete),
        1 => any::<u8>().prop_map(RunOp::Block),
        1 => any::<u8>().prop_map(RunOp::Unblock),
        4 => (any::<u8>(), any::<bool>()).prop_map(|(i, ok)| RunOp::Review(i, ok)),
        1 => any::<u8>().prop_map(RunOp::Cancel),
        1 => any::<u8>().prop_map(RunOp::Replace),
        1 => Just(RunOp::CancelRun),
        2 => Just(RunOp::ApproveRun),
        1 => Just(RunOp::RejectRun),
        1 => Just(RunOp::PauseRun),
        2 => Just(RunOp::ResumeRun),
    ];
    // Actors: mostly the task's assignee, so that sequences get somewhere.
    (op, any::<u8>())
}

fn apply_run(run: &mut Execution, op: &RunOp, who_pick: u8, step: i64) -> Result<(), DomainError> {
    let n = run.tasks.len();
    let task = |i: &u8| run.tasks[*i as usize % n].clone();
    let who = |t: &Task| {
        if who_pick.is_multiple_of(4) {
            actor(who_pick)
        } else if matches!(
            op,
            RunOp::Review(..)
                | RunOp::Cancel(_)
                | RunOp::Replace(_)
                | RunOp::CancelRun
                | RunOp::PauseRun
                | RunOp::ResumeRun
        ) {
            system3()
        } else if matches!(op, RunOp::ApproveRun | RunOp::RejectRun) {
            system5()
        } else {
            the_team()
                .into_iter()
                .find(|s| s.id == t.assignee)
                .expect("assignee")
        }
    };
    let mut next = run.clone();
    let now = t(step);
    match op {
        RunOp::Start(i) => {
            let t = task(i);
            next.start_task(t.id, &who(&t), now)?;
        }
        RunOp::Complete(i) => {
            let t = task(i);
            next.complete_task(t.id, "r".into(), &who(&t), now)?;
        }
        RunOp::Block(i) => {
            let t = task(i);
            next.block_task(t.id, "b".into(), &who(&t), now)?;
        }
        RunOp::Unblock(i) => {
            let t = task(i);
            next.unblock_task(t.id, None, &who(&t), now)?;
        }
        RunOp::Review(i, approve) => {
            let t = task(i);
            let verdict = if *approve {
                Verdict::Approve
            } else {
                Verdict::Reject
            };
            next.review_task(t.id, verdict, "v".into(), &who(&t), now)?;
        }
        RunOp::Cancel(i) => {
            let t = task(i);
            next.cancel_task(t.id, "c".into(), &who(&t), now)?;
        }
        RunOp::Replace(i) => {
            let t = task(i);
            let id = TaskId(uuid::Uuid::from_u128(50_000 + step as u128));
            next.replace_task(
                t.id,
                id,
                TaskChange {
                    reason: "again".into(),
                    ..Default::default()
                },
                &who(&t),
                now,
            )?;
        }
        RunOp::CancelRun => {
            next.cancel("stop".into(), &who(&run.tasks[0]), now)?;
        }
        RunOp::ApproveRun => {
            next.approve(None, &who(&run.tasks[0]), now)?;
        }
        RunOp::RejectRun => {
            next.reject("no".into(), &who(&run.tasks[0]), now)?;
        }
        RunOp::PauseRun => {
            next.pause("wait".into(), &who(&run.tasks[0]), now)?;
        }
        RunOp::ResumeRun => {
            next.resume(None, &who(&run.tasks[0]), now)?;
        }
    }
    *run = next;
    Ok(())
}

/// Whether the rules may move a run from `from` to `to` (RUN_MOVES).
fn declared(from: Option<RunStatus>, to: RunStatus) -> bool {
    RUN_MOVES.iter().any(|(f, t, _)| *f == from && *t == to)
}

fn check_run(run: &Execution) {
    let by_id = |id: &TaskId| run.task(*id).expect("dependency is a task of the run");
    for t in &run.tasks {
        let deps_approved = t
            .depends_on
            .iter()
            .all(|d| by_id(d).status == TaskStatus::Approved);
        match t.status {
            TaskStatus::Pending => match run.status {
                RunStatus::AwaitingApproval => assert!(!t.ready, "nothing ready before approval"),
                // Nothing is ready while paused; resuming makes ready what may start.
                RunStatus::Paused => assert!(!t.ready, "nothing ready while paused"),
                _ => assert_eq!(t.ready, deps_approved, "ready ⇔ dependencies approved"),
            },
            TaskStatus::InProgress
            | TaskStatus::Completed
            | TaskStatus::Approved
            | TaskStatus::Rejected => {
                assert!(
                    deps_approved,
                    "work only starts once dependencies are approved"
                )
            }
            _ => {}
        }
        if let Some(new) = t.follow_up {
            assert_eq!(
                t.status,
                TaskStatus::Canceled,
                "a replaced task is canceled"
            );
            assert_eq!(by_id(&new).replaces, Some(t.id));
        }
    }
    let all_terminal = run.tasks.iter().all(|t| t.status.is_terminal());
    let lost = run
        .tasks
        .iter()
        .any(|t| t.status == TaskStatus::Canceled && t.follow_up.is_none());
    match run.status {
        RunStatus::AwaitingApproval => {
            assert!(
                run.tasks
                    .iter()
                    .all(|t| t.status == TaskStatus::Pending && !t.ready),
                "a run awaiting approval has no work begun or ready"
            );
            assert!(run.approval.as_ref().is_some_and(|a| a.decision.is_none()));
            assert!(run.completed_at.is_none());
        }
        RunStatus::Started | RunStatus::Paused => {
            assert!(!all_terminal, "a started or paused run has open work");
            assert!(run.completed_at.is_none());
        }
        RunStatus::Completed => assert!(all_terminal && !lost && run.completed_at.is_some()),
        RunStatus::Failed => assert!(all_terminal && lost && run.completed_at.is_some()),
        RunStatus::Canceled => assert!(all_terminal && run.completed_at.is_some()),
    }
    let ended = !run.status.is_open();
    assert_eq!(
        ended,
        matches!(
            run.initiative.status,
            InitiativeStatus::Completed | InitiativeStatus::Canceled
        ),
        "the initiative ends with its run"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn series_invariants_hold_under_any_command_sequence(ops in proptest::collection::vec(series_op(), 1..60)) {
        let mut series = Series::new(vec![draft_v1()]).expect("one version");
        for (step, (op, who)) in ops.iter().enumerate() {
            let before = series.clone();
            if apply(&mut series, op, &actor(*who), step as i64 + 1).is_err() {
                prop_assert_eq!(&series, &before, "a refused command changes nothing");
            }
            check_series(&series);
        }
    }

    #[test]
    fn run_invariants_hold_under_any_command_sequence(
        held in any::<bool>(),
        ops in proptest::collection::vec(run_op(), 1..120),
    ) {
        let terms = RunTerms {
            approval_rule: held.then(|| "gate".to_owned()),
            ..RunTerms::default()
        };
        let (mut run, _) = execute_with(&first_run_discovery(), terms);
        prop_assert!(declared(None, run.status));
        for (step, (op, who)) in ops.iter().enumerate() {
            let before = run.clone();
            if apply_run(&mut run, op, *who, step as i64 + 20).is_err() {
                prop_assert_eq!(&run, &before, "a refused command changes nothing");
            }
            check_run(&run);
            if run.status != before.status {
                prop_assert!(
                    declared(Some(before.status), run.status),
                    "{:?} → {:?} is a declared move", before.status, run.status
                );
            }
        }
    }
}

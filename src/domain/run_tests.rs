//! Given/when/then tests of runs: materialisation, task lifecycle, readiness, derived status,
//! post-run review.

use super::error::DomainError;
use super::event::{EventData, EventKind};
use super::ids::*;
use super::review::ReviewDraft;
use super::run::*;
use super::system::SystemKind;
use super::template::{TemplateDraft, Templates};
use super::testing::*;

fn kinds(events: &[super::event::Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// Starts, completes and approves one task as its assignee and System3.
fn work(run: &mut Execution, id: TaskId, at: i64) -> Vec<super::event::Event> {
    let assignee = run.task(id).unwrap().assignee;
    let worker = the_team().into_iter().find(|s| s.id == assignee).unwrap();
    let mut events = run.start_task(id, &worker, t(at)).unwrap();
    events.extend(
        run.complete_task(id, "done".into(), &worker, t(at))
            .unwrap(),
    );
    events.extend(
        run.review_task(id, Verdict::Approve, "good".into(), &system3(), t(at))
            .unwrap(),
    );
    events
}

#[test]
fn execute_materialises_initiative_and_tasks_referencing_procedure_and_version() {
    let (run, events) = execute(&first_run_discovery());
    assert_eq!(run.tasks.len(), 6);
    assert_eq!(run.provenance.procedure_id, pid(1));
    assert_eq!(run.provenance.procedure_version, Version(1));
    assert_eq!(run.status, RunStatus::Started);
    assert_eq!(run.initiative.status, InitiativeStatus::Pending);
    assert_eq!(run.initiative.name, "First Run Discovery");
    let positions: Vec<u32> = run.tasks.iter().map(|t| t.position).collect();
    assert_eq!(positions, vec![1, 2, 3, 4, 5, 6]);
    for pair in run.tasks.windows(2) {
        assert_eq!(pair[1].depends_on, vec![pair[0].id]);
    }
    assert_eq!(
        kinds(&events),
        [
            vec!["run.started", "initiative.created"],
            vec!["task.created"; 6],
            vec!["task.ready"],
        ]
        .concat()
    );
    let EventData::Task(ready) = &events[8].data else {
        panic!("task.ready carries a task")
    };
    assert_eq!(ready.position, 1);
    assert_eq!(ready.provenance.procedure_id, pid(1));
}

#[test]
fn system1_tasks_are_spread_over_the_team_s_system1s() {
    let (run, _) = execute(&first_run_discovery());
    let first = run
        .tasks
        .iter()
        .filter(|t| t.assignee == system1(1).id)
        .count();
    let second = run
        .tasks
        .iter()
        .filter(|t| t.assignee == system1(2).id)
        .count();
    assert_eq!((first, second), (3, 3));
    assert!(
        run.tasks
            .iter()
            .all(|t| t.assignee_type == SystemKind::System1)
    );
}

#[test]
fn required_skills_and_default_assignee_types_pick_the_assignee() {
    let templates = Templates::parse(vec![
        TemplateDraft {
            name: "interview".into(),
            required_skills: vec!["interviewing".into()],
            ..Default::default()
        },
        TemplateDraft {
            name: "coordinate".into(),
            default_assignee_type: Some("system3".into()),
            ..Default::default()
        },
    ])
    .unwrap();
    let mut team = the_team();
    team[1].skills = vec!["interviewing".into()];
    let series = approved_series();
    let (run, _) = Execution::materialise(
        series.executable(&system3(), None).unwrap(),
        &templates,
        &team,
        run_ids(2),
        RunTerms::default(),
        &system3(),
        t(1),
    )
    .unwrap();
    assert_eq!(run.tasks[0].assignee, system1(2).id);
    assert_eq!(run.tasks[1].assignee, system3().id);
}

#[test]
fn a_team_without_a_system_of_the_needed_type_cannot_execute() {
    let templates = Templates::parse(vec![TemplateDraft {
        name: "coordinate".into(),
        default_assignee_type: Some("system2".into()),
        ..Default::default()
    }])
    .unwrap();
    let series = approved_series();
    let err = Execution::materialise(
        series.executable(&system3(), None).unwrap(),
        &templates,
        &the_team(),
        run_ids(1),
        RunTerms::default(),
        &system3(),
        t(1),
    )
    .unwrap_err();
    assert_eq!(
        err,
        DomainError::NoAssignee {
            kind: SystemKind::System2,
            position: 1
        }
    );
}

#[test]
fn a_task_is_not_ready_until_its_dependency_is_approved() {
    let (mut run, _) = execute(&first_run_discovery());
    let second = run.tasks[1].clone();
    let worker = the_team()
        .into_iter()
        .find(|s| s.id == second.assignee)
        .unwrap();
    let err = run.start_task(second.id, &worker, t(11)).unwrap_err();
    assert_eq!(
        err,
        DomainError::NotReady {
            task: second.id,
            waiting_on: vec![run.tasks[0].id]
        }
    );
    let first = run.tasks[0].id;
    let events = work(&mut run, first, 12);
    assert_eq!(
        kinds(&events),
        vec![
            "task.started",
            "initiative.started",
            "task.completed",
            "task.approved",
            "task.ready"
        ]
    );
    assert!(run.tasks[1].ready);
    run.start_task(second.id, &worker, t(13)).unwrap();
}

#[test]
fn only_the_assignee_works_a_task() {
    let (mut run, _) = execute(&first_run_discovery());
    let first = run.tasks[0].clone();
    let other = the_team()
        .into_iter()
        .find(|s| s.kind == SystemKind::System1 && s.id != first.assignee)
        .unwrap();
    assert!(matches!(
        run.start_task(first.id, &other, t(11)).unwrap_err(),
        DomainError::NotAssignee { .. }
    ));
    assert!(matches!(
        run.start_task(first.id, &other_team(SystemKind::System1), t(11))
            .unwrap_err(),
        DomainError::WrongTeam { .. }
    ));
}

#[test]
fn task_lifecycle_follows_the_state_machine() {
    let (mut run, _) = execute(&first_run_discovery());
    let first = run.tasks[0].clone();
    let worker = the_team()
        .into_iter()
        .find(|s| s.id == first.assignee)
        .unwrap();
    // pending → completed is not a transition
    assert!(matches!(
        run.complete_task(first.id, "r".into(), &worker, t(1))
            .unwrap_err(),
        DomainError::InvalidTransition {
            action: "complete",
            ..
        }
    ));
    run.start_task(first.id, &worker, t(2)).unwrap();
    run.block_task(first.id, "waiting on user".into(), &worker, t(3))
        .unwrap();
    assert_eq!(run.tasks[0].status, TaskStatus::Blocked);
    run.unblock_task(first.id, None, &system3(), t(4)).unwrap();
    assert_eq!(run.tasks[0].status, TaskStatus::Pending);
    run.start_task(first.id, &worker, t(5)).unwrap();
    run.complete_task(first.id, "links collected".into(), &worker, t(6))
        .unwrap();
    // only System3 reviews
    assert!(matches!(
        run.review_task(first.id, Verdict::Approve, "".into(), &worker, t(7))
            .unwrap_err(),
        DomainError::WrongSystem { .. }
    ));
    run.review_task(first.id, Verdict::Approve, "ok".into(), &system3(), t(7))
        .unwrap();
    assert_eq!(run.tasks[0].status, TaskStatus::Approved);
    // approved is terminal
    assert!(
        run.cancel_task(first.id, "x".into(), &system3(), t(8))
            .is_err()
    );
}

#[test]
fn the_run_completes_when_every_task_is_approved() {
    let (mut run, _) = execute(&first_run_discovery());
    let ids: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();
    let mut last = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        last = work(&mut run, id, 20 + i as i64);
    }
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.completed_at, Some(t(25)));
    assert_eq!(run.initiative.status, InitiativeStatus::Completed);
    assert_eq!(
        kinds(&last[last.len() - 2..]),
        vec!["initiative.completed", "run.completed"]
    );
}

#[test]
fn a_rejected_task_replaced_and_approved_still_completes_the_run() {
    let (mut run, _) = execute(&first_run_discovery());
    let first = run.tasks[0].clone();
    let worker = the_team()
        .into_iter()
        .find(|s| s.id == first.assignee)
        .unwrap();
    run.start_task(first.id, &worker, t(1)).unwrap();
    run.complete_task(first.id, "half".into(), &worker, t(2))
        .unwrap();
    run.review_task(
        first.id,
        Verdict::Reject,
        "missing links".into(),
        &system3(),
        t(3),
    )
    .unwrap();
    let new_id = TaskId(uuid::Uuid::from_u128(9000));
    let events = run
        .replace_task(
            first.id,
            new_id,
            TaskChange {
                reason: "redo with links".into(),
                ..Default::default()
            },
            &system3(),
            t(4),
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        vec!["task.canceled", "task.created", "task.ready"]
    );
    assert_eq!(run.task(first.id).unwrap().follow_up, Some(new_id));
    assert_eq!(run.task(new_id).unwrap().replaces, Some(first.id));
    assert_eq!(run.tasks[1].depends_on, vec![new_id]);
    let rest: Vec<TaskId> = std::iter::once(new_id)
        .chain(run.tasks[1..6].iter().map(|t| t.id))
        .collect();
    for (i, id) in rest.into_iter().enumerate() {
        work(&mut run, id, 10 + i as i64);
    }
    assert_eq!(run.status, RunStatus::Completed);
}

#[test]
fn canceling_a_task_cancels_its_dependents_and_fails_the_run() {
    let (mut run, _) = execute(&first_run_discovery());
    let first = run.tasks[0].id;
    work(&mut run, first, 1);
    let fourth = run.tasks[3].id;
    let events = run
        .cancel_task(fourth, "not needed".into(), &system3(), t(2))
        .unwrap();
    assert_eq!(
        kinds(&events),
        vec!["task.canceled", "task.canceled", "task.canceled"]
    );
    for id in [run.tasks[1].id, run.tasks[2].id] {
        work(&mut run, id, 3);
    }
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.completed_at.is_some());
}

#[test]
fn canceling_the_run_cancels_open_tasks_and_refuses_further_work() {
    let (mut run, _) = execute(&first_run_discovery());
    let events = run
        .cancel("priorities changed".into(), &system3(), t(5))
        .unwrap();
    assert_eq!(events.len(), 8);
    assert_eq!(events.last().unwrap().kind, EventKind::RunCanceled);
    assert_eq!(run.status, RunStatus::Canceled);
    assert_eq!(run.initiative.status, InitiativeStatus::Canceled);
    let worker = the_team()
        .into_iter()
        .find(|s| s.id == run.tasks[0].assignee)
        .unwrap();
    let first = run.tasks[0].id;
    assert!(run.start_task(first, &worker, t(6)).is_err());
    assert!(run.cancel("again".into(), &system3(), t(7)).is_err());
}

#[test]
fn the_post_run_review_is_recorded_once_for_an_ended_run_with_procedure_context() {
    let (mut run, _) = execute(&first_run_discovery());
    let draft = ReviewDraft {
        outcome: "succeeded".into(),
        summary: "went well".into(),
        lessons: vec!["ask for documents first".into()],
        follow_ups: vec![],
    };
    assert!(matches!(
        run.record_review(
            ReviewId(uuid::Uuid::from_u128(1)),
            draft.clone(),
            &system3(),
            t(1)
        )
        .unwrap_err(),
        DomainError::RunNotEnded { .. }
    ));
    let ids: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();
    for id in ids {
        work(&mut run, id, 2);
    }
    assert!(matches!(
        run.record_review(
            ReviewId(uuid::Uuid::from_u128(1)),
            draft.clone(),
            &system4(),
            t(3)
        )
        .unwrap_err(),
        DomainError::WrongSystem { .. }
    ));
    let (review, event) = run
        .record_review(
            ReviewId(uuid::Uuid::from_u128(1)),
            draft.clone(),
            &system3(),
            t(3),
        )
        .unwrap();
    assert_eq!(event.kind, EventKind::InitiativeReviewed);
    assert_eq!(review.view.provenance.procedure_version, Version(1));
    assert_eq!(
        review.view.context.rollback_plan,
        run.procedure.rollback_plan
    );
    assert_eq!(review.view.context.tasks.len(), 6);
    assert!(
        review
            .view
            .context
            .tasks
            .iter()
            .all(|t| t.status == "approved")
    );
    assert_eq!(
        run.record_review(ReviewId(uuid::Uuid::from_u128(2)), draft, &system3(), t(4))
            .unwrap_err(),
        DomainError::AlreadyReviewed
    );
}

#[test]
fn review_outcome_must_be_from_the_enumeration() {
    let (mut run, _) = execute(&first_run_discovery());
    run.cancel("stop".into(), &system3(), t(1)).unwrap();
    let err = run
        .record_review(
            ReviewId(uuid::Uuid::from_u128(1)),
            ReviewDraft {
                outcome: "great".into(),
                summary: "s".into(),
                ..Default::default()
            },
            &system3(),
            t(2),
        )
        .unwrap_err();
    assert_eq!(err.field(), Some("outcome"));
}

#[test]
fn a_run_stops_growing_at_its_task_limit() {
    let (mut run, _) = execute(&first_run_discovery());
    let mut current = run.tasks[0].id;
    let mut n = 0u128;
    let refused = loop {
        let assignee = run.task(current).unwrap().assignee;
        let worker = the_team().into_iter().find(|s| s.id == assignee).unwrap();
        run.start_task(current, &worker, t(1)).unwrap();
        run.block_task(current, "stuck".into(), &worker, t(2))
            .unwrap();
        n += 1;
        let next = TaskId(uuid::Uuid::from_u128(10_000 + n));
        let change = TaskChange {
            reason: "again".into(),
            ..Default::default()
        };
        match run.replace_task(current, next, change, &system3(), t(3)) {
            Ok(_) => current = next,
            Err(e) => break e,
        }
    };
    assert_eq!(
        refused,
        DomainError::RunFull {
            limit: MAX_RUN_TASKS
        }
    );
    assert_eq!(refused.code().as_str(), "invalid_state");
    assert_eq!(run.tasks.len(), MAX_RUN_TASKS);
}

fn held() -> (Execution, Vec<super::event::Event>) {
    let terms = RunTerms {
        approval_rule: Some("risky".into()),
        ..RunTerms::default()
    };
    execute_with(&first_run_discovery(), terms)
}

#[test]
fn a_held_run_has_its_tasks_but_none_ready_until_system5_approves() {
    let (mut run, events) = held();
    assert_eq!(run.status, RunStatus::AwaitingApproval);
    assert!(run.tasks.iter().all(|t| !t.ready));
    assert_eq!(
        kinds(&events),
        [
            vec!["run.awaiting_approval", "initiative.created"],
            vec!["task.created"; 6]
        ]
        .concat()
    );
    let first = run.tasks[0].clone();
    let worker = the_team()
        .into_iter()
        .find(|s| s.id == first.assignee)
        .unwrap();
    let before = run.clone();
    let refused = run.start_task(first.id, &worker, t(11)).unwrap_err();
    assert!(
        matches!(&refused, DomainError::InvalidTransition { status, .. } if status == "awaiting_approval"),
        "{refused:?}"
    );
    assert!(matches!(
        run.approve(None, &system3(), t(11)).unwrap_err(),
        DomainError::WrongSystem { .. }
    ));
    assert_eq!(run, before, "refusals change nothing");

    let events = run
        .approve(Some("rollback checked".into()), &system5(), t(12))
        .unwrap();
    assert_eq!(kinds(&events), ["run.approved", "task.ready"]);
    assert_eq!(run.status, RunStatus::Started);
    assert!(run.tasks[0].ready);
    let decision = run.approval.as_ref().unwrap().decision.as_ref().unwrap();
    assert_eq!(
        (decision.verdict, decision.by, decision.note.as_deref()),
        (Verdict::Approve, system5().id, Some("rollback checked"))
    );
    let view = run.run_view().approval.unwrap();
    assert_eq!(view.rule, "risky");
    assert_eq!(view.decided_at, Some(t(12)));
    assert!(matches!(
        run.approve(None, &system5(), t(13)).unwrap_err(),
        DomainError::InvalidTransition { .. }
    ));
    work(&mut run, first.id, 14);
}

#[test]
fn a_rejected_run_ends_canceled_with_the_reason_and_can_be_reviewed() {
    let (mut run, _) = held();
    let events = run
        .reject("not this week".into(), &system5(), t(12))
        .unwrap();
    assert_eq!(
        kinds(&events),
        [
            vec!["task.canceled"; 6],
            vec!["initiative.canceled", "run.rejected"]
        ]
        .concat()
    );
    assert_eq!(run.status, RunStatus::Canceled);
    assert_eq!(run.reason.as_deref(), Some("not this week"));
    assert_eq!(
        run.tasks[0].reasoning.as_deref(),
        Some("run rejected: not this week")
    );
    assert_eq!(
        run.approval
            .as_ref()
            .unwrap()
            .decision
            .as_ref()
            .unwrap()
            .verdict,
        Verdict::Reject
    );
    let review = ReviewDraft {
        outcome: "failed".into(),
        summary: "rejected before it started".into(),
        lessons: vec![],
        follow_ups: vec![],
    };
    run.record_review(
        ReviewId(uuid::Uuid::from_u128(9)),
        review,
        &system3(),
        t(13),
    )
    .unwrap();
}

#[test]
fn system3_may_withdraw_a_held_run_and_an_unheld_run_needs_no_approval() {
    let (mut run, _) = held();
    let events = run
        .cancel("no longer needed".into(), &system3(), t(12))
        .unwrap();
    assert_eq!(kinds(&events).last(), Some(&"run.canceled"));
    assert_eq!(run.status, RunStatus::Canceled);
    assert!(run.approval.as_ref().unwrap().decision.is_none());

    let (mut free, _) = execute(&first_run_discovery());
    assert!(free.approval.is_none());
    assert!(matches!(
        free.approve(None, &system5(), t(12)).unwrap_err(),
        DomainError::InvalidTransition { .. }
    ));
}

#[test]
fn a_paused_run_lets_started_work_finish_and_readies_the_rest_on_resume() {
    let (mut run, _) = execute(&first_run_discovery());
    let (first, second) = (run.tasks[0].id, run.tasks[1].id);
    let worker = |run: &Execution, id: TaskId| {
        let assignee = run.task(id).unwrap().assignee;
        the_team().into_iter().find(|s| s.id == assignee).unwrap()
    };
    let w = worker(&run, first);
    assert!(matches!(
        run.pause("budget".into(), &w, t(10)).unwrap_err(),
        DomainError::WrongSystem { .. }
    ));
    let events = run.pause("budget".into(), &system3(), t(10)).unwrap();
    assert_eq!(kinds(&events), vec!["run.paused"]);
    assert!(
        !run.task(first).unwrap().ready,
        "nothing is ready while paused"
    );
    assert_eq!(
        (run.status, run.reason.as_deref()),
        (RunStatus::Paused, Some("budget"))
    );
    assert!(run.status.is_open(), "a paused run counts as open");
    let refused = run.start_task(first, &w, t(11)).unwrap_err();
    assert!(refused.to_string().contains("paused"), "{refused}");
    assert!(run.pause("again".into(), &system3(), t(11)).is_err());

    let events = run.resume(None, &system3(), t(12)).unwrap();
    assert_eq!(kinds(&events), vec!["run.resumed", "task.ready"]);
    run.start_task(first, &w, t(13)).unwrap();
    run.pause("budget".into(), &system3(), t(13)).unwrap();
    // Work begun finishes; its approval readies nothing while paused.
    run.complete_task(first, "done".into(), &w, t(14)).unwrap();
    let events = run
        .review_task(first, Verdict::Approve, "good".into(), &system3(), t(15))
        .unwrap();
    assert_eq!(kinds(&events), vec!["task.approved"]);
    assert!(!run.task(second).unwrap().ready);

    let events = run
        .resume(Some("budget granted".into()), &system3(), t(16))
        .unwrap();
    assert_eq!(kinds(&events), vec!["run.resumed", "task.ready"]);
    let EventData::Task(ready) = &events[1].data else {
        panic!("task.ready carries a task")
    };
    assert_eq!(ready.task_id, second);
    assert_eq!(run.reason.as_deref(), Some("budget granted"));
    assert!(run.resume(None, &system3(), t(17)).is_err(), "not paused");
}

#[test]
fn a_task_blocked_across_a_pause_is_ready_again_when_unblocked() {
    let (mut run, _) = execute(&first_run_discovery());
    let first = run.tasks[0].id;
    let assignee = run.task(first).unwrap().assignee;
    let w = the_team().into_iter().find(|s| s.id == assignee).unwrap();
    run.start_task(first, &w, t(10)).unwrap();
    run.block_task(first, "waiting on access".into(), &w, t(11))
        .unwrap();
    run.pause("budget".into(), &system3(), t(12)).unwrap();
    // Unblocked while paused: pending, and not ready until the run resumes.
    let mut paused = run.clone();
    paused.unblock_task(first, None, &w, t(13)).unwrap();
    assert!(!paused.task(first).unwrap().ready);
    paused.resume(None, &system3(), t(14)).unwrap();
    assert!(paused.task(first).unwrap().ready);
    // Unblocked after the resume: ready at once, so its assignee can start it again.
    run.resume(None, &system3(), t(13)).unwrap();
    run.unblock_task(first, None, &w, t(14)).unwrap();
    assert!(run.task(first).unwrap().ready);
    run.start_task(first, &w, t(15)).unwrap();
}

#[test]
fn a_paused_run_ends_when_its_last_task_is_approved_or_it_is_canceled() {
    let (mut run, _) = execute(&first_run_discovery());
    let ids: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();
    for (i, id) in ids[..ids.len() - 1].iter().enumerate() {
        work(&mut run, *id, 10 + i as i64);
    }
    let last = *ids.last().unwrap();
    let assignee = run.task(last).unwrap().assignee;
    let w = the_team().into_iter().find(|s| s.id == assignee).unwrap();
    run.start_task(last, &w, t(20)).unwrap();
    run.pause("audit".into(), &system3(), t(20)).unwrap();
    run.complete_task(last, "done".into(), &w, t(21)).unwrap();
    let events = run
        .review_task(last, Verdict::Approve, "good".into(), &system3(), t(22))
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.reason, None, "the pause's reason ends with it");
    assert_eq!(events.last().unwrap().kind, EventKind::RunCompleted);

    let (mut run, _) = execute(&first_run_discovery());
    run.pause("audit".into(), &system3(), t(20)).unwrap();
    run.cancel("dropped".into(), &system3(), t(5)).unwrap();
    assert_eq!(run.status, RunStatus::Canceled);
}

use super::*;
use crate::domain::error::ErrorCode;
use crate::domain::testing::*;

#[test]
fn drafting_starts_version_1_of_a_new_series() {
    let (p, drafted) =
        Procedure::draft(pid(1), meta(), &first_run_discovery(), &system4(), t(0)).unwrap();
    assert_eq!(
        drafted.kind,
        crate::domain::event::EventKind::ProcedureDrafted
    );
    assert_eq!(p.version, Version(1));
    assert_eq!(p.series_id.0, p.id.0);
    assert_eq!(p.status(), ProcedureStatus::Draft);
    assert_eq!(p.created_by, system4().id);
}

#[test]
fn only_system4_drafts() {
    let err =
        Procedure::draft(pid(1), meta(), &first_run_discovery(), &system3(), t(0)).unwrap_err();
    assert!(matches!(
        err,
        DomainError::WrongSystem {
            required: SystemKind::System4,
            ..
        }
    ));
}

#[test]
fn approving_v2_retires_v1() {
    let s = approved_series();
    let v2 = revise(&s, 1, 2, 5).unwrap();
    let mut versions = s.versions().to_vec();
    versions.push(v2);
    let mut s = Series::new(versions).unwrap();
    let out = s.approve(pid(2), &digest(), &system5(), t(6)).unwrap();
    assert_eq!(out.superseded, Some(pid(1)));
    assert_eq!(s.get(pid(1)).unwrap().status(), ProcedureStatus::Retired);
    assert_eq!(s.get(pid(2)).unwrap().status(), ProcedureStatus::Approved);
    assert_eq!(s.approved().unwrap().version, Version(2));
}

#[test]
fn only_system5_approves() {
    let mut s = Series::new(vec![draft_v1()]).unwrap();
    let err = s.approve(pid(1), &digest(), &system4(), t(1)).unwrap_err();
    assert!(matches!(
        err,
        DomainError::WrongSystem {
            required: SystemKind::System5,
            ..
        }
    ));
}

#[test]
fn approving_a_procedure_of_another_team_is_refused() {
    let mut s = Series::new(vec![draft_v1()]).unwrap();
    let err = s
        .approve(pid(1), &digest(), &other_team(SystemKind::System5), t(1))
        .unwrap_err();
    assert!(matches!(err, DomainError::WrongTeam { .. }));
}

#[test]
fn an_approved_version_cannot_be_approved_again_or_edited() {
    let mut s = approved_series();
    assert!(matches!(
        s.approve(pid(1), &digest(), &system5(), t(2)).unwrap_err(),
        DomainError::InvalidTransition {
            action: "approve",
            ..
        }
    ));
    let mut v1 = s.get(pid(1)).unwrap().clone();
    assert!(matches!(
        v1.edit(meta(), &first_run_discovery(), false, &system4(), t(3))
            .unwrap_err(),
        DomainError::InvalidTransition { action: "edit", .. }
    ));
}

#[test]
fn revisions_only_from_the_latest_version() {
    let mut s = approved_series();
    let v2 = revise(&s, 1, 2, 5).unwrap();
    let mut versions = s.versions().to_vec();
    versions.push(v2);
    s = Series::new(versions).unwrap();
    s.approve(pid(2), &digest(), &system5(), t(6)).unwrap();
    let err = revise(&s, 1, 3, 7).unwrap_err();
    assert_eq!(
        err,
        DomainError::NotLatestVersion {
            requested: Version(1),
            latest: Version(2)
        }
    );
    let v3 = revise(&s, 2, 3, 7).unwrap();
    assert_eq!(v3.version, Version(3));
}

#[test]
fn a_series_has_one_open_draft_at_a_time() {
    let s = Series::new(vec![draft_v1()]).unwrap();
    let err = revise(&s, 1, 2, 1).unwrap_err();
    assert!(matches!(
        err,
        DomainError::OpenDraftExists {
            version: Version(1),
            ..
        }
    ));
}

#[test]
fn draft_and_retired_versions_cannot_execute() {
    let s = Series::new(vec![draft_v1()]).unwrap();
    assert_eq!(
        s.executable(&system3(), None).unwrap_err(),
        DomainError::NoApprovedVersion
    );
    let mut s = approved_series();
    s.get_mut(pid(1))
        .unwrap()
        .retire("obsolete".into(), &system5(), t(3))
        .unwrap();
    assert_eq!(
        s.executable(&system3(), None).unwrap_err(),
        DomainError::NoApprovedVersion
    );
}

#[test]
fn execute_takes_the_approved_version_and_checks_the_expected_one() {
    let s = approved_series();
    let ok = s.executable(&system3(), Some(Version(1))).unwrap();
    assert_eq!(ok.procedure().id, pid(1));
    assert_eq!(
        s.executable(&system3(), Some(Version(2))).unwrap_err(),
        DomainError::VersionMismatch {
            expected: Version(2),
            current: Version(1)
        }
    );
    assert!(matches!(
        s.executable(&system4(), None).unwrap_err(),
        DomainError::WrongSystem { .. }
    ));
}

#[test]
fn reject_keeps_the_draft_and_records_the_reason_until_the_next_edit() {
    let mut p = draft_v1();
    p.reject("no rollback detail".into(), &system5(), t(1))
        .unwrap();
    assert!(
        matches!(&p.state, ProcedureState::Draft { rejection: Some(r) } if r.reason == "no rollback detail")
    );
    p.edit(meta(), &first_run_discovery(), false, &system4(), t(2))
        .unwrap();
    assert_eq!(p.state, ProcedureState::Draft { rejection: None });
}

#[test]
fn a_discarded_draft_is_retired_without_approval() {
    let mut p = draft_v1();
    p.discard("duplicate".into(), &system4(), t(1)).unwrap();
    assert!(matches!(
        &p.state,
        ProcedureState::Retired { approval: None, retirement } if matches!(retirement.reason, RetireReason::Discarded { .. })
    ));
}

#[test]
fn retire_needs_an_approved_version() {
    let mut p = draft_v1();
    assert!(matches!(
        p.retire("x".into(), &system5(), t(1)).unwrap_err(),
        DomainError::InvalidTransition {
            action: "retire",
            ..
        }
    ));
}

#[test]
fn metadata_is_validated_field_by_field() {
    let mut raw = meta().to_draft();
    raw.risk_level = "extreme".into();
    assert_eq!(
        ProcedureMeta::parse(raw).unwrap_err().field(),
        Some("risk_level")
    );
    let mut raw = meta().to_draft();
    raw.impact = "huge".into();
    assert_eq!(
        ProcedureMeta::parse(raw).unwrap_err().field(),
        Some("impact")
    );
    let mut raw = meta().to_draft();
    raw.rollback_plan = "   ".into();
    assert_eq!(
        ProcedureMeta::parse(raw).unwrap_err().field(),
        Some("rollback_plan")
    );
    let mut raw = meta().to_draft();
    raw.name = "x".repeat(text::MAX_NAME + 1);
    assert_eq!(ProcedureMeta::parse(raw).unwrap_err().field(), Some("name"));
}

#[test]
fn an_approval_names_the_content_its_approver_read() {
    let read = digest();
    let mut draft = draft_v1();
    assert_eq!(draft.digest.as_str(), read);
    let mut changed = meta();
    changed.rollback_plan = "Nothing to undo.".into();
    draft
        .edit(changed, &first_run_discovery(), false, &system4(), t(1))
        .unwrap();
    assert_ne!(draft.digest.as_str(), read, "an edit changes the digest");
    let mut s = Series::new(vec![draft.clone()]).unwrap();
    let err = s.approve(pid(1), &read, &system5(), t(2)).unwrap_err();
    assert!(matches!(err, DomainError::DigestMismatch { .. }));
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(err.field(), Some("digest"));
    assert!(err.to_string().contains(draft.digest.as_str()) && err.to_string().contains(&read));
    assert_eq!(s.get(pid(1)).unwrap().status(), ProcedureStatus::Draft);
    s.approve(pid(1), draft.digest.as_str(), &system5(), t(3))
        .unwrap();
    assert_eq!(s.get(pid(1)).unwrap().status(), ProcedureStatus::Approved);
}

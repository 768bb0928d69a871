//! Procedures (SOPs): their metadata, version lifecycle and the governance rules around it.
//!
//! Invariants kept here (and backed by unique indexes in the database):
//! - a series has at most one draft, and it is always its latest version;
//! - a series has at most one approved version; approving a draft retires the previous one;
//! - approved and retired versions are never modified; a change is a new draft (latest + 1);
//! - only the approved version of a series executes ([`ApprovedProcedure`] is the only way in).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::ids::{ProcedureId, SeriesId, SystemId, TeamId, Version};
use super::system::{Actor, SystemKind};
use super::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 4] = [
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }

    pub fn parse(raw: &str) -> Result<RiskLevel, DomainError> {
        RiskLevel::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    "risk_level",
                    format!("`{raw}` is not one of low, medium, high, critical"),
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    Low,
    Medium,
    High,
}

impl Impact {
    pub const ALL: [Impact; 3] = [Impact::Low, Impact::Medium, Impact::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Impact::Low => "low",
            Impact::Medium => "medium",
            Impact::High => "high",
        }
    }

    pub fn parse(raw: &str) -> Result<Impact, DomainError> {
        Impact::ALL
            .into_iter()
            .find(|i| i.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid("impact", format!("`{raw}` is not one of low, medium, high"))
            })
    }
}

/// The descriptive and risk fields of one procedure version, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ProcedureMeta {
    pub name: String,
    pub description: String,
    pub risk_level: RiskLevel,
    pub impact: Impact,
    /// Required: how to undo what the procedure does.
    pub rollback_plan: String,
}

/// Raw metadata as it arrives, before validation.
#[derive(Debug, Clone, Default)]
pub struct MetaDraft {
    pub name: String,
    pub description: String,
    pub risk_level: String,
    pub impact: String,
    pub rollback_plan: String,
}

impl ProcedureMeta {
    pub fn parse(raw: MetaDraft) -> Result<ProcedureMeta, DomainError> {
        Ok(ProcedureMeta {
            name: text::required("name", &raw.name, text::MAX_NAME)?,
            description: text::optional("description", &raw.description, text::MAX_TEXT)?,
            risk_level: RiskLevel::parse(raw.risk_level.trim())?,
            impact: Impact::parse(raw.impact.trim())?,
            rollback_plan: text::required("rollback_plan", &raw.rollback_plan, text::MAX_TEXT)?,
        })
    }

    /// The raw form, so a partial change can be laid over the current values and re-validated.
    pub fn to_draft(&self) -> MetaDraft {
        MetaDraft {
            name: self.name.clone(),
            description: self.description.clone(),
            risk_level: self.risk_level.as_str().into(),
            impact: self.impact.as_str().into(),
            rollback_plan: self.rollback_plan.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcedureStatus {
    Draft,
    Approved,
    Retired,
}

impl ProcedureStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcedureStatus::Draft => "draft",
            ProcedureStatus::Approved => "approved",
            ProcedureStatus::Retired => "retired",
        }
    }
}

impl std::fmt::Display for ProcedureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub by: SystemId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub by: SystemId,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// Why a version stopped being executable (or, for a discarded draft, never became so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetireReason {
    /// A newer version of the series was approved.
    Superseded { by: ProcedureId },
    /// System5 retired the approved version.
    Retired { reason: String },
    /// System4 discarded the draft before approval.
    Discarded { reason: String },
}

impl RetireReason {
    pub fn describe(&self) -> String {
        match self {
            RetireReason::Superseded { by } => format!("superseded by {by}"),
            RetireReason::Retired { reason } => reason.clone(),
            RetireReason::Discarded { reason } => format!("discarded draft: {reason}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    pub by: SystemId,
    pub at: DateTime<Utc>,
    pub reason: RetireReason,
}

/// Data that exists only in a given state lives in that state's variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcedureState {
    Draft {
        /// Set when System5 sent the draft back; cleared by the next edit.
        rejection: Option<Rejection>,
    },
    Approved(Approval),
    Retired {
        /// None for a draft that was discarded without ever being approved.
        approval: Option<Approval>,
        retirement: Retirement,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    pub id: ProcedureId,
    pub series_id: SeriesId,
    pub team_id: TeamId,
    pub version: Version,
    pub meta: ProcedureMeta,
    pub state: ProcedureState,
    pub created_by: SystemId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Procedure {
    pub fn status(&self) -> ProcedureStatus {
        match self.state {
            ProcedureState::Draft { .. } => ProcedureStatus::Draft,
            ProcedureState::Approved(_) => ProcedureStatus::Approved,
            ProcedureState::Retired { .. } => ProcedureStatus::Retired,
        }
    }

    fn label(&self) -> String {
        format!("procedure {} {}", self.id, self.version)
    }

    /// System4 drafts version 1 of a new series in its own team.
    pub fn draft(
        id: ProcedureId,
        meta: ProcedureMeta,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Procedure, DomainError> {
        actor.authorise(SystemKind::System4, actor.team_id)?;
        Ok(Procedure {
            id,
            series_id: SeriesId(id.0),
            team_id: actor.team_id,
            version: Version::FIRST,
            meta,
            state: ProcedureState::Draft { rejection: None },
            created_by: actor.id,
            created_at: now,
            updated_at: now,
        })
    }

    /// System4 changes a draft in place (approved versions are immutable).
    pub fn edit(
        &mut self,
        meta: ProcedureMeta,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        actor.authorise(SystemKind::System4, self.team_id)?;
        self.require_draft("edit")?;
        self.meta = meta;
        self.state = ProcedureState::Draft { rejection: None };
        self.updated_at = now;
        Ok(())
    }

    /// System4 abandons a draft; it stays readable as a retired version that was never approved.
    pub fn discard(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        actor.authorise(SystemKind::System4, self.team_id)?;
        self.require_draft("discard")?;
        self.state = ProcedureState::Retired {
            approval: None,
            retirement: Retirement {
                by: actor.id,
                at: now,
                reason: RetireReason::Discarded { reason },
            },
        };
        self.updated_at = now;
        Ok(())
    }

    /// System5 sends a draft back to System4 with a reason; it stays a draft.
    pub fn reject(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        actor.authorise(SystemKind::System5, self.team_id)?;
        self.require_draft("reject")?;
        self.state = ProcedureState::Draft {
            rejection: Some(Rejection {
                by: actor.id,
                at: now,
                reason,
            }),
        };
        self.updated_at = now;
        Ok(())
    }

    /// System5 takes an approved version out of service; it stays readable for audit.
    pub fn retire(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        actor.authorise(SystemKind::System5, self.team_id)?;
        let ProcedureState::Approved(approval) = &self.state else {
            return Err(DomainError::transition(
                self.label(),
                self.status(),
                "retire",
            ));
        };
        self.state = ProcedureState::Retired {
            approval: Some(approval.clone()),
            retirement: Retirement {
                by: actor.id,
                at: now,
                reason: RetireReason::Retired { reason },
            },
        };
        self.updated_at = now;
        Ok(())
    }

    fn require_draft(&self, action: &'static str) -> Result<(), DomainError> {
        match self.state {
            ProcedureState::Draft { .. } => Ok(()),
            _ => Err(DomainError::transition(self.label(), self.status(), action)),
        }
    }
}

/// All versions of one procedure, in version order. Decisions that involve more than one
/// version (revise, approve, execute) are taken here, on the whole series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    versions: Vec<Procedure>,
}

/// What an approval changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalOutcome {
    pub approved: ProcedureId,
    /// The previously approved version, now retired as superseded.
    pub superseded: Option<ProcedureId>,
}

impl Series {
    /// `None` for an empty list: a series always has its first version.
    pub fn new(mut versions: Vec<Procedure>) -> Option<Series> {
        versions.sort_by_key(|p| p.version);
        (!versions.is_empty()).then_some(Series { versions })
    }

    pub fn versions(&self) -> &[Procedure] {
        &self.versions
    }

    pub fn latest(&self) -> &Procedure {
        // Invariant: `new` refuses an empty series.
        &self.versions[self.versions.len() - 1]
    }

    pub fn get(&self, id: ProcedureId) -> Option<&Procedure> {
        self.versions.iter().find(|p| p.id == id)
    }

    pub fn get_mut(&mut self, id: ProcedureId) -> Option<&mut Procedure> {
        self.versions.iter_mut().find(|p| p.id == id)
    }

    pub fn approved(&self) -> Option<&Procedure> {
        self.versions
            .iter()
            .find(|p| p.status() == ProcedureStatus::Approved)
    }

    /// System4 starts a new draft (latest + 1) from the latest version, which must not itself
    /// be a draft: a series has one open draft at a time, and it is edited, not revised.
    pub fn revise(
        &self,
        base: ProcedureId,
        meta: ProcedureMeta,
        new_id: ProcedureId,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Procedure, DomainError> {
        let latest = self.latest();
        actor.authorise(SystemKind::System4, latest.team_id)?;
        let base = self
            .get(base)
            .ok_or_else(|| DomainError::invalid("procedure_id", "not a version of this series"))?;
        if base.id != latest.id {
            return Err(DomainError::NotLatestVersion {
                requested: base.version,
                latest: latest.version,
            });
        }
        if latest.status() == ProcedureStatus::Draft {
            return Err(DomainError::OpenDraftExists {
                draft: latest.id,
                version: latest.version,
            });
        }
        Ok(Procedure {
            id: new_id,
            series_id: latest.series_id,
            team_id: latest.team_id,
            version: latest.version.next(),
            meta,
            state: ProcedureState::Draft { rejection: None },
            created_by: actor.id,
            created_at: now,
            updated_at: now,
        })
    }

    /// System5 approves the series' draft. The previously approved version is retired in the
    /// same decision, so the series never has two approved versions.
    pub fn approve(
        &mut self,
        id: ProcedureId,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<ApprovalOutcome, DomainError> {
        let latest = self.latest();
        actor.authorise(SystemKind::System5, latest.team_id)?;
        let latest_version = latest.version;
        let target = self
            .get(id)
            .ok_or_else(|| DomainError::invalid("procedure_id", "not a version of this series"))?;
        target.require_draft("approve")?;
        if target.version != latest_version {
            // Unreachable while drafts are only ever the latest version; kept as the rule.
            return Err(DomainError::NotLatestVersion {
                requested: target.version,
                latest: latest_version,
            });
        }
        let mut superseded = None;
        for old in &mut self.versions {
            if let ProcedureState::Approved(approval) = &old.state {
                old.state = ProcedureState::Retired {
                    approval: Some(approval.clone()),
                    retirement: Retirement {
                        by: actor.id,
                        at: now,
                        reason: RetireReason::Superseded { by: id },
                    },
                };
                old.updated_at = now;
                superseded = Some(old.id);
            }
        }
        let Some(target) = self.get_mut(id) else {
            return Err(DomainError::invalid(
                "procedure_id",
                "not a version of this series",
            ));
        };
        target.state = ProcedureState::Approved(Approval {
            by: actor.id,
            at: now,
        });
        target.updated_at = now;
        Ok(ApprovalOutcome {
            approved: id,
            superseded,
        })
    }

    /// System3 asks for the version to run: always the series' approved version. When the
    /// caller names the version it reviewed, a newer approval in between is a conflict.
    pub fn executable(
        &self,
        actor: &Actor,
        expected: Option<Version>,
    ) -> Result<ApprovedProcedure<'_>, DomainError> {
        actor.authorise(SystemKind::System3, self.latest().team_id)?;
        let approved = self.approved().ok_or(DomainError::NoApprovedVersion)?;
        if let Some(expected) = expected
            && expected != approved.version
        {
            return Err(DomainError::VersionMismatch {
                expected,
                current: approved.version,
            });
        }
        Ok(ApprovedProcedure(approved))
    }
}

/// Proof that a procedure version is approved and the one to execute. Only
/// [`Series::executable`] makes one, so materialising a draft cannot be written.
#[derive(Debug, Clone, Copy)]
pub struct ApprovedProcedure<'a>(&'a Procedure);

impl<'a> ApprovedProcedure<'a> {
    pub fn procedure(&self) -> &'a Procedure {
        self.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::testing::*;

    #[test]
    fn drafting_starts_version_1_of_a_new_series() {
        let p = Procedure::draft(pid(1), meta(), &system4(), t(0)).unwrap();
        assert_eq!(p.version, Version(1));
        assert_eq!(p.series_id.0, p.id.0);
        assert_eq!(p.status(), ProcedureStatus::Draft);
        assert_eq!(p.created_by, system4().id);
    }

    #[test]
    fn only_system4_drafts() {
        let err = Procedure::draft(pid(1), meta(), &system3(), t(0)).unwrap_err();
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
        let v2 = s.revise(pid(1), meta(), pid(2), &system4(), t(5)).unwrap();
        let mut versions = s.versions().to_vec();
        versions.push(v2);
        let mut s = Series::new(versions).unwrap();
        let out = s.approve(pid(2), &system5(), t(6)).unwrap();
        assert_eq!(out.superseded, Some(pid(1)));
        assert_eq!(s.get(pid(1)).unwrap().status(), ProcedureStatus::Retired);
        assert_eq!(s.get(pid(2)).unwrap().status(), ProcedureStatus::Approved);
        assert_eq!(s.approved().unwrap().version, Version(2));
    }

    #[test]
    fn only_system5_approves() {
        let mut s = Series::new(vec![draft_v1()]).unwrap();
        let err = s.approve(pid(1), &system4(), t(1)).unwrap_err();
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
            .approve(pid(1), &other_team(SystemKind::System5), t(1))
            .unwrap_err();
        assert!(matches!(err, DomainError::WrongTeam { .. }));
    }

    #[test]
    fn an_approved_version_cannot_be_approved_again_or_edited() {
        let mut s = approved_series();
        assert!(matches!(
            s.approve(pid(1), &system5(), t(2)).unwrap_err(),
            DomainError::InvalidTransition {
                action: "approve",
                ..
            }
        ));
        let mut v1 = s.get(pid(1)).unwrap().clone();
        assert!(matches!(
            v1.edit(meta(), &system4(), t(3)).unwrap_err(),
            DomainError::InvalidTransition { action: "edit", .. }
        ));
    }

    #[test]
    fn revisions_only_from_the_latest_version() {
        let mut s = approved_series();
        let v2 = s.revise(pid(1), meta(), pid(2), &system4(), t(5)).unwrap();
        let mut versions = s.versions().to_vec();
        versions.push(v2);
        s = Series::new(versions).unwrap();
        s.approve(pid(2), &system5(), t(6)).unwrap();
        let err = s
            .revise(pid(1), meta(), pid(3), &system4(), t(7))
            .unwrap_err();
        assert_eq!(
            err,
            DomainError::NotLatestVersion {
                requested: Version(1),
                latest: Version(2)
            }
        );
        let v3 = s.revise(pid(2), meta(), pid(3), &system4(), t(7)).unwrap();
        assert_eq!(v3.version, Version(3));
    }

    #[test]
    fn a_series_has_one_open_draft_at_a_time() {
        let s = Series::new(vec![draft_v1()]).unwrap();
        let err = s
            .revise(pid(1), meta(), pid(2), &system4(), t(1))
            .unwrap_err();
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
        p.edit(meta(), &system4(), t(2)).unwrap();
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
}

//! A procedure's versions as one series, and the governance rules that move them.

use chrono::{DateTime, Utc};

use super::{
    Approval, Digest, Procedure, ProcedureMeta, ProcedureState, ProcedureStatus, RetireReason,
    Retirement,
};
use crate::domain::error::DomainError;
use crate::domain::event::{Event, EventKind, ProcedureView};
use crate::domain::ids::{ProcedureId, Version};
use crate::domain::system::{Actor, SystemKind};
use crate::domain::template::Templates;

/// All versions of one procedure, in version order. Decisions that involve more than one
/// version (revise, approve, execute) are taken here, on the whole series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    versions: Vec<Procedure>,
}

/// What an approval changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalOutcome {
    pub approved: ProcedureId,
    /// The previously approved version, now retired as superseded.
    pub superseded: Option<ProcedureId>,
    /// `procedure.approved`, then `procedure.retired` for the superseded version.
    pub events: Vec<Event>,
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
        templates: &Templates,
        new_id: ProcedureId,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(Procedure, Event), DomainError> {
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
        let p = Procedure {
            id: new_id,
            series_id: latest.series_id,
            team_id: latest.team_id,
            version: latest.version.next(),
            digest: Digest::of(&meta, templates),
            meta,
            state: ProcedureState::Draft { rejection: None },
            created_by: actor.id,
            created_at: now,
            updated_at: now,
        };
        let event = p.event(EventKind::ProcedureRevised, |e| {
            e.tasks = Some(templates.as_slice().to_vec());
            e.based_on = Some(base.id);
        });
        Ok((p, event))
    }

    /// System5 approves the series' draft. The previously approved version is retired in the
    /// same decision, so the series never has two approved versions.
    /// `digest` is the digest of the content the approver read: a draft changed since is a
    /// conflict, so an approval never covers content its approver did not see.
    pub fn approve(
        &mut self,
        id: ProcedureId,
        digest: &str,
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
        if target.digest.as_str() != digest.trim() {
            return Err(DomainError::DigestMismatch {
                procedure: id,
                current: target.digest.to_string(),
                named: crate::domain::text::excerpt(digest, 80, 320),
            });
        }
        let mut superseded = None;
        let mut retired = None;
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
                retired = Some(old.event(EventKind::ProcedureRetired, |e| {
                    e.reason = ProcedureView::of(old).retired_reason;
                }));
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
        let approved = target.event(EventKind::ProcedureApproved, |e| e.superseded = superseded);
        Ok(ApprovalOutcome {
            approved: id,
            superseded,
            events: std::iter::once(approved).chain(retired).collect(),
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

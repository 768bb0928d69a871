//! Procedures (SOPs): their metadata, version lifecycle and the governance rules around it.
//!
//! Invariants kept here (and backed by unique indexes in the database):
//! - a series has at most one draft, and it is always its latest version;
//! - a series has at most one approved version; approving a draft retires the previous one;
//! - approved and retired versions are never modified; a change is a new draft (latest + 1);
//! - only the approved version of a series executes ([`ApprovedProcedure`] is the only way in).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::DomainError;
use super::event::{Event, EventData, EventKind, ProcedureEvent, ProcedureView};
use super::ids::{ProcedureId, SeriesId, SystemId, TeamId, Version};
use super::system::{Actor, SystemKind};
use super::template::Templates;
use super::text;

mod digest;
mod series;

pub use digest::{Digest, canonical_form};
pub use series::{ApprovalOutcome, ApprovedProcedure, Series};

/// The names of `set`, for a refusal that lists them: "low, medium, high".
fn names<T: Copy + Into<&'static str>>(set: &[T]) -> String {
    set.iter()
        .map(|&v| v.into())
        .collect::<Vec<&str>>()
        .join(", ")
}

// Ordered from least to most risky: a policy rule applies at or above a level.
closed_set! {
    #[derive(PartialOrd, Ord)]
    pub enum RiskLevel {
        Low,
        Medium,
        High,
        Critical,
    }
}

impl RiskLevel {
    pub fn parse(raw: &str) -> Result<RiskLevel, DomainError> {
        RiskLevel::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    "risk_level",
                    format!("`{raw}` is not one of {}", names(RiskLevel::ALL)),
                )
            })
    }
}

closed_set! {
    pub enum Impact {
        Low,
        Medium,
        High,
    }
}

impl Impact {
    pub fn parse(raw: &str) -> Result<Impact, DomainError> {
        Impact::ALL
            .iter()
            .copied()
            .find(|i| i.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    "impact",
                    format!("`{raw}` is not one of {}", names(Impact::ALL)),
                )
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

closed_set! {
    pub enum ProcedureStatus {
        Draft,
        Approved,
        Retired,
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
    /// Of `meta` and the version's templates: what an approval names.
    pub digest: Digest,
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

    /// An event about this version: its view, with what `add` puts in.
    pub(crate) fn event(&self, kind: EventKind, add: impl FnOnce(&mut ProcedureEvent)) -> Event {
        let mut data = ProcedureEvent {
            procedure: ProcedureView::of(self),
            tasks: None,
            reason: None,
            based_on: None,
            superseded: None,
        };
        add(&mut data);
        Event::new(kind, self.team_id, EventData::Procedure(Box::new(data)))
    }

    /// System4 drafts version 1 of a new series in its own team.
    pub fn draft(
        id: ProcedureId,
        meta: ProcedureMeta,
        templates: &Templates,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(Procedure, Event), DomainError> {
        actor.authorise(SystemKind::System4, actor.team_id)?;
        let p = Procedure {
            id,
            series_id: SeriesId(id.0),
            team_id: actor.team_id,
            version: Version::FIRST,
            digest: Digest::of(&meta, templates),
            meta,
            state: ProcedureState::Draft { rejection: None },
            created_by: actor.id,
            created_at: now,
            updated_at: now,
        };
        let event = p.event(EventKind::ProcedureDrafted, |e| {
            e.tasks = Some(templates.as_slice().to_vec());
        });
        Ok((p, event))
    }

    /// System4 changes a draft in place (approved versions are immutable).
    /// `templates` are the version's templates after the edit; `changed`, whether the edit
    /// changed them (the event carries them only then).
    pub fn edit(
        &mut self,
        meta: ProcedureMeta,
        templates: &Templates,
        changed: bool,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Event, DomainError> {
        actor.authorise(SystemKind::System4, self.team_id)?;
        self.require_draft("edit")?;
        self.digest = Digest::of(&meta, templates);
        self.meta = meta;
        self.state = ProcedureState::Draft { rejection: None };
        self.updated_at = now;
        Ok(self.event(EventKind::ProcedureEdited, |e| {
            e.tasks = changed.then(|| templates.as_slice().to_vec());
        }))
    }

    /// System4 abandons a draft; it stays readable as a retired version that was never approved.
    pub fn discard(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Event, DomainError> {
        actor.authorise(SystemKind::System4, self.team_id)?;
        self.require_draft("discard")?;
        self.state = ProcedureState::Retired {
            approval: None,
            retirement: Retirement {
                by: actor.id,
                at: now,
                reason: RetireReason::Discarded {
                    reason: reason.clone(),
                },
            },
        };
        self.updated_at = now;
        Ok(self.event(EventKind::ProcedureDiscarded, |e| e.reason = Some(reason)))
    }

    /// System5 sends a draft back to System4 with a reason; it stays a draft.
    pub fn reject(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Event, DomainError> {
        actor.authorise(SystemKind::System5, self.team_id)?;
        self.require_draft("reject")?;
        self.state = ProcedureState::Draft {
            rejection: Some(Rejection {
                by: actor.id,
                at: now,
                reason: reason.clone(),
            }),
        };
        self.updated_at = now;
        Ok(self.event(EventKind::ProcedureRejected, |e| e.reason = Some(reason)))
    }

    /// System5 takes an approved version out of service; it stays readable for audit.
    pub fn retire(
        &mut self,
        reason: String,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Event, DomainError> {
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
                reason: RetireReason::Retired {
                    reason: reason.clone(),
                },
            },
        };
        self.updated_at = now;
        Ok(self.event(EventKind::ProcedureRetired, |e| e.reason = Some(reason)))
    }

    fn require_draft(&self, action: &'static str) -> Result<(), DomainError> {
        match self.state {
            ProcedureState::Draft { .. } => Ok(()),
            _ => Err(DomainError::transition(self.label(), self.status(), action)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! The post-run review: System3's record of how an ended run went, stored once per run and
//! linked to its initiative, run, procedure and version, with the procedure's context frozen
//! into it (risk, impact, rollback plan, and each task's outcome).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::event::{Event, EventData, EventKind, ReviewView};
use super::ids::{ReviewId, TaskId};
use super::procedure::{Impact, RiskLevel};
use super::run::{Execution, RunStatus};
use super::system::{Actor, SystemKind};
use super::text;

pub const MAX_LIST_ITEMS: usize = 100;
/// Task results and reasons are cut to this many characters in the review's context, so the
/// review (and its event) stays small whatever the run produced; the tasks keep them whole.
pub const CONTEXT_TEXT: usize = 500;

fn excerpt(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| {
        if t.chars().count() <= CONTEXT_TEXT {
            t.clone()
        } else {
            let cut: String = t.chars().take(CONTEXT_TEXT).collect();
            format!("{cut}…")
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewOutcome {
    Succeeded,
    PartiallySucceeded,
    Failed,
}

impl ReviewOutcome {
    pub const ALL: [ReviewOutcome; 3] = [
        ReviewOutcome::Succeeded,
        ReviewOutcome::PartiallySucceeded,
        ReviewOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewOutcome::Succeeded => "succeeded",
            ReviewOutcome::PartiallySucceeded => "partially_succeeded",
            ReviewOutcome::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<ReviewOutcome, DomainError> {
        ReviewOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == raw.trim())
            .ok_or_else(|| {
                DomainError::invalid(
                    "outcome",
                    format!("`{raw}` is not one of succeeded, partially_succeeded, failed"),
                )
            })
    }
}

/// A review as submitted, before validation.
#[derive(Debug, Clone, Default)]
pub struct ReviewDraft {
    pub outcome: String,
    pub summary: String,
    pub lessons: Vec<String>,
    pub follow_ups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskOutcome {
    pub task_id: TaskId,
    pub position: u32,
    pub name: String,
    pub status: String,
    pub result: Option<String>,
    pub reasoning: Option<String>,
    pub replaces_task_id: Option<TaskId>,
}

/// The procedure context frozen into a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewContext {
    pub procedure_name: String,
    pub risk_level: RiskLevel,
    pub impact: Impact,
    pub rollback_plan: String,
    pub tasks: Vec<TaskOutcome>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub view: ReviewView,
    pub outcome: ReviewOutcome,
}

fn list(field: &str, items: Vec<String>) -> Result<Vec<String>, DomainError> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(DomainError::invalid(
            field,
            format!("at most {MAX_LIST_ITEMS} items"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, s)| text::required(&format!("{field}[{i}]"), s, text::MAX_TEXT))
        .collect()
}

impl Execution {
    /// System3 records the post-run review of an ended run, once.
    pub fn record_review(
        &mut self,
        id: ReviewId,
        draft: ReviewDraft,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(Review, Event), DomainError> {
        actor.authorise(SystemKind::System3, self.team_id)?;
        if self.status == RunStatus::Started {
            return Err(DomainError::RunNotEnded {
                status: self.status.as_str().into(),
            });
        }
        if self.reviewed {
            return Err(DomainError::AlreadyReviewed);
        }
        let outcome = ReviewOutcome::parse(&draft.outcome)?;
        let view = ReviewView {
            review_id: id,
            provenance: self.provenance.clone(),
            reviewer_system_id: actor.id,
            run_status: self.status.as_str(),
            outcome: outcome.as_str(),
            summary: text::required("summary", &draft.summary, text::MAX_TEXT)?,
            lessons: list("lessons", draft.lessons)?,
            follow_ups: list("follow_ups", draft.follow_ups)?,
            context: ReviewContext {
                procedure_name: self.initiative.name.clone(),
                risk_level: self.procedure.risk_level,
                impact: self.procedure.impact,
                rollback_plan: self.procedure.rollback_plan.clone(),
                tasks: self
                    .tasks
                    .iter()
                    .map(|t| TaskOutcome {
                        task_id: t.id,
                        position: t.position,
                        name: t.name.clone(),
                        status: t.status.as_str().into(),
                        result: excerpt(&t.result),
                        reasoning: excerpt(&t.reasoning),
                        replaces_task_id: t.replaces,
                    })
                    .collect(),
            },
            recorded_at: now,
        };
        self.reviewed = true;
        let event = Event::new(
            EventKind::InitiativeReviewed,
            self.team_id,
            EventData::Review(Box::new(view.clone())),
        );
        Ok((Review { view, outcome }, event))
    }
}

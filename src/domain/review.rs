//! The post-run review: System3's record of how an ended run went, stored once per run and
//! linked to its initiative, run, procedure and version, with the procedure's context frozen
//! into it (risk, impact, rollback plan, and each task's outcome).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::event::{Event, EventData, EventKind, ReviewView};
use super::ids::{ReviewId, TaskId};
use super::procedure::{Impact, RiskLevel};
use super::run::Execution;
use super::system::{Actor, SystemKind};
use super::text;

pub const MAX_LIST_ITEMS: usize = 100;
/// Task results and reasons are cut to at most this many characters in the review's context;
/// the tasks keep them whole.
pub const CONTEXT_TEXT: usize = 500;
/// Bytes of JSON the context's task outcomes take at most, whatever the number of tasks: the
/// review's event must fit one NATS message (1 MiB by default) beside what System3 wrote. With
/// many tasks each one's name and excerpts are cut to its share of this.
pub const CONTEXT_TASKS_JSON: usize = 384 * 1024;
/// Bytes of JSON a task outcome takes besides its name, result and reasoning (ids, position,
/// status, keys), at most; a unit test holds it.
const TASK_OUTCOME_FIXED_JSON: usize = 200;

/// How much of a task's text each outcome may carry when the context lists `tasks` outcomes:
/// (name, result or reasoning) bytes of JSON.
fn text_share(tasks: usize) -> (usize, usize) {
    let text = (CONTEXT_TASKS_JSON / tasks.max(1)).saturating_sub(TASK_OUTCOME_FIXED_JSON);
    // The name first (it says which task this is), then the result and the reasoning.
    let name = (text / 2).min(text::MAX_NAME * 6);
    (name, (text - name) / 2)
}

fn excerpt(text: &Option<String>, max_json: usize) -> Option<String> {
    text.as_ref()
        .map(|t| text::excerpt(t, CONTEXT_TEXT, max_json))
}

closed_set! {
    pub enum ReviewOutcome {
        Succeeded,
        PartiallySucceeded,
        Failed,
    }
}

impl ReviewOutcome {
    pub fn parse(raw: &str) -> Result<ReviewOutcome, DomainError> {
        ReviewOutcome::ALL
            .iter()
            .copied()
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
        if self.status.is_open() {
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
            run_status: self.status.as_str().into(),
            outcome: outcome.as_str().into(),
            summary: text::required("summary", &draft.summary, text::MAX_TEXT)?,
            lessons: list("lessons", draft.lessons)?,
            follow_ups: list("follow_ups", draft.follow_ups)?,
            context: ReviewContext {
                procedure_name: self.initiative.name.clone(),
                risk_level: self.procedure.risk_level,
                impact: self.procedure.impact,
                rollback_plan: self.procedure.rollback_plan.clone(),
                tasks: {
                    let (name, text) = text_share(self.tasks.len());
                    self.tasks
                        .iter()
                        .map(|t| TaskOutcome {
                            task_id: t.id,
                            position: t.position,
                            name: text::excerpt(&t.name, text::MAX_NAME, name),
                            status: t.status.as_str().into(),
                            result: excerpt(&t.result, text),
                            reasoning: excerpt(&t.reasoning, text),
                            replaces_task_id: t.replaces,
                        })
                        .collect()
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, text: Option<&str>) -> TaskOutcome {
        TaskOutcome {
            task_id: TaskId(uuid::Uuid::from_u128(u128::MAX)),
            position: u32::MAX,
            name: name.into(),
            status: "in_progress".into(),
            result: text.map(str::to_owned),
            reasoning: text.map(str::to_owned),
            replaces_task_id: Some(TaskId(uuid::Uuid::from_u128(u128::MAX))),
        }
    }

    #[test]
    fn a_task_outcome_without_text_fits_its_fixed_share() {
        let json = serde_json::to_vec(&outcome("", Some(""))).unwrap();
        assert!(json.len() <= TASK_OUTCOME_FIXED_JSON, "{}", json.len());
    }

    #[test]
    fn the_context_of_any_number_of_tasks_fits_its_budget() {
        // The longest names and results, in the text that grows most as JSON.
        let name = "\u{1}".repeat(text::MAX_NAME);
        let result = "\"a\",\"b\",".repeat(2_000);
        for tasks in [1, 6, 100, 1_000, super::super::run::MAX_RUN_TASKS] {
            let (name_share, text_share) = text_share(tasks);
            let one = outcome(
                &text::excerpt(&name, text::MAX_NAME, name_share),
                Some(&text::excerpt(&result, CONTEXT_TEXT, text_share)),
            );
            let all = vec![one; tasks];
            let json = serde_json::to_vec(&all).unwrap().len();
            assert!(json <= CONTEXT_TASKS_JSON, "{tasks} tasks: {json} bytes");
        }
    }

    #[test]
    fn a_small_run_keeps_whole_names_and_long_excerpts() {
        let (name, text) = text_share(6);
        assert!(name >= text::MAX_NAME * 6);
        assert!(text >= CONTEXT_TEXT * 6);
    }
}

//! What an accepted command reports to its sender: the ids it created or changed, and the
//! state it left them in.

use super::ids::*;
use super::procedure::{Digest, Procedure, ProcedureStatus};
use super::review::{Review, ReviewOutcome};
use super::run::{Execution, RunStatus, TaskStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// A version drafted, changed, approved or retired.
    Procedure {
        procedure: ProcedureId,
        series: SeriesId,
        version: Version,
        status: ProcedureStatus,
        digest: Digest,
        /// On approve: the version this approval retired.
        superseded: Option<ProcedureId>,
    },
    /// A run made from an approved version.
    Executed {
        procedure: ProcedureId,
        series: SeriesId,
        version: Version,
        digest: Digest,
        run: RunId,
        initiative: InitiativeId,
        status: RunStatus,
        tasks: Vec<TaskId>,
    },
    /// A task changed, or the replacement of one.
    Task {
        run: RunId,
        initiative: InitiativeId,
        task: TaskId,
        status: Option<TaskStatus>,
    },
    /// A run changed as a whole (cancelled).
    Run {
        run: RunId,
        initiative: InitiativeId,
        status: RunStatus,
    },
    /// A team's policy set: the version now in force.
    Policy { version: u32 },
    /// A run's review recorded.
    Review {
        run: RunId,
        initiative: InitiativeId,
        review: ReviewId,
        outcome: ReviewOutcome,
    },
}

impl Receipt {
    pub fn procedure(p: &Procedure) -> Receipt {
        Receipt::Procedure {
            procedure: p.id,
            series: p.series_id,
            version: p.version,
            status: p.status(),
            digest: p.digest.clone(),
            superseded: None,
        }
    }

    pub fn executed(run: &Execution) -> Receipt {
        let made = &run.provenance;
        Receipt::Executed {
            procedure: made.procedure_id,
            series: made.series_id,
            version: made.procedure_version,
            digest: Digest::from_stored(made.procedure_digest.clone()),
            run: made.run_id,
            initiative: run.initiative.id,
            status: run.status,
            tasks: run.tasks.iter().map(|t| t.id).collect(),
        }
    }

    pub fn task(run: &Execution, task: TaskId) -> Receipt {
        Receipt::Task {
            run: run.provenance.run_id,
            initiative: run.initiative.id,
            task,
            status: run.task(task).map(|t| t.status),
        }
    }

    pub fn run(run: &Execution) -> Receipt {
        Receipt::Run {
            run: run.provenance.run_id,
            initiative: run.initiative.id,
            status: run.status,
        }
    }

    pub fn review(run: &Execution, review: &Review) -> Receipt {
        Receipt::Review {
            run: run.provenance.run_id,
            initiative: run.initiative.id,
            review: review.view.review_id,
            outcome: review.outcome,
        }
    }
}

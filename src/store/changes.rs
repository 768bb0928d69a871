//! Every write a command makes, as a value: a use case decides on what it read and returns
//! these; the pipeline applies them in the group's transaction, in the order decided. A use
//! case holds no connection to write through, so "decide before writing" holds by the types.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use super::policies::{self, StoredPolicy};
use super::procedures::{self, StoredTemplates};
use super::runs::{self, NewRuns};
use super::writes::Writes;
use super::{StoreError, reviews};
use crate::domain::ids::{ProcedureId, SeriesId, TeamId};
use crate::domain::procedure::Procedure;
use crate::domain::review::Review;
use crate::domain::run::Execution;
use crate::domain::template::Templates;

#[derive(Debug)]
pub enum Change {
    /// A new version, with its templates.
    NewVersion {
        procedure: Box<Procedure>,
        templates: Templates,
    },
    /// A version's new state (edited, approved, rejected, retired).
    Version(Box<Procedure>),
    /// All of a draft's templates, replaced.
    Templates {
        procedure: ProcedureId,
        templates: Templates,
    },
    /// A new run with its initiative and tasks, each task linked to its template by position.
    NewRun {
        run: Box<Execution>,
        templates: Arc<StoredTemplates>,
    },
    /// A run after a decision, and as it was loaded: only what differs is written.
    Run {
        before: Box<Execution>,
        after: Box<Execution>,
    },
    /// A run's review.
    NewReview { team: TeamId, review: Box<Review> },
    /// A new version of a team's policy, in force from the commit.
    NewPolicy { team: TeamId, policy: StoredPolicy },
}

impl Change {
    /// The series whose versions this changes.
    pub fn series(&self) -> Option<SeriesId> {
        match self {
            Change::NewVersion { procedure, .. } | Change::Version(procedure) => {
                Some(procedure.series_id)
            }
            _ => None,
        }
    }
}

/// The writes a group keeps for its end, where each table's rows go in one statement.
#[derive(Debug, Default)]
pub struct Batch {
    new_runs: NewRuns,
}

impl Batch {
    pub fn write_into(self, writes: &mut Writes) -> Result<(), StoreError> {
        self.new_runs.write_into(writes)
    }
}

/// Writes `changes` in order; `now` stamps what a change updates.
pub async fn apply(
    db: &impl ConnectionTrait,
    batch: &mut Batch,
    changes: Vec<Change>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for change in changes {
        match change {
            Change::NewVersion {
                procedure,
                templates,
            } => {
                procedures::insert(db, &procedure).await?;
                procedures::insert_templates(db, procedure.id, &templates).await?;
            }
            Change::Version(procedure) => procedures::update(db, &procedure).await?,
            Change::Templates {
                procedure,
                templates,
            } => {
                procedures::delete_templates(db, procedure).await?;
                procedures::insert_templates(db, procedure, &templates).await?;
            }
            // Kept for the end of the group: no other command of the group can refer to a new
            // run, whose ids are minted in it and told only after commit.
            Change::NewRun { run, templates } => batch.new_runs.add(&run, &templates.1),
            Change::Run { before, after } => runs::save(db, &before, &after, now).await?,
            Change::NewReview { team, review } => reviews::insert(db, team.0, &review).await?,
            Change::NewPolicy { team, policy } => policies::insert(db, team, &policy).await?,
        }
    }
    Ok(())
}

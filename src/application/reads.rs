//! What a use case may do with the group's transaction: read. [`Reads`] holds the
//! transaction privately and offers only reads, so a use case cannot write; it returns its
//! writes as [`Change`]s for the pipeline to apply.
//!
//! A group runs in one transaction, so what one command read can serve the next as long as
//! nothing in between changed it: executes of one SOP read the same series and the same team,
//! and sharing those reads leaves an execute with little more than its own inserts. The
//! pipeline shows every applied change to [`Reads::applied`], the one place that knows which
//! changes make a shared read stale.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr};
use uuid::Uuid;

use super::policies::TeamPolicy;
use crate::domain::ids::{ProcedureId, RunId, SeriesId, TeamId};
use crate::domain::procedure::Series;
use crate::domain::run::Execution;
use crate::domain::system::Actor;
use crate::store::changes::Change;
use crate::store::procedures::{ApprovedTemplates, SeriesLock, StoredTemplates};
use crate::store::{self};

pub struct Reads<'t> {
    txn: &'t DatabaseTransaction,
    /// The pipeline's templates of approved versions, kept across groups.
    approved: &'t ApprovedTemplates,
    /// Systems by id, with their team's name (None: not registered). No command changes them.
    actors: HashMap<Uuid, Option<(Actor, String)>>,
    /// Each team's systems. No command changes them.
    members: HashMap<TeamId, Arc<[Actor]>>,
    /// Series read for executing, locked as noted until the group commits: no other
    /// transaction can change them meanwhile, only a command of this group ([`Reads::applied`]).
    series: HashMap<SeriesId, (Arc<Series>, SeriesLock)>,
    /// Each team's policy in force (None: it has none); only a `policy.set` changes it.
    policies: HashMap<TeamId, Option<Arc<TeamPolicy>>>,
    /// When the runs the group's executes created started, by series: not yet written.
    new_runs: HashMap<SeriesId, Vec<DateTime<Utc>>>,
}

impl<'t> Reads<'t> {
    pub fn new(txn: &'t DatabaseTransaction, approved: &'t ApprovedTemplates) -> Reads<'t> {
        Reads {
            txn,
            approved,
            actors: HashMap::new(),
            members: HashMap::new(),
            series: HashMap::new(),
            policies: HashMap::new(),
            new_runs: HashMap::new(),
        }
    }

    /// A registered system with its team's name.
    pub async fn actor(&mut self, id: Uuid) -> Result<Option<(Actor, String)>, DbErr> {
        if let Some(known) = self.actors.get(&id) {
            return Ok(known.clone());
        }
        let Some(found) = store::teams::actor_and_team(self.txn, id).await? else {
            self.actors.insert(id, None);
            return Ok(None);
        };
        // The team's systems came with it: an execute needs them, another actor may be one.
        for member in &found.members {
            let known = Some((member.clone(), found.team_name.clone()));
            self.actors.insert(member.id.0, known);
        }
        self.members
            .insert(found.actor.team_id, found.members.into());
        Ok(Some((found.actor, found.team_name)))
    }

    pub async fn members(&mut self, team: TeamId) -> Result<Arc<[Actor]>, DbErr> {
        if let Some(known) = self.members.get(&team) {
            return Ok(known.clone());
        }
        let found: Arc<[Actor]> = store::teams::members(self.txn, team).await?.into();
        self.members.insert(team, found.clone());
        Ok(found)
    }

    /// The series, locked to execute: share-locked (approve and retire wait for the group to
    /// commit), or exclusively where the team's policy counts its runs (other executes of it
    /// wait too, so the count stays true).
    pub async fn series_to_execute(
        &mut self,
        id: SeriesId,
        lock: SeriesLock,
    ) -> Result<Option<Arc<Series>>, DbErr> {
        if let Some((known, held)) = self.series.get(&id)
            && (*held == SeriesLock::Exclusive || lock == SeriesLock::Share)
        {
            return Ok(Some(known.clone()));
        }
        let Some(found) = store::procedures::load_series(self.txn, id, lock).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        self.series.insert(id, (found.clone(), lock));
        Ok(Some(found))
    }

    /// The team's policy in force, if it has one.
    pub async fn policy(&mut self, team: TeamId) -> Result<Option<Arc<TeamPolicy>>, DbErr> {
        if let Some(known) = self.policies.get(&team) {
            return Ok(known.clone());
        }
        let found = match store::policies::in_force(self.txn, team).await? {
            Some(stored) => Some(TeamPolicy::of(stored)?),
            None => None,
        };
        self.policies.insert(team, found.clone());
        Ok(found)
    }

    /// How many runs of `series` are open, and when those since `since` started: the
    /// database's, and the group's own not yet written.
    pub async fn activity(
        &self,
        series: SeriesId,
        since: DateTime<Utc>,
    ) -> Result<(u32, Vec<DateTime<Utc>>), DbErr> {
        let (mut open, mut started) = store::runs::activity(self.txn, series, since).await?;
        if let Some(new) = self.new_runs.get(&series) {
            open += new.len() as u32;
            started.extend(new.iter().filter(|&&s| s > since));
        }
        Ok((open, started))
    }

    /// The team a series belongs to, if it exists.
    pub async fn team_of_series(&self, series: SeriesId) -> Result<Option<TeamId>, DbErr> {
        store::procedures::team_of_series(self.txn, series).await
    }

    /// The series of a version, if `procedure` is one.
    pub async fn series_of_version(&self, procedure: Uuid) -> Result<Option<SeriesId>, DbErr> {
        store::procedures::series_of(self.txn, procedure).await
    }

    /// The series a version belongs to, locked for a change.
    pub async fn series_to_change(&self, procedure: Uuid) -> Result<Option<Series>, DbErr> {
        let Some(series) = store::procedures::series_of(self.txn, procedure).await? else {
            return Ok(None);
        };
        store::procedures::load_series(self.txn, series, SeriesLock::Exclusive).await
    }

    /// A version's templates.
    pub async fn templates(&self, procedure: ProcedureId) -> Result<StoredTemplates, DbErr> {
        store::procedures::templates(self.txn, procedure).await
    }

    /// An approved version's templates (they never change: read once per process).
    pub async fn approved_templates(
        &self,
        procedure: ProcedureId,
    ) -> Result<Arc<StoredTemplates>, DbErr> {
        self.approved.get(self.txn, procedure).await
    }

    pub async fn run_of_task(&self, task: Uuid) -> Result<Option<RunId>, DbErr> {
        store::runs::run_of_task(self.txn, task).await
    }

    pub async fn run_of_initiative(&self, initiative: Uuid) -> Result<Option<RunId>, DbErr> {
        store::runs::run_of_initiative(self.txn, initiative).await
    }

    /// A run as one aggregate, its row locked for a change.
    pub async fn run_to_change(&self, run: RunId) -> Result<Option<Execution>, DbErr> {
        store::runs::load_for_update(self.txn, run).await
    }

    /// Takes in an applied change: drops what it makes stale, notes the runs it adds.
    pub fn applied(&mut self, change: &Change) {
        if let Some(series) = change.series() {
            self.series.remove(&series);
        }
        match change {
            Change::NewPolicy { team, .. } => {
                self.policies.remove(team);
            }
            Change::NewRun { run, .. } => self
                .new_runs
                .entry(run.provenance.series_id)
                .or_default()
                .push(run.started_at),
            _ => {}
        }
    }
}

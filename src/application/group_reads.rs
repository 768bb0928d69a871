//! Reads the commands of one group share.
//!
//! A group runs in one transaction, so what one command read can serve the next as long as
//! nothing in between changed it. Executes of one SOP read the same series and the same team;
//! sharing those reads leaves an execute with little more than its own inserts.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use crate::domain::ids::{SeriesId, TeamId};
use crate::domain::procedure::Series;
use crate::domain::system::Actor;
use crate::store::{self, procedures::SeriesLock};

#[derive(Default)]
pub struct GroupReads {
    /// Systems by id, with their team's name (None: not registered). No command changes them.
    actors: HashMap<Uuid, Option<(Actor, String)>>,
    /// Each team's systems. No command changes them.
    members: HashMap<TeamId, Arc<[Actor]>>,
    /// Series read for executing, share-locked until the group commits: no other transaction
    /// can change them meanwhile, only a procedure command of this group ([`Self::forget_series`]).
    series: HashMap<SeriesId, Arc<Series>>,
}

impl GroupReads {
    pub async fn actor(
        &mut self,
        db: &impl ConnectionTrait,
        id: Uuid,
    ) -> Result<Option<(Actor, String)>, DbErr> {
        if let Some(known) = self.actors.get(&id) {
            return Ok(known.clone());
        }
        let Some(found) = store::teams::actor_and_team(db, id).await? else {
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

    pub async fn members(
        &mut self,
        db: &impl ConnectionTrait,
        team: TeamId,
    ) -> Result<Arc<[Actor]>, DbErr> {
        if let Some(known) = self.members.get(&team) {
            return Ok(known.clone());
        }
        let found: Arc<[Actor]> = store::teams::members(db, team).await?.into();
        self.members.insert(team, found.clone());
        Ok(found)
    }

    /// The series, share-locked (approve and retire wait for the group to commit).
    pub async fn series_to_execute(
        &mut self,
        db: &impl ConnectionTrait,
        id: SeriesId,
    ) -> Result<Option<Arc<Series>>, DbErr> {
        if let Some(known) = self.series.get(&id) {
            return Ok(Some(known.clone()));
        }
        let Some(found) = store::procedures::load_series(db, id, SeriesLock::Share).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        self.series.insert(id, found.clone());
        Ok(Some(found))
    }

    /// Before any procedure command but an execute: it may change a series read above.
    pub fn forget_series(&mut self) {
        self.series.clear();
    }
}

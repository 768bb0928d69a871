//! Each team's event chain ([`crate::wire::chain`]) as the database keeps it. The relay links
//! a team's events in the order it publishes them, the one order the team's stream has
//! whatever order concurrent commands committed in, so the command path never waits on a
//! team's chain. It records what it linked before publishing it, so a message sent again
//! carries the same link: on Postgres in the pass before the one that publishes it (no relay
//! links more while linked events wait: [`in_flight`]); on SQLite, where commands commit one
//! at a time in position order and linking again gives the same links, with what it takes off
//! the pending list. One row per run of a record's events ([`entity::outbox_chain`]): the rest
//! of each link follows from the record's own events, and the readers of stored records give
//! every linked event its link in its headers, as the stream has it.

use std::collections::{BTreeSet, HashMap};

use entity::outbox as records;
use entity::outbox_chain::{self, Model as Run};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::outbox::{OUTCOME_KIND, Publication, Stored};
use crate::wire::chain::{Head, Link, hash};

/// Each team's chain head, by team id.
pub type Heads = HashMap<Uuid, Head>;

/// The runs of the records `seqs`.
pub async fn runs_of(db: &impl ConnectionTrait, seqs: &[i64]) -> Result<Vec<Run>, DbErr> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    outbox_chain::Entity::find()
        .filter(super::outbox::seq_among(db, seqs))
        .all(db)
        .await
}

/// The first `limit` runs of `team`'s chain, in place order.
pub async fn first_runs(
    db: &impl ConnectionTrait,
    team: Uuid,
    limit: u64,
) -> Result<Vec<Run>, DbErr> {
    outbox_chain::Entity::find()
        .filter(outbox_chain::Column::TeamId.eq(team))
        .order_by_asc(outbox_chain::Column::Place)
        .limit(limit)
        .all(db)
        .await
}

/// Postgres: the messages of the chains in flight (each team's, after the place published
/// through, as [`super::teams::chains_in_flight`] gives them) still pending: the linked events,
/// and their records' outcomes. In position order.
pub async fn in_flight(
    db: &impl ConnectionTrait,
    chains: &[(Uuid, i64, i64)],
) -> Result<Vec<i64>, DbErr> {
    let mut positions = BTreeSet::new();
    for &(team, published, length) in chains {
        let runs = outbox_chain::Entity::find()
            .filter(outbox_chain::Column::TeamId.eq(team))
            .filter(outbox_chain::Column::Place.gt(published))
            .filter(outbox_chain::Column::Place.lte(length))
            .all(db)
            .await?;
        for run in runs {
            positions.insert(records::position(run.seq, 0));
            for k in 0..run.events {
                positions.insert(records::position(run.seq, (run.first + k) as usize));
            }
        }
    }
    let positions: Vec<i64> = positions.into_iter().collect();
    let pending = super::outbox::listed(db, &positions).await?;
    Ok(positions
        .into_iter()
        .filter(|p| pending.contains(p))
        .collect())
}

/// Gives the events `runs` cover their links, in their headers: `messages` are the whole
/// record `runs` are of, in order.
pub(super) fn attach(messages: &mut [Stored], runs: &[&Run]) -> Result<(), DbErr> {
    for run in runs {
        let mut prev = run.prev.clone();
        for k in 0..run.events {
            let i = (run.first + k) as usize;
            let m = messages
                .get_mut(i)
                .filter(|m| m.kind != OUTCOME_KIND)
                .ok_or_else(|| {
                    DbErr::Custom(format!(
                        "outbox record {} has no event {i} for its chain run from place {}",
                        run.seq, run.place
                    ))
                })?;
            let place = run.place + i64::from(k);
            let p = &mut m.publication;
            let next = hash(run.team_id, place, &prev, p.message_id, &p.payload);
            let link = Link {
                index: place,
                prev: std::mem::replace(&mut prev, next),
            };
            p.headers = Some(link.into_headers(p.headers.take()));
        }
    }
    Ok(())
}

/// The teams with an event in `batch` still to link.
pub fn unlinked_teams(batch: &[Publication]) -> BTreeSet<Uuid> {
    batch
        .iter()
        .filter(|p| p.link().is_none())
        .filter_map(|p| p.chain_team)
        .collect()
}

/// Links, in order, the events of `batch` without a link yet, from `heads` (which hold their
/// teams), moving the heads past them. Returns the runs to record, in place order per team.
pub fn link(batch: &mut [Publication], heads: &mut Heads) -> Result<Vec<Run>, DbErr> {
    let mut runs: Vec<Run> = Vec::new();
    for p in batch.iter_mut() {
        let Some(team) = p.chain_team else { continue };
        if p.link().is_some() {
            continue;
        }
        let head = heads
            .get_mut(&team)
            .ok_or_else(|| DbErr::Custom(format!("no chain head read for team {team}")))?;
        let link = head.append(team, p.message_id, &p.payload);
        let (seq, index) = records::record_of(p.seq);
        let index = index as i32;
        match runs.last_mut() {
            Some(run)
                if run.team_id == team
                    && run.seq == seq
                    && run.first + run.events == index
                    && run.place + i64::from(run.events) == link.index =>
            {
                run.events += 1
            }
            _ => runs.push(Run {
                team_id: team,
                place: link.index,
                seq,
                first: index,
                events: 1,
                prev: link.prev.clone(),
            }),
        }
        p.headers = Some(link.into_headers(p.headers.take()));
    }
    Ok(runs)
}

/// Puts a batch of pending messages in the order to publish them: first the events linked
/// already (by a relay that stopped before publishing them all), in their places' order, each
/// record's outcome before its events; then the rest in position order, to be linked after
/// them. Messages linked earlier committed earlier, so commit order holds too.
pub fn in_chain_order(batch: &mut Vec<Publication>) {
    let links: Vec<Option<i64>> = batch.iter().map(|p| p.link().map(|l| l.index)).collect();
    if links.iter().all(Option::is_none) {
        return;
    }
    let mut first_place: HashMap<i64, i64> = HashMap::new();
    for (p, place) in batch.iter().zip(&links) {
        if let Some(place) = place {
            let record = records::record_of(p.seq).0;
            let first = first_place.entry(record).or_insert(*place);
            *first = (*first).min(*place);
        }
    }
    let mut keyed: Vec<((u8, i64, u8), Publication)> = std::mem::take(batch)
        .into_iter()
        .zip(links)
        .map(|(p, place)| {
            let key = match place {
                Some(place) => (0, place, 1),
                None => match first_place.get(&records::record_of(p.seq).0) {
                    Some(&place) if p.chain_team.is_none() => (0, place, 0),
                    _ => (1, p.seq, 0),
                },
            };
            (key, p)
        })
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    batch.extend(keyed.into_iter().map(|(_, p)| p));
}

/// Records `runs` and the teams' `heads` they moved.
pub async fn record(db: &impl ConnectionTrait, runs: &[Run], heads: &Heads) -> Result<(), DbErr> {
    if runs.is_empty() {
        return Ok(());
    }
    let moved: Heads = heads
        .iter()
        .filter(|(team, _)| runs.iter().any(|r| r.team_id == **team))
        .map(|(team, head)| (*team, head.clone()))
        .collect();
    let mut writes = super::writes::Writes::new(db.get_database_backend());
    let rows = runs
        .iter()
        .map(|r| outbox_chain::ActiveModel {
            team_id: Set(r.team_id),
            place: Set(r.place),
            seq: Set(r.seq),
            first: Set(r.first),
            events: Set(r.events),
            prev: Set(r.prev.clone()),
        })
        .collect();
    writes.insert(rows, None).map_err(db_err)?;
    super::teams::write_chain_heads(&mut writes, &moved);
    writes.run(db).await.map_err(db_err)?;
    Ok(())
}

fn db_err(e: super::StoreError) -> DbErr {
    match e {
        super::StoreError::Db(e) => e,
        super::StoreError::Bug(bug) => DbErr::Custom(bug),
    }
}

#[cfg(test)]
mod tests;

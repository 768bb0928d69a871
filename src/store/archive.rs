//! Retention: history older than a horizon, written out as an archive and removed. Outbox
//! records whose messages are all published (none pending or parked), and dead letters; each
//! batch is removed only once written and synced to disk, so a failure part way loses nothing
//! (a batch written but not removed is written again by the next run). Inbox rows stay: they
//! keep a re-sent command from being applied twice, and answer it (see [`super::inbox`]).

use std::fs::File;
use std::io::{BufWriter, Write};

use chrono::{DateTime, Utc};
use entity::outbox::{self as records, RawValue};
use entity::{dead_letter, outbox, outbox_chain, outbox_parked, outbox_pending};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use crate::wire::archive::{ArchivedDeadLetter, ArchivedMessage, Kind};

/// Records, or dead letters, per batch.
const BATCH: u64 = 200;

/// What an archive run wrote out and removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub records: u64,
    pub messages: u64,
    pub dead_letters: u64,
    /// Records older than the horizon kept because a message of theirs is still to be
    /// published (pending or parked).
    pub kept_unpublished: u64,
    /// Records older than the horizon kept because an event of theirs follows, in its team's
    /// chain, one the database keeps: the database holds each chain's end whole.
    pub kept_in_chain: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("writing the archive: {0}")]
    Write(#[from] std::io::Error),
}

/// Writes out, then removes, the outbox records and dead letters older than `before`.
pub async fn archive(
    db: &DatabaseConnection,
    before: DateTime<Utc>,
    out: &mut BufWriter<File>,
) -> Result<Counts, ArchiveError> {
    let mut counts = Counts::default();
    let mut after: Option<i64> = None;
    'records: loop {
        let batch = super::outbox::records_after(db, after, BATCH).await?;
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            break;
        };
        after = Some(last.seq);
        let unpublished = listed_within(db, first.seq, last.seq).await?;
        let mut candidates = Vec::new();
        let mut reached = false;
        for record in batch {
            // Records are in commit order: the first at or past the horizon ends the run.
            if record.created_at >= before {
                reached = true;
                break;
            }
            if unpublished.contains(&record.seq) {
                counts.kept_unpublished += 1;
                continue;
            }
            candidates.push(record);
        }
        let seqs: Vec<i64> = candidates.iter().map(|r| r.seq).collect();
        let behind = behind_kept(db, &seqs).await?;
        counts.kept_in_chain += behind.len() as u64;
        candidates.retain(|r| !behind.contains(&r.seq));
        let removed: Vec<i64> = candidates.iter().map(|r| r.seq).collect();
        // With their links: the archive carries its part of each chain.
        for message in super::outbox::unpacked_linked(db, candidates).await? {
            let p = message.publication;
            let text = String::from_utf8(p.payload.to_vec())
                .map_err(|e| DbErr::Custom(format!("outbox message {}: {e}", p.seq)))?;
            let line = ArchivedMessage {
                archived: Kind::Message,
                seq: p.seq,
                kind: message.kind,
                subject: p.subject,
                message_id: p.message_id,
                headers: p.headers,
                at: message.created_at,
                message: RawValue::from_string(text)
                    .map_err(|e| DbErr::Custom(format!("outbox message {}: {e}", p.seq)))?,
            };
            write_line(out, &line)?;
            counts.messages += 1;
        }
        synced(out)?;
        if !removed.is_empty() {
            // Together: a record kept has its links.
            let txn = db.begin().await?;
            outbox_chain::Entity::delete_many()
                .filter(outbox_chain::Column::Seq.is_in(removed.iter().copied()))
                .exec(&txn)
                .await?;
            outbox::Entity::delete_many()
                .filter(outbox::Column::Seq.is_in(removed.iter().copied()))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            counts.records += removed.len() as u64;
        }
        if reached {
            break 'records;
        }
    }
    loop {
        let letters = dead_letter::Entity::find()
            .filter(dead_letter::Column::ReceivedAt.lt(before))
            .order_by_asc(dead_letter::Column::ReceivedAt)
            .limit(BATCH)
            .all(db)
            .await?;
        if letters.is_empty() {
            break;
        }
        let ids: Vec<uuid::Uuid> = letters.iter().map(|d| d.command_id).collect();
        for d in letters {
            write_line(
                out,
                &ArchivedDeadLetter {
                    archived: Kind::DeadLetter,
                    command_id: d.command_id,
                    subject: d.subject,
                    reason: d.reason,
                    detail: d.message,
                    payload: d.payload,
                    payload_bytes: d.payload_bytes,
                    received_at: d.received_at,
                },
            )?;
        }
        synced(out)?;
        dead_letter::Entity::delete_many()
            .filter(dead_letter::Column::CommandId.is_in(ids.iter().copied()))
            .exec(db)
            .await?;
        counts.dead_letters += ids.len() as u64;
    }
    Ok(counts)
}

/// Everything written so far, on disk.
fn synced(out: &mut BufWriter<File>) -> std::io::Result<()> {
    out.flush()?;
    out.get_ref().sync_data()
}

fn write_line(out: &mut impl Write, line: &impl serde::Serialize) -> Result<(), ArchiveError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Those of the records `seqs` (to be removed) with an event that comes, in its team's
/// chain, after one of a record the database keeps. Where concurrent commands committed out
/// of position order, a record can be older than one it follows in the chain; removed, it
/// would leave a hole in the part of the chain the database holds.
async fn behind_kept(
    db: &impl ConnectionTrait,
    seqs: &[i64],
) -> Result<std::collections::HashSet<i64>, DbErr> {
    let runs = super::chain::runs_of(db, seqs).await?;
    let removed: std::collections::HashSet<i64> = seqs.iter().copied().collect();
    let teams: std::collections::BTreeSet<uuid::Uuid> = runs.iter().map(|r| r.team_id).collect();
    let mut behind = std::collections::HashSet::new();
    for team in teams {
        let theirs: Vec<_> = runs.iter().filter(|r| r.team_id == team).collect();
        // The chain's first runs, one more than these: the first the database keeps is there.
        let first = super::chain::first_runs(db, team, theirs.len() as u64 + 1).await?;
        if let Some(kept) = first.iter().find(|r| !removed.contains(&r.seq)) {
            behind.extend(kept_records(&theirs, kept.place));
        }
    }
    Ok(behind)
}

/// The records of one team's `runs` (of records to be removed) to keep when the part of the
/// chain the database keeps starts at `kept_from`: each with a run there or after it, and, as
/// a record kept keeps every run of its own, each those pull the start back over.
fn kept_records(runs: &[&entity::outbox_chain::Model], mut kept_from: i64) -> Vec<i64> {
    loop {
        let kept = |seq: i64| runs.iter().any(|r| r.seq == seq && r.place >= kept_from);
        let from = runs
            .iter()
            .filter(|r| kept(r.seq))
            .map(|r| r.place)
            .fold(kept_from, i64::min);
        if from == kept_from {
            let mut seqs: Vec<i64> = runs.iter().filter(|r| kept(r.seq)).map(|r| r.seq).collect();
            seqs.sort_unstable();
            seqs.dedup();
            return seqs;
        }
        kept_from = from;
    }
}

/// The records from `first` to `last` with a message pending or parked.
async fn listed_within(
    db: &impl ConnectionTrait,
    first: i64,
    last: i64,
) -> Result<std::collections::HashSet<i64>, DbErr> {
    let (low, high) = (records::position(first, 0), records::position(last + 1, 0));
    let pending = outbox_pending::Entity::find()
        .filter(outbox_pending::Column::Seq.gte(low))
        .filter(outbox_pending::Column::Seq.lt(high))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq);
    let parked = outbox_parked::Entity::find()
        .filter(outbox_parked::Column::Seq.gte(low))
        .filter(outbox_parked::Column::Seq.lt(high))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq);
    Ok(pending
        .chain(parked)
        .map(|p| records::record_of(p).0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seq: i64, place: i64) -> entity::outbox_chain::Model {
        entity::outbox_chain::Model {
            team_id: uuid::Uuid::nil(),
            place,
            seq,
            first: 1,
            events: 1,
            prev: String::new(),
        }
    }

    #[test]
    fn the_database_keeps_each_chains_end_whole() {
        // Record 3 committed late: its place follows record 4's, which the database keeps.
        let runs = [run(1, 1), run(2, 2), run(3, 9)];
        let runs: Vec<&_> = runs.iter().collect();
        assert_eq!(kept_records(&runs, 5), [3]);
        // Record 2's events went out in two passes, the second after the kept part's start:
        // kept whole, it pulls the start back to its first run, and record 5 (place 3) too.
        let split = [run(1, 1), run(2, 2), run(5, 3), run(2, 7)];
        let split: Vec<&_> = split.iter().collect();
        assert_eq!(kept_records(&split, 6), [2, 5]);
        assert!(kept_records(&split, 8).is_empty());
    }
}

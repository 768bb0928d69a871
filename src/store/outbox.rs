//! The transactional outbox. Events and outcomes are written in the command's transaction and
//! published by the relay after commit, in order of their position (`seq`), with
//! `Nats-Msg-Id` = the message id. A command's messages are stored as records (one per series
//! and run they concern, [`entity::outbox`]), written once and kept: they are the audit trail
//! of every change. What is left to publish is listed in `outbox_pending` by position, which
//! publishing deletes from. A message the server refuses for good is parked: moved from
//! `outbox_pending` to `outbox_parked`, until an operator lists it again.

use chrono::{DateTime, Utc};
use entity::outbox::{self as records, Links, RawValue};
use entity::{outbox, outbox_parked, outbox_pending};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QueryResult, QuerySelect, Set, Statement,
};
use uuid::Uuid;

use super::StoreError;
use super::writes::Writes;
use crate::domain::event::Event;
use crate::wire::event::{EventEnvelope, SCHEMA_VERSION};
use crate::wire::outcome::Outcome;
use crate::wire::subjects::Subjects;

pub const OUTCOME_KIND: &str = "outcome";

/// What every event of one command shares.
#[derive(Debug, Clone)]
pub struct Causation<'a> {
    pub command_id: Uuid,
    pub correlation_id: Option<&'a str>,
    /// The command's W3C trace context, re-emitted as a header on each event.
    pub traceparent: Option<&'a str>,
    pub actor: Uuid,
    pub team_name: &'a str,
    pub at: DateTime<Utc>,
}

/// The bytes a message is published as, serialised once, here.
fn message_bytes<T: serde::Serialize>(message: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(message).map_err(|e| StoreError::Bug(format!("serialising a message: {e}")))
}

/// A committed message as the relay publishes it.
#[derive(Debug, Clone)]
pub struct Publication {
    pub seq: i64,
    /// Its `Nats-Msg-Id`.
    pub message_id: Uuid,
    pub subject: String,
    /// NATS headers, a JSON object of strings.
    pub headers: Option<serde_json::Value>,
    pub payload: bytes::Bytes,
    /// Core-NATS inbox the message is also sent to (an outcome's sender), if any.
    pub reply_to: Option<String>,
    /// The team whose chain the message joins: an event's ([`super::chain`]).
    pub chain_team: Option<Uuid>,
}

impl Publication {
    /// Its place in its team's chain, once linked.
    pub fn link(&self) -> Option<crate::wire::chain::Link> {
        crate::wire::chain::Link::from_stored(self.headers.as_ref())
    }
}

/// A stored message, as the relay publishes it and the audit trail shows it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub publication: Publication,
    /// `event.<type>` or `outcome`.
    pub kind: String,
    /// The command that caused it.
    pub causation_id: Uuid,
    pub created_at: DateTime<Utc>,
}

impl Stored {
    fn new(seq: i64, record: &outbox::Model, message: records::Message) -> Stored {
        let payload: Box<str> = message.payload.into();
        let event = message.kind != OUTCOME_KIND;
        Stored {
            publication: Publication {
                seq,
                message_id: message.id,
                subject: message.subject,
                headers: message.headers,
                payload: bytes::Bytes::from(String::from(payload)),
                reply_to: message.reply_to,
                chain_team: record.team_id.filter(|_| event),
            },
            kind: message.kind,
            causation_id: record.causation_id,
            created_at: message.at,
        }
    }
}

/// The stored messages of `record`, each with its position.
pub(super) fn unpacked(record: outbox::Model) -> Result<impl Iterator<Item = Stored>, DbErr> {
    Ok(records::decode(&record.body)?
        .into_iter()
        .enumerate()
        .map(move |(i, m)| Stored::new(records::position(record.seq, i), &record, m)))
}

/// The stored messages of `records`, in order, each linked event with its link in its
/// headers ([`super::chain`]).
pub(super) async fn unpacked_linked(
    db: &impl ConnectionTrait,
    records: Vec<outbox::Model>,
) -> Result<Vec<Stored>, DbErr> {
    let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
    let runs = super::chain::runs_of(db, &seqs).await?;
    let mut by_record: std::collections::HashMap<i64, Vec<&entity::outbox_chain::Model>> =
        std::collections::HashMap::new();
    for run in &runs {
        by_record.entry(run.seq).or_default().push(run);
    }
    let mut found = Vec::new();
    for record in records {
        let seq = record.seq;
        let mut messages: Vec<Stored> = unpacked(record)?.collect();
        if let Some(runs) = by_record.get(&seq) {
            super::chain::attach(&mut messages, runs)?;
        }
        found.extend(messages);
    }
    Ok(found)
}

/// Messages a transaction will write, gathered in order and written with one statement at
/// its end (see [`Messages::write_into`]).
#[derive(Debug, Default)]
pub struct Messages(Vec<Row>);

/// One outbox row to write: the message as it will be published, and what the audit trail
/// keeps with it.
#[derive(Debug)]
struct Row {
    message: Publication,
    kind: String,
    team_id: Option<Uuid>,
    causation_id: Uuid,
    series_id: Option<Uuid>,
    run_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl Row {
    fn links(&self) -> Links {
        Links {
            causation_id: self.causation_id,
            team_id: self.team_id,
            series_id: self.series_id,
            run_id: self.run_id,
            event: self.kind != OUTCOME_KIND,
        }
    }

    /// The message as stored: its payload borrowed, as written.
    fn stored(&self) -> Result<records::Message<&RawValue>, StoreError> {
        let m = &self.message;
        let payload = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
            .ok_or_else(|| StoreError::Bug(format!("a {} message that is not JSON", self.kind)))?;
        Ok(records::Message {
            id: m.message_id,
            kind: self.kind.clone(),
            subject: m.subject.clone(),
            headers: m.headers.clone(),
            reply_to: m.reply_to.clone(),
            at: self.created_at,
            payload,
        })
    }
}

impl Messages {
    /// How many messages have been added so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops the messages added at or after `len`.
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    /// The first message added at or after `from` whose payload is over `limit` bytes: its kind
    /// (`outcome`, `event.task.created`, …) and size.
    pub fn oversized(&self, from: usize, limit: usize) -> Option<(&str, usize)> {
        self.0
            .iter()
            .skip(from)
            .find(|row| row.message.payload.len() > limit)
            .map(|row| (row.kind.as_str(), row.message.payload.len()))
    }

    /// A command's outcome. Its message id is the command id: the outcomes stream then
    /// de-duplicates it too.
    pub fn outcome(
        &mut self,
        subjects: &Subjects,
        outcome: &Outcome,
        team: Option<Uuid>,
        reply_to: Option<&str>,
    ) -> Result<(), StoreError> {
        self.0.push(Row {
            message: Publication {
                seq: 0,
                message_id: outcome.command_id,
                subject: subjects.outcome(crate::domain::ids::CommandId(outcome.command_id)),
                headers: None,
                payload: message_bytes(outcome)?.into(),
                reply_to: reply_to.map(str::to_owned),
                chain_team: None,
            },
            kind: OUTCOME_KIND.to_owned(),
            team_id: team,
            causation_id: outcome.command_id,
            series_id: None,
            run_id: None,
            created_at: outcome.processed_at,
        });
        Ok(())
    }

    /// The events of one command, in the order it raised them.
    pub fn events(
        &mut self,
        subjects: &Subjects,
        cause: &Causation<'_>,
        events: &[Event],
    ) -> Result<(), StoreError> {
        for e in events {
            let event_id = Uuid::now_v7();
            let (series, run) = e.links();
            let envelope = EventEnvelope {
                schema_version: SCHEMA_VERSION,
                event_id,
                kind: e.kind.as_str().to_owned(),
                occurred_at: cause.at,
                team_id: e.team_id.0,
                team: cause.team_name.to_owned(),
                causation_id: cause.command_id,
                correlation_id: cause.correlation_id.map(str::to_owned),
                actor: cause.actor,
                data: e,
            };
            self.0.push(Row {
                message: Publication {
                    seq: 0,
                    message_id: event_id,
                    subject: subjects.event(e.kind, cause.team_name),
                    headers: cause.traceparent.map(
                        |t| serde_json::json!({ crate::wire::command::TRACEPARENT_HEADER: t }),
                    ),
                    payload: message_bytes(&envelope)?.into(),
                    reply_to: None,
                    chain_team: Some(e.team_id.0),
                },
                kind: format!("event.{}", e.kind.as_str()),
                team_id: Some(e.team_id.0),
                causation_id: cause.command_id,
                series_id: series.map(|s| s.0),
                run_id: run.map(|r| r.0),
                created_at: cause.at,
            });
        }
        Ok(())
    }

    /// Adds the statements that write the messages in the order they were added, as records
    /// ([`records::group`]), and list them for the relay, whatever the number of commands they
    /// come from: one statement on Postgres; on SQLite one per [`super::chunk_sizes`] piece
    /// and one listing them all. Returns the messages as the relay will publish them, in that
    /// order; [`numbered`] gives them their positions, from the rows the statements return.
    pub fn write_into(self, writes: &mut Writes) -> Result<Vec<Publication>, StoreError> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        let grouped = records::group(self.0.iter().map(Row::links));
        let mut rows = Vec::with_capacity(grouped.len());
        for (links, range) in &grouped {
            let messages = self.0[range.clone()]
                .iter()
                .map(Row::stored)
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(outbox::ActiveModel {
                team_id: Set(links.team_id),
                causation_id: Set(links.causation_id),
                series_id: Set(links.series_id),
                run_id: Set(links.run_id),
                messages: Set(range.len() as i32),
                body: Set(records::encode(&messages).map_err(|e| StoreError::Bug(e.to_string()))?),
                created_at: Set(self.0[range.start].created_at),
                ..Default::default()
            });
        }
        let count = rows.len();
        let publications: Vec<Publication> = self.0.into_iter().map(|r| r.message).collect();
        if writes.backend() == DbBackend::Postgres {
            let (insert, values) = super::unnest::insert(rows)?;
            writes.push_as(
                "written",
                Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    format!("{insert} RETURNING seq, messages"),
                    values,
                ),
            );
            // Last, so its rows (the messages' positions) are the ones that come back.
            writes.push(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "INSERT INTO outbox_pending (seq) SELECT (w.seq << {}) + i \
                     FROM written w, generate_series(0, w.messages - 1) AS i RETURNING seq",
                    records::RECORD_BITS
                ),
            ));
        } else {
            writes.insert(rows, None)?;
            // The newest records are these: a SQLite command transaction is the only writer
            // (`BEGIN IMMEDIATE`), and `seq` only grows.
            // Each record's positions, `seq << bits` + 0 … `messages` - 1.
            writes.push(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!(
                    "INSERT INTO outbox_pending (seq) WITH RECURSIVE m(seq, i, n) AS ( \
                     SELECT seq, 0, messages FROM \
                     (SELECT seq, messages FROM outbox ORDER BY seq DESC LIMIT ?) \
                     UNION ALL SELECT seq, i + 1, n FROM m WHERE i + 1 < n) \
                     SELECT (seq << {}) + i FROM m RETURNING seq",
                    records::RECORD_BITS
                ),
                [(count as i64).into()],
            ));
        }
        Ok(publications)
    }
}

/// The messages [`Messages::write_into`] returned, each given its position (`seq`) from
/// `rows`, the rows its statements returned (and only theirs).
pub fn numbered(
    mut publications: Vec<Publication>,
    rows: &[QueryResult],
) -> Result<Vec<Publication>, StoreError> {
    let mut seqs = rows
        .iter()
        .map(|row| row.try_get::<i64>("", "seq"))
        .collect::<Result<Vec<_>, _>>()?;
    // SQLite returns the rows of `RETURNING` in no promised order.
    seqs.sort_unstable();
    if seqs.len() != publications.len() {
        return Err(StoreError::Bug(format!(
            "{} outbox messages written, {} positions returned",
            publications.len(),
            seqs.len()
        )));
    }
    for (publication, seq) in publications.iter_mut().zip(seqs) {
        publication.seq = seq;
    }
    Ok(publications)
}

/// The `seq` of the oldest unpublished messages (after `after`, when given), in commit
/// order: the relay's next work.
pub async fn pending(
    db: &impl ConnectionTrait,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<i64>, DbErr> {
    let mut query = outbox_pending::Entity::find();
    if let Some(after) = after {
        query = query.filter(outbox_pending::Column::Seq.gt(after));
    }
    Ok(query
        .order_by_asc(outbox_pending::Column::Seq)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq)
        .collect())
}

/// The stored messages at these positions, in order.
pub async fn by_seqs(db: &impl ConnectionTrait, seqs: &[i64]) -> Result<Vec<Stored>, DbErr> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: std::collections::BTreeSet<i64> = seqs.iter().copied().collect();
    let mut ids: Vec<i64> = wanted.iter().map(|&p| records::record_of(p).0).collect();
    ids.dedup();
    let records = outbox::Entity::find()
        .filter(seq_among(db, &ids))
        .order_by_asc(outbox::Column::Seq)
        .all(db)
        .await?;
    Ok(unpacked_linked(db, records)
        .await?
        .into_iter()
        .filter(|m| wanted.contains(&m.publication.seq))
        .collect())
}

/// `seq` is one of `seqs`. On Postgres one statement whatever their number (`= ANY` of one
/// array parameter): the driver prepares and caches a statement per shape and connection, and
/// an `IN` list is a shape per length, which over a long run filled every connection's cache.
/// SQLite has no arrays and one connection: an `IN` list.
pub(super) fn seq_among(db: &impl ConnectionTrait, seqs: &[i64]) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::{Alias, ArrayType, Expr, ExprTrait, Value};
    if db.get_database_backend() == DbBackend::Postgres {
        let values = seqs.iter().map(|&s| Value::BigInt(Some(s))).collect();
        let array = Value::Array(ArrayType::BigInt, Some(Box::new(values)));
        return Expr::cust_with_values("\"seq\" = ANY($1)", [array]);
    }
    Expr::col(Alias::new("seq")).is_in(seqs.iter().copied())
}

/// The messages of at most `records` records after record `after` (all from the first when
/// `None`), in order: a reader that walks the whole log passes on the last message's record
/// ([`entity::outbox::record_of`] of its `seq`).
pub async fn messages(
    db: &impl ConnectionTrait,
    after: Option<i64>,
    records: u64,
) -> Result<Vec<Stored>, DbErr> {
    unpacked_linked(db, records_after(db, after, records).await?).await
}

/// At most `limit` records after record `after` (from the first when `None`), in order.
pub(super) async fn records_after(
    db: &impl ConnectionTrait,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<outbox::Model>, DbErr> {
    let mut query = outbox::Entity::find();
    if let Some(after) = after {
        query = query.filter(outbox::Column::Seq.gt(after));
    }
    query
        .order_by_asc(outbox::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// Which stored messages [`relist`] lists again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relist {
    /// Every event after a position: to rebuild the events stream.
    EventsAfter(Option<i64>),
    /// Every outcome stored since a time: to refill the outcomes stream.
    OutcomesSince(DateTime<Utc>),
}

/// Lists stored messages again for the relay to publish (under their own message ids), but
/// for parked ones, which wait for `republish`; returns how many. For an operator rebuilding a
/// stream, with the workers stopped: a relay running meanwhile would publish them behind newer
/// messages.
pub async fn relist(db: &sea_orm::DatabaseConnection, which: Relist) -> Result<u64, DbErr> {
    use sea_orm::sea_query::OnConflict;
    let parked: std::collections::HashSet<i64> = outbox_parked::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq)
        .collect();
    let mut after = match which {
        Relist::EventsAfter(Some(position)) => Some(records::record_of(position).0 - 1),
        _ => None,
    };
    let mut listed = 0;
    loop {
        let batch = messages(db, after, 500).await?;
        let Some(last) = batch.last() else {
            return Ok(listed);
        };
        after = Some(records::record_of(last.publication.seq).0);
        let seqs: Vec<i64> = batch
            .iter()
            .filter(|m| match which {
                Relist::EventsAfter(from) => {
                    m.kind.starts_with("event.") && from.is_none_or(|f| m.publication.seq > f)
                }
                Relist::OutcomesSince(since) => m.kind == OUTCOME_KIND && m.created_at >= since,
            })
            .map(|m| m.publication.seq)
            .filter(|seq| !parked.contains(seq))
            .collect();
        for chunk in seqs.chunks(1000) {
            outbox_pending::Entity::insert_many(
                chunk
                    .iter()
                    .map(|&seq| outbox_pending::ActiveModel { seq: Set(seq) }),
            )
            .on_conflict(
                OnConflict::column(outbox_pending::Column::Seq)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        }
        listed += seqs.len() as u64;
    }
}

/// The position of the stored message with this id (an event id, or a command id for its
/// outcome), searched from the newest record back.
pub async fn position_of(
    db: &impl ConnectionTrait,
    message_id: Uuid,
) -> Result<Option<i64>, DbErr> {
    let mut before: Option<i64> = None;
    loop {
        let mut query = outbox::Entity::find();
        if let Some(before) = before {
            query = query.filter(outbox::Column::Seq.lt(before));
        }
        let batch = query
            .order_by_desc(outbox::Column::Seq)
            .limit(500)
            .all(db)
            .await?;
        let Some(last) = batch.last() else {
            return Ok(None);
        };
        before = Some(last.seq);
        for record in batch {
            if let Some(m) = unpacked(record)?.find(|m| m.publication.message_id == message_id) {
                return Ok(Some(m.publication.seq));
            }
        }
    }
}

/// The oldest unpublished messages, in commit order.
pub async fn unpublished(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<Stored>, DbErr> {
    by_seqs(db, &pending(db, None, limit).await?).await
}

/// Takes published messages off the relay's list.
pub async fn mark_published(db: &impl ConnectionTrait, seqs: &[i64]) -> Result<(), DbErr> {
    if seqs.is_empty() {
        return Ok(());
    }
    outbox_pending::Entity::delete_many()
        .filter(seq_among(db, seqs))
        .exec(db)
        .await?;
    Ok(())
}

/// Takes every message above `above` (when given) up to `through` off the relay's list: for
/// a relay that published them all (SQLite's, see the relay). One statement shape whatever
/// their number.
pub async fn mark_published_through(
    db: &impl ConnectionTrait,
    above: Option<i64>,
    through: i64,
) -> Result<(), DbErr> {
    let mut delete =
        outbox_pending::Entity::delete_many().filter(outbox_pending::Column::Seq.lte(through));
    if let Some(above) = above {
        delete = delete.filter(outbox_pending::Column::Seq.gt(above));
    }
    delete.exec(db).await?;
    Ok(())
}

/// Sets a message aside: off the relay's list and onto the parked one, with why. Call it
/// inside a transaction, so that the message is on exactly one of the two lists. A message
/// listed again by hand while parked is parked anew (its reason and time replaced).
pub async fn park(
    db: &impl ConnectionTrait,
    seq: i64,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    outbox_parked::Entity::insert(outbox_parked::ActiveModel {
        seq: Set(seq),
        reason: Set(reason.to_owned()),
        parked_at: Set(at),
    })
    .on_conflict(
        OnConflict::column(outbox_parked::Column::Seq)
            .update_columns([
                outbox_parked::Column::Reason,
                outbox_parked::Column::ParkedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    outbox_pending::Entity::delete_by_id(seq).exec(db).await?;
    Ok(())
}

/// A parked message, as an operator lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub seq: i64,
    pub subject: String,
    /// `event.<type>` or `outcome`.
    pub kind: String,
    /// The payload's size.
    pub bytes: usize,
    pub reason: String,
    pub parked_at: DateTime<Utc>,
}

/// The parked messages among `seqs` (all of them for `None`), in `seq` order.
async fn parked_among(
    db: &impl ConnectionTrait,
    seqs: Option<&[i64]>,
) -> Result<Vec<Parked>, DbErr> {
    let mut query = outbox_parked::Entity::find();
    if let Some(seqs) = seqs {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        query = query.filter(seq_among(db, seqs));
    }
    let parked = query
        .order_by_asc(outbox_parked::Column::Seq)
        .all(db)
        .await?;
    let seqs: Vec<i64> = parked.iter().map(|p| p.seq).collect();
    let mut messages: std::collections::HashMap<i64, Stored> = by_seqs(db, &seqs)
        .await?
        .into_iter()
        .map(|m| (m.publication.seq, m))
        .collect();
    Ok(parked
        .into_iter()
        .filter_map(|p| {
            // Records are never removed while a message of theirs is parked.
            let message = messages.remove(&p.seq)?;
            Some(Parked {
                seq: p.seq,
                subject: message.publication.subject,
                kind: message.kind,
                bytes: message.publication.payload.len(),
                reason: p.reason,
                parked_at: p.parked_at,
            })
        })
        .collect())
}

/// Every parked message, oldest first.
pub async fn parked(db: &impl ConnectionTrait) -> Result<Vec<Parked>, DbErr> {
    parked_among(db, None).await
}

/// How many messages are parked (metrics).
pub async fn parked_count(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    outbox_parked::Entity::find().count(db).await
}

/// The highest `seq` ever parked and still parked, if any (the SQLite relay's bookkeeping).
pub async fn last_parked(db: &impl ConnectionTrait) -> Result<Option<i64>, DbErr> {
    Ok(outbox_parked::Entity::find()
        .order_by_desc(outbox_parked::Column::Seq)
        .one(db)
        .await?
        .map(|p| p.seq))
}

/// Which parked messages to list again.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    All,
    Seqs(&'a [i64]),
}

#[derive(Debug, thiserror::Error)]
pub enum RepublishError {
    #[error("not parked: {}", .0.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))]
    NotParked(Vec<i64>),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Moves parked messages back onto the relay's list, which publishes them again (under their
/// original message ids); returns what was moved. All or nothing: a `seq` that is not parked
/// moves none.
pub async fn republish(
    db: &sea_orm::DatabaseConnection,
    which: Selection<'_>,
) -> Result<Vec<Parked>, RepublishError> {
    use sea_orm::sea_query::OnConflict;
    let txn = super::begin(db).await?;
    let moved = match which {
        Selection::All => parked_among(&txn, None).await?,
        Selection::Seqs(seqs) => {
            let found = parked_among(&txn, Some(seqs)).await?;
            let mut missing: Vec<i64> = seqs
                .iter()
                .copied()
                .filter(|s| !found.iter().any(|p| p.seq == *s))
                .collect();
            if !missing.is_empty() {
                missing.sort_unstable();
                missing.dedup();
                return Err(RepublishError::NotParked(missing));
            }
            found
        }
    };
    if !moved.is_empty() {
        let seqs: Vec<i64> = moved.iter().map(|p| p.seq).collect();
        outbox_parked::Entity::delete_many()
            .filter(seq_among(&txn, &seqs))
            .exec(&txn)
            .await?;
        outbox_pending::Entity::insert_many(
            seqs.iter()
                .map(|&seq| outbox_pending::ActiveModel { seq: Set(seq) }),
        )
        .on_conflict(
            OnConflict::column(outbox_pending::Column::Seq)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(moved)
}

/// Every event of `team` the records hold, in its chain's order: those from before events
/// were linked, then the linked ones by place, then any other without a link (not one the
/// relay wrote: [`crate::wire::chain::check`] names it inserted). One still to be published
/// is left out: the relay links it then. Reads every record of the team (`sop audit verify`,
/// an operator's check).
pub async fn team_events(db: &impl ConnectionTrait, team: Uuid) -> Result<Vec<Stored>, DbErr> {
    let records = outbox::Entity::find()
        .filter(outbox::Column::TeamId.eq(team))
        .order_by_asc(outbox::Column::Seq)
        .all(db)
        .await?;
    let (mut linked, unlinked): (Vec<Stored>, Vec<Stored>) = unpacked_linked(db, records)
        .await?
        .into_iter()
        .filter(|m| m.kind != OUTCOME_KIND)
        .partition(|m| m.publication.link().is_some());
    let unlinked_seqs: Vec<i64> = unlinked.iter().map(|m| m.publication.seq).collect();
    let waiting = listed(db, &unlinked_seqs).await?;
    let chain_start = linked.iter().map(|m| m.publication.seq).min();
    let (before, after): (Vec<Stored>, Vec<Stored>) = unlinked
        .into_iter()
        .filter(|m| !waiting.contains(&m.publication.seq))
        .partition(|m| chain_start.is_none_or(|start| m.publication.seq < start));
    linked.sort_by_key(|m| m.publication.link().map(|l| l.index));
    Ok(before.into_iter().chain(linked).chain(after).collect())
}

/// Those of `seqs` still on the pending list.
pub(super) async fn listed(
    db: &impl ConnectionTrait,
    seqs: &[i64],
) -> Result<std::collections::HashSet<i64>, DbErr> {
    if seqs.is_empty() {
        return Ok(Default::default());
    }
    Ok(outbox_pending::Entity::find()
        .filter(seq_among(db, seqs))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq)
        .collect())
}

/// How many messages wait for the relay, or were published within the last moment and are
/// not yet taken off its list (for tests, health and metrics).
pub async fn backlog(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    outbox_pending::Entity::find().count(db).await
}

/// The audit trail: the events of a series or of a run after the position `after`, in commit
/// order, at most `limit`, each with whether it has been published yet (a parked message has
/// not).
pub async fn trail(
    db: &impl ConnectionTrait,
    series: Option<Uuid>,
    run: Option<Uuid>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<(Stored, bool)>, DbErr> {
    let mut events: Vec<Stored> = Vec::new();
    let mut from = after.map(|p| records::record_of(p).0);
    // Every record found holds at least one event of the series or run, most hold a command's
    // dozen: read a few records, then more as long as the page is not full.
    let mut records = 4;
    loop {
        let mut q = outbox::Entity::find();
        if let Some(s) = series {
            q = q.filter(outbox::Column::SeriesId.eq(s));
        }
        if let Some(r) = run {
            q = q.filter(outbox::Column::RunId.eq(r));
        }
        if let Some(seq) = from {
            q = q.filter(outbox::Column::Seq.gte(seq));
        }
        let batch = q
            .order_by_asc(outbox::Column::Seq)
            .limit(records)
            .all(db)
            .await?;
        let ended = (batch.len() as u64) < records;
        from = batch.last().map(|r| r.seq + 1);
        for record in batch {
            events.extend(unpacked(record)?.filter(|m| {
                m.kind.starts_with("event.") && after.is_none_or(|a| m.publication.seq > a)
            }));
        }
        if ended || events.len() as u64 >= limit {
            break;
        }
        records = (records * 4).min(limit.max(1));
    }
    events.truncate(limit as usize);
    let seqs: Vec<i64> = events.iter().map(|m| m.publication.seq).collect();
    let pending: std::collections::HashSet<i64> = outbox_pending::Entity::find()
        .filter(outbox_pending::Column::Seq.is_in(seqs.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq)
        .collect();
    let parked: std::collections::HashSet<i64> = outbox_parked::Entity::find()
        .filter(outbox_parked::Column::Seq.is_in(seqs.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq)
        .collect();
    Ok(events
        .into_iter()
        .map(|m| {
            let seq = m.publication.seq;
            (m, !pending.contains(&seq) && !parked.contains(&seq))
        })
        .collect())
}

/// The outcome messages of these commands (their payloads, as published), by command id.
pub async fn outcomes_of(
    db: &impl ConnectionTrait,
    commands: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, bytes::Bytes>, DbErr> {
    let mut found = std::collections::HashMap::new();
    if commands.is_empty() {
        return Ok(found);
    }
    for record in outbox::Entity::find()
        .filter(outbox::Column::CausationId.is_in(commands.iter().copied()))
        .all(db)
        .await?
    {
        for message in unpacked(record)? {
            if message.kind == OUTCOME_KIND {
                found.insert(message.causation_id, message.publication.payload);
            }
        }
    }
    Ok(found)
}

/// The system whose command caused a stored event (its envelope's `actor`).
pub fn actor_of(payload: &[u8]) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct Sender {
        actor: Option<Uuid>,
    }
    serde_json::from_slice::<Sender>(payload)
        .ok()
        .and_then(|s| s.actor)
}

/// How many messages wait for the relay, and since when the oldest has (metrics).
pub async fn lag(db: &impl ConnectionTrait) -> Result<(u64, Option<DateTime<Utc>>), DbErr> {
    let backlog = backlog(db).await?;
    let oldest = unpublished(db, 1)
        .await?
        .into_iter()
        .next()
        .map(|m| m.created_at);
    Ok((backlog, oldest))
}

/// Arbitrary, fixed key of the relay's Postgres advisory lock.
const RELAY_LOCK_KEY: i64 = 0x736f_7072_656c_6179; // "soprelay"

/// Postgres: whether this transaction holds the relays' turn (an advisory lock it keeps until
/// it ends); another relay holding it answers false at once.
pub async fn take_relay_turn(txn: &DatabaseTransaction) -> Result<bool, DbErr> {
    let row = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_try_advisory_xact_lock({RELAY_LOCK_KEY}) AS locked"),
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<bool>("", "locked"))
        .transpose()?
        .unwrap_or(false))
}

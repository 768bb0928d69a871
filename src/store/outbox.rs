//! The transactional outbox. Events and outcomes are written in the command's transaction and
//! published by the relay after commit, in `seq` order, with `Nats-Msg-Id` = `message_id`.
//! Each row is written once and stays: the rows are the audit trail of every change. What is
//! left to publish is listed in `outbox_pending`, which publishing deletes from. A message the
//! server refuses for good is parked: moved from `outbox_pending` to `outbox_parked`, until an
//! operator lists it again.

use chrono::{DateTime, Utc};
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
}

impl From<outbox::Model> for Publication {
    fn from(row: outbox::Model) -> Publication {
        Publication {
            seq: row.seq,
            message_id: row.message_id,
            subject: row.subject,
            headers: row.headers,
            payload: row.payload.into(),
            reply_to: row.reply_to,
        }
    }
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
    fn active_model(&self) -> outbox::ActiveModel {
        let m = &self.message;
        outbox::ActiveModel {
            message_id: Set(m.message_id),
            kind: Set(self.kind.clone()),
            subject: Set(m.subject.clone()),
            team_id: Set(self.team_id),
            causation_id: Set(Some(self.causation_id)),
            series_id: Set(self.series_id),
            run_id: Set(self.run_id),
            headers: Set(m.headers.clone()),
            payload: Set(m.payload.to_vec()),
            reply_to: Set(m.reply_to.clone()),
            created_at: Set(self.created_at),
            ..Default::default()
        }
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

    /// Adds the statements that write the messages in the order they were added (`seq`
    /// follows it) and list them for the relay, whatever the number of commands they come
    /// from: one statement on Postgres; on SQLite one per [`super::chunk_sizes`] piece and one
    /// listing them all. Returns the messages as the relay will publish them, in that order;
    /// [`numbered`] gives them their `seq`, from the rows the statements return.
    pub fn write_into(self, writes: &mut Writes) -> Result<Vec<Publication>, StoreError> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<outbox::ActiveModel> = self.0.iter().map(Row::active_model).collect();
        let publications: Vec<Publication> = self.0.into_iter().map(|r| r.message).collect();
        if writes.backend() == DbBackend::Postgres {
            let (insert, values) = super::unnest::insert(rows)?;
            writes.push_as(
                "written",
                Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    format!("{insert} RETURNING seq"),
                    values,
                ),
            );
            // Last, so its rows (the same `seq`s) are the ones that come back.
            writes.push(Statement::from_string(
                DbBackend::Postgres,
                "INSERT INTO outbox_pending (seq) SELECT seq FROM written RETURNING seq",
            ));
        } else {
            writes.insert(rows, Some("seq"))?;
            // The newest rows are these: a SQLite command transaction is the only writer
            // (`BEGIN IMMEDIATE`), and `seq` only grows.
            writes.push(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO outbox_pending (seq) SELECT seq FROM outbox ORDER BY seq DESC LIMIT ?",
                [(publications.len() as i64).into()],
            ));
        }
        Ok(publications)
    }
}

/// The messages [`Messages::write_into`] returned, each given its `seq` from `rows`, the
/// rows its statements returned (and only theirs).
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
            "{} outbox messages written, {} sequence numbers returned",
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

/// The messages of these `seq`s, in `seq` order.
pub async fn by_seqs(db: &impl ConnectionTrait, seqs: &[i64]) -> Result<Vec<outbox::Model>, DbErr> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    outbox::Entity::find()
        .filter(seq_among(db, seqs))
        .order_by_asc(outbox::Column::Seq)
        .all(db)
        .await
}

/// `seq` is one of `seqs`. On Postgres one statement whatever their number (`= ANY` of one
/// array parameter): the driver prepares and caches a statement per shape and connection, and
/// an `IN` list is a shape per length, which over a long run filled every connection's cache.
/// SQLite has no arrays and one connection: an `IN` list.
fn seq_among(db: &impl ConnectionTrait, seqs: &[i64]) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::{Alias, ArrayType, Expr, ExprTrait, Value};
    if db.get_database_backend() == DbBackend::Postgres {
        let values = seqs.iter().map(|&s| Value::BigInt(Some(s))).collect();
        let array = Value::Array(ArrayType::BigInt, Some(Box::new(values)));
        return Expr::cust_with_values("\"seq\" = ANY($1)", [array]);
    }
    Expr::col(Alias::new("seq")).is_in(seqs.iter().copied())
}

/// The oldest unpublished messages, in commit order.
pub async fn unpublished(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<outbox::Model>, DbErr> {
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
    let mut messages: std::collections::HashMap<i64, outbox::Model> = by_seqs(db, &seqs)
        .await?
        .into_iter()
        .map(|m| (m.seq, m))
        .collect();
    Ok(parked
        .into_iter()
        .filter_map(|p| {
            // The foreign key keeps the outbox row of every parked message.
            let message = messages.remove(&p.seq)?;
            Some(Parked {
                seq: p.seq,
                subject: message.subject,
                kind: message.kind,
                bytes: message.payload.len(),
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

/// How many messages wait for the relay, or were published within the last moment and are
/// not yet taken off its list (for tests, health and metrics).
pub async fn backlog(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    outbox_pending::Entity::find().count(db).await
}

/// The audit trail: the events of a series or of a run after the sequence `after`, in commit
/// (`seq`) order, at most `limit`, each with whether it has been published yet (a parked
/// message has not).
pub async fn trail(
    db: &impl ConnectionTrait,
    series: Option<Uuid>,
    run: Option<Uuid>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<(outbox::Model, bool)>, DbErr> {
    let mut q = outbox::Entity::find().filter(outbox::Column::Kind.starts_with("event."));
    if let Some(s) = series {
        q = q.filter(outbox::Column::SeriesId.eq(s));
    }
    if let Some(r) = run {
        q = q.filter(outbox::Column::RunId.eq(r));
    }
    if let Some(seq) = after {
        q = q.filter(outbox::Column::Seq.gt(seq));
    }
    let rows = q
        .order_by_asc(outbox::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    let pending: std::collections::HashSet<i64> = outbox_pending::Entity::find()
        .filter(outbox_pending::Column::Seq.is_in(rows.iter().map(|r| r.seq)))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq)
        .collect();
    let parked: std::collections::HashSet<i64> = outbox_parked::Entity::find()
        .filter(outbox_parked::Column::Seq.is_in(rows.iter().map(|r| r.seq)))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq)
        .collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            let published = !pending.contains(&r.seq) && !parked.contains(&r.seq);
            (r, published)
        })
        .collect())
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
        .map(|r| r.created_at);
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

//! The transactional outbox. Events and outcomes are written in the command's transaction and
//! published by the relay after commit, in `seq` order, with `Nats-Msg-Id` = `message_id`.
//! Each row is written once and stays: the rows are the audit trail of every change. What is
//! left to publish is listed in `outbox_pending`, which publishing deletes from.

use chrono::{DateTime, Utc};
use entity::{outbox, outbox_pending};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QueryResult, QuerySelect, Set, Statement,
};
use uuid::Uuid;

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
fn message_bytes<T: serde::Serialize>(message: &T) -> Result<Vec<u8>, DbErr> {
    serde_json::to_vec(message).map_err(|e| DbErr::Custom(format!("serialising a message: {e}")))
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
    ) -> Result<(), DbErr> {
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
    ) -> Result<(), DbErr> {
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
    pub fn write_into(self, writes: &mut Writes) -> Result<Vec<Publication>, DbErr> {
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
) -> Result<Vec<Publication>, DbErr> {
    let mut seqs = rows
        .iter()
        .map(|row| row.try_get::<i64>("", "seq"))
        .collect::<Result<Vec<_>, _>>()?;
    // SQLite returns the rows of `RETURNING` in no promised order.
    seqs.sort_unstable();
    if seqs.len() != publications.len() {
        return Err(DbErr::Custom(format!(
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

/// Takes every message up to `seq` off the relay's list: for a relay that published them all
/// (SQLite's, see the relay). One statement shape whatever their number.
pub async fn mark_published_through(db: &impl ConnectionTrait, seq: i64) -> Result<(), DbErr> {
    outbox_pending::Entity::delete_many()
        .filter(outbox_pending::Column::Seq.lte(seq))
        .exec(db)
        .await?;
    Ok(())
}

/// How many messages wait for the relay, or were published within the last moment and are
/// not yet taken off its list (for tests, health and metrics).
pub async fn backlog(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    outbox_pending::Entity::find().count(db).await
}

/// The audit trail: the events of a series or of a run after the sequence `after`, in commit
/// (`seq`) order, at most `limit`, each with whether it has been published yet.
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
    Ok(rows
        .into_iter()
        .map(|r| {
            let published = !pending.contains(&r.seq);
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

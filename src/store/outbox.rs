//! The transactional outbox. Events and outcomes are written in the command's transaction and
//! published by the relay after commit, in `seq` order, with `Nats-Msg-Id` = `message_id`.
//! Each row is written once and stays: the rows are the audit trail of every change. What is
//! left to publish is listed in `outbox_pending`, which publishing deletes from.

use chrono::{DateTime, Utc};
use entity::{outbox, outbox_pending};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

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

/// Messages a transaction will write, gathered in order and written with one statement at
/// its end (see [`Messages::write`]).
#[derive(Debug, Default)]
pub struct Messages(Vec<outbox::ActiveModel>);

impl Messages {
    /// A command's outcome. Its message id is the command id: the outcomes stream then
    /// de-duplicates it too.
    pub fn outcome(
        &mut self,
        subjects: &Subjects,
        outcome: &Outcome,
        team: Option<Uuid>,
        reply_to: Option<&str>,
    ) -> Result<(), DbErr> {
        self.0.push(outbox::ActiveModel {
            message_id: Set(outcome.command_id),
            kind: Set(OUTCOME_KIND.to_owned()),
            subject: Set(subjects.outcome(crate::domain::ids::CommandId(outcome.command_id))),
            team_id: Set(team),
            causation_id: Set(Some(outcome.command_id)),
            series_id: Set(None),
            run_id: Set(None),
            headers: Set(None),
            payload: Set(message_bytes(outcome)?),
            reply_to: Set(reply_to.map(str::to_owned)),
            created_at: Set(outcome.processed_at),
            ..Default::default()
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
            self.0.push(outbox::ActiveModel {
                message_id: Set(event_id),
                kind: Set(format!("event.{}", e.kind.as_str())),
                subject: Set(subjects.event(e.kind, cause.team_name)),
                team_id: Set(Some(e.team_id.0)),
                causation_id: Set(Some(cause.command_id)),
                series_id: Set(series.map(|s| s.0)),
                run_id: Set(run.map(|r| r.0)),
                headers: Set(cause
                    .traceparent
                    .map(|t| serde_json::json!({ crate::wire::command::TRACEPARENT_HEADER: t }))),
                payload: Set(message_bytes(&envelope)?),
                reply_to: Set(None),
                created_at: Set(cause.at),
                ..Default::default()
            });
        }
        Ok(())
    }

    /// Writes the messages in the order they were added (`seq` follows it), and lists them
    /// for the relay, whatever the number of commands they come from: one statement on
    /// Postgres, two per [`super::chunk_sizes`] piece on SQLite.
    pub async fn write(self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        if self.0.is_empty() {
            return Ok(());
        }
        if db.get_database_backend() == DbBackend::Postgres {
            super::unnest::exec(db, self.0, |insert| {
                format!(
                    "WITH written AS ({insert} RETURNING seq) \
                     INSERT INTO outbox_pending (seq) SELECT seq FROM written"
                )
            })
            .await?;
            return Ok(());
        }
        let mut rows = self.0.into_iter();
        for size in super::chunk_sizes(rows.len()) {
            let seqs = outbox::Entity::insert_many(rows.by_ref().take(size))
                .exec_with_returning_keys(db)
                .await?;
            let pending = seqs
                .into_iter()
                .map(|seq| outbox_pending::ActiveModel { seq: Set(seq) })
                .collect();
            super::insert_rows(db, pending, None).await?;
        }
        Ok(())
    }
}

/// The oldest unpublished messages, in commit order.
pub async fn unpublished(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<outbox::Model>, DbErr> {
    let seqs: Vec<i64> = outbox_pending::Entity::find()
        .order_by_asc(outbox_pending::Column::Seq)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.seq)
        .collect();
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    outbox::Entity::find()
        .filter(outbox::Column::Seq.is_in(seqs))
        .order_by_asc(outbox::Column::Seq)
        .all(db)
        .await
}

/// Takes published messages off the relay's list.
pub async fn mark_published(db: &impl ConnectionTrait, seqs: &[i64]) -> Result<(), DbErr> {
    if seqs.is_empty() {
        return Ok(());
    }
    outbox_pending::Entity::delete_many()
        .filter(outbox_pending::Column::Seq.is_in(seqs.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// How many messages wait for the relay (for tests, health and metrics).
pub async fn backlog(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    outbox_pending::Entity::find().count(db).await
}

/// The audit trail: every event of a series or of a run, in commit order, each with whether
/// it has been published yet.
pub async fn trail(
    db: &impl ConnectionTrait,
    series: Option<Uuid>,
    run: Option<Uuid>,
    limit: u64,
) -> Result<Vec<(outbox::Model, bool)>, DbErr> {
    let mut q = outbox::Entity::find().filter(outbox::Column::Kind.starts_with("event."));
    if let Some(s) = series {
        q = q.filter(outbox::Column::SeriesId.eq(s));
    }
    if let Some(r) = run {
        q = q.filter(outbox::Column::RunId.eq(r));
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

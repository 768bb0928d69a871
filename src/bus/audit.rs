//! `sop audit verify`: a team's event chain ([`crate::wire::chain`]) checked in both of its
//! copies — the records in the database (with the archives of what was removed from it) and
//! the team's events stream — and the two compared; and the worker's signed checkpoints of
//! each chain's head, which a copy kept elsewhere holds against a history rewritten later.

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use serde::Serialize;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::store;
use crate::wire::chain::{self, Checked, Head, Held, Link};
use crate::wire::subjects::Subjects;

/// A team's chain head, signed by the worker: published on `sop.checkpoint.<team>`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub team: String,
    pub team_id: uuid::Uuid,
    /// The chain's length, which is its last event's place.
    pub length: i64,
    /// That event's hash.
    pub head: String,
    pub at: DateTime<Utc>,
    /// The worker's key (`U…`).
    pub public_key: String,
    /// Ed25519 over [`checkpoint_message`], base64url without padding.
    pub signature: String,
}

/// The bytes a checkpoint's signature is over.
pub fn checkpoint_message(team_id: uuid::Uuid, length: i64, head: &str, at: &str) -> Vec<u8> {
    format!("sop-checkpoint-v1\n{team_id}\n{length}\n{head}\n{at}").into_bytes()
}

impl Checkpoint {
    fn signed(team: String, team_id: uuid::Uuid, head: &Head, key: &nkeys::KeyPair) -> Checkpoint {
        let at = Utc::now();
        let message = checkpoint_message(team_id, head.length, &head.hash, &at.to_rfc3339());
        Checkpoint {
            team,
            team_id,
            length: head.length,
            head: head.hash.clone(),
            at,
            public_key: key.public_key(),
            signature: crate::wire::signature::sign(key, &message),
        }
    }

    /// Whether its signature is its key's.
    pub fn signature_holds(&self) -> bool {
        let message =
            checkpoint_message(self.team_id, self.length, &self.head, &self.at.to_rfc3339());
        crate::wire::signature::verify(&self.public_key, &message, &self.signature).is_ok()
    }
}

/// Publishes a signed checkpoint of every chain that moved, every `every`, until `stop`.
pub async fn checkpoints(
    db: DatabaseConnection,
    js: jetstream::Context,
    subjects: Subjects,
    key: nkeys::KeyPair,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut published: HashMap<uuid::Uuid, i64> = HashMap::new();
    while !*stop.borrow() {
        match store::teams::all_heads(&db).await {
            Ok(heads) => {
                for (id, team, head) in heads {
                    if published.get(&id) == Some(&head.length) {
                        continue;
                    }
                    let checkpoint = Checkpoint::signed(team.clone(), id, &head, &key);
                    let Ok(bytes) = serde_json::to_vec(&checkpoint) else {
                        continue;
                    };
                    let sent = match js.publish(subjects.checkpoint(&team), bytes.into()).await {
                        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match sent {
                        Ok(()) => {
                            published.insert(id, head.length);
                        }
                        Err(error) => {
                            tracing::warn!(%team, %error, "publishing a chain checkpoint failed; trying again next time")
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "reading the chain heads for a checkpoint failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// What the checkpoints of a team say of its chain.
#[derive(Debug, Default, Serialize)]
pub struct Checkpoints {
    /// Checkpoints whose signature holds and whose head the chain has at their place.
    pub confirmed: usize,
    /// The latest place one confirmed.
    pub confirmed_to: Option<i64>,
    /// The keys that signed them.
    pub keys: Vec<String>,
    /// The first that does not hold: a bad signature, or a head the chain no longer has.
    pub first_contradiction: Option<Contradiction>,
}

#[derive(Debug, Serialize)]
pub struct Contradiction {
    pub length: i64,
    pub head: String,
    pub at: DateTime<Utc>,
    /// What the chain holds at that place (none: not held, or the signature did not hold).
    pub chain_has: Option<String>,
    pub signature_holds: bool,
}

/// What checking a team's chain found.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub team: String,
    /// Where the team's row says its chain ends.
    pub recorded_length: i64,
    pub database: Checked,
    pub stream: Checked,
    /// The first place the two copies hold different events.
    pub disagree_at: Option<i64>,
    /// Events the outbox has yet to publish: the stream may lag by these.
    pub unpublished: u64,
    pub checkpoints: Checkpoints,
}

impl Verification {
    /// Nothing changed, deleted, inserted or reordered, and the copies agree.
    pub fn intact(&self) -> bool {
        self.database.first_break.is_none()
            && self.stream.first_break.is_none()
            && self.disagree_at.is_none()
            && self.checkpoints.first_contradiction.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no team {0}")]
    NoTeam(String),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error("reading the events stream {stream}: {source}")]
    Stream {
        stream: String,
        source: async_nats::Error,
    },
}

/// Checks `team`'s chain in the database (after `archived`, the team's events the archives
/// hold, in their order) and in its stream, and against the checkpoints published.
pub async fn verify(
    db: &DatabaseConnection,
    js: &jetstream::Context,
    subjects: &Subjects,
    team: &str,
    archived: Vec<Held>,
) -> Result<Verification, VerifyError> {
    let record = store::teams::find_by_name(db, team)
        .await?
        .ok_or_else(|| VerifyError::NoTeam(team.to_owned()))?;
    let heads = store::teams::chain_heads(db, &[record.id].into()).await?;
    let head = heads.get(&record.id).cloned().unwrap_or_default();
    // The archives' part in its chain's order (an archive holds its records in position
    // order, and the archives may be given in any), then the database's.
    let mut archived = archived;
    archived.sort_by_key(|h| h.link.as_ref().map(|l| l.index));
    let stored: Vec<Held> = archived
        .into_iter()
        .chain(
            store::outbox::team_events(db, record.id)
                .await?
                .into_iter()
                .map(|m| Held {
                    link: Link::from_stored(m.publication.headers.as_ref()),
                    event_id: m.publication.message_id,
                    payload: m.publication.payload,
                    at: format!("outbox position {}", m.publication.seq),
                }),
        )
        .collect();
    let database = chain::check(record.id, &stored, Some(&head));
    let name = subjects.team_events_stream(team);
    let held = stream_events(js, &name)
        .await
        .map_err(|source| VerifyError::Stream {
            stream: name.clone(),
            source,
        })?;
    let unpublished = store::outbox::backlog(db).await?;
    // A stream that lags while nothing waits to be published has lost its tail.
    let settled = (unpublished == 0).then_some(&head);
    let stream = chain::check(record.id, &held, settled);
    let disagree_at = chain::first_difference(&database, &stream);
    let stream_name = subjects.checkpoints_stream();
    let checkpoints = read_checkpoints(js, &stream_name, &subjects.checkpoint(team))
        .await
        .map_err(|source| VerifyError::Stream {
            stream: stream_name,
            source,
        })?;
    let checkpoints = held_against(&checkpoints, &database, &stream);
    Ok(Verification {
        team: team.to_owned(),
        recorded_length: head.length,
        database,
        stream,
        disagree_at,
        unpublished,
        checkpoints,
    })
}

/// The checkpoints against the chain as the database (else the stream) holds it.
fn held_against(checkpoints: &[Checkpoint], database: &Checked, stream: &Checked) -> Checkpoints {
    let mut found = Checkpoints::default();
    for c in checkpoints {
        let chain_has = database
            .hashes
            .get(&c.length)
            .or_else(|| stream.hashes.get(&c.length));
        let signature_holds = c.signature_holds();
        if !signature_holds || chain_has.is_some_and(|h| *h != c.head) {
            found.first_contradiction = Some(Contradiction {
                length: c.length,
                head: c.head.clone(),
                at: c.at,
                chain_has: chain_has.cloned(),
                signature_holds,
            });
            break;
        }
        if chain_has.is_some() {
            found.confirmed += 1;
            found.confirmed_to = found.confirmed_to.max(Some(c.length));
            if !found.keys.contains(&c.public_key) {
                found.keys.push(c.public_key.clone());
            }
        }
    }
    found
}

/// The checkpoints of one team, oldest first.
async fn read_checkpoints(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Result<Vec<Checkpoint>, async_nats::Error> {
    Ok(read_all(js, stream, subject)
        .await?
        .iter()
        .filter_map(|(_, message)| serde_json::from_slice(&message.payload).ok())
        .collect())
}

/// Every message of `stream` on `filter` (empty: all), in order, with its stream sequence.
async fn read_all(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> Result<Vec<(u64, jetstream::Message)>, async_nats::Error> {
    let stream = js.get_stream(stream).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            ..Default::default()
        })
        .await?;
    let mut found = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(found);
    }
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let info = message.info()?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        found.push((seq, message));
        if pending == 0 {
            break;
        }
    }
    Ok(found)
}

/// The events of `team` that an archive file (`sop archive create`) holds, in its order.
pub fn archived_events(
    text: &str,
    subjects: &Subjects,
    team: &str,
    file: &str,
) -> Result<Vec<Held>, String> {
    use crate::wire::archive::{ArchivedMessage, Head as Line, Kind};
    let mut held = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let not_a_line = |e: serde_json::Error| format!("{file} line {}: {e}", n + 1);
        let kind: Line = serde_json::from_str(line).map_err(not_a_line)?;
        if kind.archived != Kind::Message {
            continue;
        }
        let m: ArchivedMessage = serde_json::from_str(line).map_err(not_a_line)?;
        if !m.kind.starts_with("event.") || subjects.team_of_event(&m.subject) != Some(team) {
            continue;
        }
        held.push(Held {
            link: Link::from_stored(m.headers.as_ref()),
            event_id: m.message_id,
            payload: bytes::Bytes::from(m.message.get().to_owned()),
            at: format!("{file} line {}", n + 1),
        });
    }
    Ok(held)
}

#[derive(serde::Deserialize)]
struct EventId {
    event_id: uuid::Uuid,
}

/// Every message of a stream, in its order, with its link.
async fn stream_events(
    js: &jetstream::Context,
    name: &str,
) -> Result<Vec<Held>, async_nats::Error> {
    Ok(read_all(js, name, "")
        .await?
        .into_iter()
        .map(|(seq, message)| {
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            Held {
                link: Link::from_headers(
                    header(chain::INDEX_HEADER).as_deref(),
                    header(chain::PREV_HEADER).as_deref(),
                ),
                // From the event itself: a message republished without its `Nats-Msg-Id`
                // still says which event it is.
                event_id: serde_json::from_slice::<EventId>(&message.payload)
                    .map(|e| e.event_id)
                    .unwrap_or_default(),
                payload: message.payload.clone(),
                at: format!("stream sequence {seq}"),
            }
        })
        .collect())
}

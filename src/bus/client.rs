//! A typed client for agents written in Rust, the CLI and the tests: send a command and await
//! its outcome, fetch an outcome later by command id, read events.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{
    self, consumer::DeliverPolicy, consumer::pull, message::PublishMessage,
};
use async_nats::{HeaderMap, RequestErrorKind};
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::error::ErrorCode;
use crate::domain::ids::CommandId;
use crate::wire::admin::AdminName;
use crate::wire::answer::Paged;
use crate::wire::command::{
    CommandName, Envelope, MAX_COMMAND_BYTES, MSG_ID_HEADER, REPLY_TO_HEADER, SCHEMA_VERSION,
};
use crate::wire::event::EventEnvelope;
use crate::wire::outcome::{ErrorBody, Outcome};
use crate::wire::query::{OutcomeQuery, QueryFailure, QueryName, SERVICE_ERROR_HEADER};
use crate::wire::signature;
use crate::wire::subjects::{FAMILIES, Subjects, matches};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// NATS failed or nothing serves the request; the error NATS gave is kept as the source.
    #[error("NATS: {0}")]
    Nats(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no outcome for command {0} within the timeout")]
    Timeout(Uuid),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("{}: {}", .0.code, .0.message)]
    Refused(ErrorBody),
    /// Refused before sending: larger than the commands stream or the server takes.
    #[error("the command is {size} bytes; at most {limit} are accepted")]
    TooLarge { size: usize, limit: usize },
}

fn nats_err(e: impl std::error::Error + Send + Sync + 'static) -> ClientError {
    ClientError::Nats(Box::new(e))
}

/// What went wrong, said in the client's words when they say more than NATS's own.
fn nats_said(what: String) -> ClientError {
    ClientError::Nats(what.into())
}

/// How long [`Client::worker_serves`] waits for a worker's answer.
const WORKER_PING: Duration = Duration::from_secs(2);

/// The query that asks whether a worker is there: a request the contract takes, which any
/// agent may send and which reads nothing but one system's name (none has an empty one: the
/// answer is `not_found`).
fn worker_probe() -> (QueryName, Vec<u8>) {
    let request = crate::wire::query::SystemQuery {
        team: String::new(),
        name: String::new(),
    };
    let bytes = serde_json::to_vec(&request).expect("a query serialises");
    (QueryName::GetSystem, bytes)
}

fn envelope_bytes<P: Serialize>(
    command_id: Uuid,
    actor: Uuid,
    payload: P,
) -> Result<Vec<u8>, ClientError> {
    let envelope = Envelope {
        schema_version: SCHEMA_VERSION,
        command_id,
        actor,
        correlation_id: None,
        payload,
    };
    serde_json::to_vec(&envelope).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Where an event subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStart {
    /// The first event in the stream (a full replay).
    First,
    /// Only events published from now on.
    New,
    /// From this stream sequence.
    Sequence(u64),
    /// From the first event at or after this time.
    Time(chrono::DateTime<chrono::Utc>),
}

impl EventStart {
    fn policy(self) -> DeliverPolicy {
        match self {
            EventStart::First => DeliverPolicy::All,
            EventStart::New => DeliverPolicy::New,
            EventStart::Sequence(start_sequence) => {
                DeliverPolicy::ByStartSequence { start_sequence }
            }
            EventStart::Time(start_time) => DeliverPolicy::ByStartTime { start_time },
        }
    }
}

#[derive(Clone)]
pub struct Client {
    nats: async_nats::Client,
    js: jetstream::Context,
    subjects: Subjects,
    timeout: Duration,
    /// Signs every command and query (`Sop-Signature`) when the acting system has a key.
    signer: Option<std::sync::Arc<nkeys::KeyPair>>,
    /// Whether the signer is a token's key, named in `Sop-Key` on every message it signs.
    token: bool,
}

impl Client {
    pub fn new(nats: async_nats::Client, subjects: Subjects) -> Client {
        let js = jetstream::new(nats.clone());
        Client {
            nats,
            js,
            subjects,
            timeout: Duration::from_secs(30),
            signer: None,
            token: false,
        }
    }

    /// Signs every command and query with this NATS user seed (`SU…`), as a system with a
    /// registered key must.
    pub fn with_signing_seed(
        mut self,
        seed: &str,
    ) -> Result<Client, crate::wire::signature::SignatureError> {
        self.signer = Some(std::sync::Arc::new(crate::wire::signature::signer(seed)?));
        Ok(self)
    }

    /// Signs every command and query with a bearer token's seed, naming its key (`Sop-Key`)
    /// so the worker checks it against the system's tokens.
    pub fn with_token_seed(
        mut self,
        seed: &str,
    ) -> Result<Client, crate::wire::signature::SignatureError> {
        self.signer = Some(std::sync::Arc::new(crate::wire::signature::signer(seed)?));
        self.token = true;
        Ok(self)
    }

    /// The headers that sign `message`: the signature, and the token's key when it is one.
    fn sign(&self, signer: &nkeys::KeyPair, message: &[u8], headers: &mut HeaderMap) {
        headers.insert(
            signature::SIGNATURE_HEADER,
            signature::sign(signer, message).as_str(),
        );
        if self.token {
            headers.insert(signature::KEY_HEADER, signer.public_key().as_str());
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Sends a command with a fresh id and waits for its outcome.
    pub async fn send<P: Serialize>(
        &self,
        name: CommandName,
        actor: Uuid,
        payload: P,
    ) -> Result<Outcome, ClientError> {
        self.send_with_id(Uuid::now_v7(), name, actor, payload)
            .await
    }

    /// Sends a command under a chosen id (re-sending an id is safe: one effect, same outcome).
    pub async fn send_with_id<P: Serialize>(
        &self,
        command_id: Uuid,
        name: CommandName,
        actor: Uuid,
        payload: P,
    ) -> Result<Outcome, ClientError> {
        let bytes = envelope_bytes(command_id, actor, payload)?;
        let subject = self.subjects.command(name.as_str());
        self.send_as(&subject, command_id, Some(actor), bytes).await
    }

    /// Publishes raw bytes on a command subject and waits for the outcome of `command_id`
    /// (also for malformed commands, whose outcome is keyed by the `Nats-Msg-Id`), at most the
    /// client's timeout in all.
    pub async fn send_raw(
        &self,
        subject: &str,
        command_id: Uuid,
        bytes: Vec<u8>,
    ) -> Result<Outcome, ClientError> {
        self.send_as(subject, command_id, None, bytes).await
    }

    /// As [`Client::send_raw`]; with the `actor` the envelope names, a missed outcome is
    /// asked of the worker rather than read from the outcomes stream.
    async fn send_as(
        &self,
        subject: &str,
        command_id: Uuid,
        actor: Option<Uuid>,
        bytes: Vec<u8>,
    ) -> Result<Outcome, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let inbox = self.nats.new_inbox();
        let mut replies = self.nats.subscribe(inbox.clone()).await.map_err(nats_err)?;
        let ack = self
            .publish_command(subject, command_id, bytes, Some(&inbox))
            .await?;
        if ack.duplicate {
            // JetStream dropped this copy inside its duplicate window, so the worker will not
            // answer it: read the first copy's outcome instead.
            return self.wait_for_stored(command_id, actor, deadline).await;
        }
        match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(msg)) => {
                serde_json::from_slice(&msg.payload).map_err(|e| ClientError::Decode(e.to_string()))
            }
            // The reply may have been missed (a reconnect): it is stored too.
            _ => self.wait_for_stored(command_id, actor, deadline).await,
        }
    }

    /// Publishes a command and returns once JetStream has stored it, without waiting for its
    /// outcome (`outcome(command_id)` reads it later).
    pub async fn enqueue<P: Serialize>(
        &self,
        command_id: Uuid,
        name: CommandName,
        actor: Uuid,
        payload: P,
    ) -> Result<(), ClientError> {
        let bytes = envelope_bytes(command_id, actor, payload)?;
        let subject = self.subjects.command(name.as_str());
        self.publish_command(&subject, command_id, bytes, None)
            .await
            .map(|_| ())
    }

    /// Whether a worker serves this client's prefix: a query to it is answered, even with a
    /// refusal, within a moment.
    pub async fn worker_serves(&self) -> Result<bool, ClientError> {
        let (name, request) = worker_probe();
        let subject = self.subjects.query(name.as_str());
        let asked = self.nats.request(subject, request.into());
        match tokio::time::timeout(WORKER_PING, asked).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Ok(false),
            Ok(Err(e)) => Err(nats_err(e)),
            Err(_) => Ok(false),
        }
    }

    async fn publish_command(
        &self,
        subject: &str,
        command_id: Uuid,
        bytes: Vec<u8>,
        reply_to: Option<&str>,
    ) -> Result<jetstream::publish::PublishAck, ClientError> {
        // Told here, with the figures, rather than as an unreachable server.
        let limit = MAX_COMMAND_BYTES.min(self.nats.max_payload());
        if bytes.len() > limit {
            return Err(ClientError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, command_id.to_string().as_str());
        if let Some(inbox) = reply_to {
            headers.insert(REPLY_TO_HEADER, inbox);
        }
        if let Some(signer) = &self.signer {
            let name = self.subjects.command_name(subject).unwrap_or(subject);
            self.sign(
                signer,
                &signature::command_message(name, &bytes),
                &mut headers,
            );
        }
        let stored = self
            .js
            .send_publish(
                subject.to_owned(),
                PublishMessage::build()
                    .payload(bytes.into())
                    .headers(headers),
            )
            .await
            .map_err(nats_err)?
            .await;
        stored.map_err(|e| match e.kind() {
            PublishErrorKind::StreamNotFound => nats_said(format!(
                "no stream stores {subject}: has a worker run with this subject prefix?"
            )),
            _ => nats_err(e),
        })
    }

    async fn wait_for_stored(
        &self,
        command_id: Uuid,
        actor: Option<Uuid>,
        deadline: tokio::time::Instant,
    ) -> Result<Outcome, ClientError> {
        loop {
            // Bounded by what is left of the wait; a worker that does not answer (not started
            // yet, restarting) is a lookup to try again, like an outcome not stored yet.
            match tokio::time::timeout_at(deadline, self.stored_outcome(command_id, actor)).await {
                Ok(Ok(Some(o))) => return Ok(o),
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(ClientError::Nats(_))) if actor.is_some() => {}
                Ok(Err(e)) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout(command_id));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks a query (core request/reply); a refusal comes back as [`ClientError::Refused`]
    /// with the same codes as command rejections.
    pub async fn query<Q: Serialize, A: serde::de::DeserializeOwned>(
        &self,
        name: QueryName,
        request: &Q,
    ) -> Result<A, ClientError> {
        let bytes = serde_json::to_vec(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        // Refused here in the same words as a command: NATS would only say "max payload".
        let limit = MAX_COMMAND_BYTES.min(self.nats.max_payload());
        if bytes.len() > limit {
            return Err(ClientError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let mut headers = HeaderMap::new();
        if let Some(signer) = &self.signer {
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let message = signature::query_message(name.as_str(), &at, &bytes);
            self.sign(signer, &message, &mut headers);
            headers.insert(signature::SIGNED_AT_HEADER, at.as_str());
        }
        self.request(
            self.subjects.query(name.as_str()),
            name.as_str(),
            headers,
            bytes,
        )
        .await
    }

    /// Sends an operator request (`sop.admin.<name>`: team registration, dead letters, the
    /// parked outbox). Unsigned: NATS permissions decide who may send it.
    pub async fn admin<Q: Serialize, A: serde::de::DeserializeOwned>(
        &self,
        name: AdminName,
        request: &Q,
    ) -> Result<A, ClientError> {
        let bytes = serde_json::to_vec(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.request(
            self.subjects.admin(name.as_str()),
            name.as_str(),
            HeaderMap::new(),
            bytes,
        )
        .await
    }

    /// One service-API request and its answer or refusal.
    async fn request<A: serde::de::DeserializeOwned>(
        &self,
        subject: String,
        name: &str,
        headers: HeaderMap,
        bytes: Vec<u8>,
    ) -> Result<A, ClientError> {
        let reply = tokio::time::timeout(
            self.timeout,
            self.nats
                .request_with_headers(subject, headers, bytes.into()),
        )
        .await
        .map_err(|_| nats_said(format!("no answer to {name} within the timeout")))?
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => nats_said(format!(
                "no worker answers {name} on subject prefix `{}`: is `sop worker` running, with \
                 the same SOP_SUBJECT_PREFIX and SOP_NATS_URL?",
                self.subjects.prefix().trim_end_matches('.')
            )),
            _ => nats_err(e),
        })?;
        let failed = reply
            .headers
            .as_ref()
            .is_some_and(|h| h.get(SERVICE_ERROR_HEADER).is_some());
        if failed {
            let failure: QueryFailure = serde_json::from_slice(&reply.payload)
                .map_err(|e| ClientError::Decode(e.to_string()))?;
            return Err(ClientError::Refused(failure.error));
        }
        serde_json::from_slice(&reply.payload).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Asks a list query and follows its pages: the first page's answer, with the items of
    /// every page in order and no `next_cursor`. With `at_most`, stops once that many items
    /// have come (and keeps that many).
    pub async fn query_pages<Q: Serialize, A: Paged>(
        &self,
        name: QueryName,
        request: &Q,
        at_most: Option<usize>,
    ) -> Result<A, ClientError> {
        let mut request =
            serde_json::to_value(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        let mut whole: A = self.query(name, &request).await?;
        while at_most.is_none_or(|n| whole.items() < n) {
            let Some(cursor) = whole.take_cursor() else {
                break;
            };
            // A cursor that comes back unchanged would page forever.
            if request.get("cursor").and_then(|c| c.as_str()) == Some(cursor.as_str()) {
                return Err(ClientError::Decode(format!(
                    "{name} answered the same next_cursor twice"
                )));
            }
            request["cursor"] = serde_json::Value::String(cursor);
            whole.append(self.query(name, &request).await?);
        }
        whole.take_cursor();
        if let Some(n) = at_most {
            whole.truncate(n);
        }
        Ok(whole)
    }

    /// A command's stored outcome, if it has one yet. Sent by `actor`: asked of the worker,
    /// which answers the sender's team only (an agent's NATS user may not read the outcomes
    /// stream, which holds every team's); else read from the stream.
    async fn stored_outcome(
        &self,
        command_id: Uuid,
        actor: Option<Uuid>,
    ) -> Result<Option<Outcome>, ClientError> {
        let Some(actor) = actor else {
            return self.outcome(command_id).await;
        };
        let asked = OutcomeQuery { actor, command_id };
        match self.query(QueryName::Outcome, &asked).await {
            Ok(outcome) => Ok(Some(outcome)),
            Err(ClientError::Refused(e)) if e.code == ErrorCode::NotFound.as_str() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The outcome of a command from the outcomes stream, if it has one yet.
    pub async fn outcome(&self, command_id: Uuid) -> Result<Option<Outcome>, ClientError> {
        let stream = self
            .js
            .get_stream(self.subjects.outcomes_stream())
            .await
            .map_err(nats_err)?;
        match stream
            .direct_get_last_for_subject(self.subjects.outcome(CommandId(command_id)))
            .await
        {
            Ok(m) => serde_json::from_slice(&m.payload)
                .map(Some)
                .map_err(|e| ClientError::Decode(e.to_string())),
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(nats_err(e)),
        }
    }

    /// An ordered replay of the events matching `filter`: `<type>.<team>` with `*` for either
    /// part (`task.ready.*`, `*.*.<team>`), or `>` for all.
    ///
    /// Each team's events have a stream of their own: a filter naming a team reads that
    /// stream, which its agents may; one for every team reads them all, interleaved (in order
    /// within each team), and needs a user that may list streams (an operator).
    pub async fn events(
        &self,
        filter: &str,
        start: EventStart,
    ) -> Result<
        impl futures::Stream<Item = Result<EventEnvelope<serde_json::Value>, ClientError>> + use<>,
        ClientError,
    > {
        self.event_stream(filter, start, false).await
    }

    /// As [`Client::events`], ending with the last event stored when it began: the history
    /// up to now.
    pub async fn history(
        &self,
        filter: &str,
        start: EventStart,
    ) -> Result<
        impl futures::Stream<Item = Result<EventEnvelope<serde_json::Value>, ClientError>> + use<>,
        ClientError,
    > {
        self.event_stream(filter, start, true).await
    }

    async fn event_stream(
        &self,
        filter: &str,
        start: EventStart,
        to_the_end: bool,
    ) -> Result<
        impl futures::Stream<Item = Result<EventEnvelope<serde_json::Value>, ClientError>> + use<>,
        ClientError,
    > {
        let (family, kind, team) = match filter {
            ">" => ("*", "*", "*"),
            _ => {
                let tokens: Vec<&str> = self
                    .subjects
                    .command_name(filter)
                    .unwrap_or(filter)
                    .split('.')
                    .collect();
                match tokens[..] {
                    [family, kind, team] if family == "*" || FAMILIES.contains(&family) => {
                        (family, kind, team)
                    }
                    _ => {
                        return Err(ClientError::Decode(format!(
                            "`{filter}` is not an event filter: `<type>.<team>` with `*` for \
                             either part (task.ready.*, *.*.<team>), or `>`"
                        )));
                    }
                }
            }
        };
        let teams: Vec<String> = match team {
            "*" => {
                let prefix = self.subjects.team_events_streams();
                crate::bus::streams::team_streams(&self.js, &self.subjects)
                    .await
                    .map_err(ClientError::Nats)?
                    .into_iter()
                    .filter_map(|name| name.strip_prefix(&prefix).map(str::to_owned))
                    .collect()
            }
            team => vec![team.to_owned()],
        };
        let mut replays = Vec::with_capacity(teams.len());
        for team in teams {
            // A filter within one stream subject is the server's (2.9 takes no other); one
            // across families is applied here, on the team's whole stream.
            let (server, local) = match family {
                "*" if kind == "*" => (String::new(), None),
                "*" => (
                    String::new(),
                    Some(format!("{}*.{kind}.{team}", self.subjects.prefix())),
                ),
                family => (
                    format!("{}{family}.{kind}.{team}", self.subjects.prefix()),
                    None,
                ),
            };
            replays.push(
                self.team_replay(&team, server, local, start, to_the_end)
                    .await?,
            );
        }
        Ok(futures::stream::select_all(replays))
    }

    /// The events of one team's stream, from `start`.
    async fn team_replay(
        &self,
        team: &str,
        server_filter: String,
        local_filter: Option<String>,
        start: EventStart,
        to_the_end: bool,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<EventEnvelope<serde_json::Value>, ClientError>>,
        ClientError,
    > {
        let stream = self
            .js
            .get_stream(self.subjects.team_events_stream(team))
            .await
            .map_err(|e| match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(api)
                    if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    nats_said(format!(
                        "team {team} has no events stream: is it registered (sop team apply)?"
                    ))
                }
                _ => nats_err(e),
            })?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: server_filter,
                deliver_policy: start.policy(),
                ..Default::default()
            })
            .await
            .map_err(nats_err)?;
        // Nothing to deliver from where it starts: a history ends at once.
        let empty = to_the_end && consumer.cached_info().num_pending == 0;
        let messages = consumer.messages().await.map_err(nats_err)?;
        // The message after which no other was stored when the consumer was made ends a
        // history; checked before the local filter, which may drop that message.
        let messages = futures::stream::unfold(
            (Box::pin(messages), empty),
            move |(mut rest, ended)| async move {
                if ended {
                    return None;
                }
                let next = rest.next().await?;
                let last = to_the_end
                    && next
                        .as_ref()
                        .is_ok_and(|m| m.info().is_ok_and(|i| i.pending == 0));
                Some((next, (rest, last)))
            },
        );
        Ok(messages
            .filter(move |m| {
                let keep = match (m, &local_filter) {
                    (Ok(m), Some(f)) => matches(f, m.subject.as_str()),
                    _ => true,
                };
                std::future::ready(keep)
            })
            .map(|m| {
                let m = m.map_err(nats_err)?;
                serde_json::from_slice(&m.payload).map_err(|e| ClientError::Decode(e.to_string()))
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use crate::wire::query::{QueryName, SystemQuery};

    #[test]
    fn the_worker_probe_is_a_request_its_query_takes() {
        let (name, request) = super::worker_probe();
        assert_eq!(name, QueryName::GetSystem);
        // As the worker reads it: a conforming request, answered, not refused as malformed.
        super::super::queries::parse::<SystemQuery>(&request).expect("a system.get request");
    }
}

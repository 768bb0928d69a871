//! A typed client for agents written in Rust, the CLI and the tests: send a command and await
//! its outcome, fetch an outcome later by command id, read events.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, consumer::DeliverPolicy, consumer::pull, message::PublishMessage,
};
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::ids::CommandId;
use crate::wire::admin::AdminName;
use crate::wire::command::{CommandName, Envelope, MSG_ID_HEADER, REPLY_TO_HEADER, SCHEMA_VERSION};
use crate::wire::event::EventEnvelope;
use crate::wire::outcome::{ErrorBody, Outcome};
use crate::wire::query::{QueryFailure, QueryName, SERVICE_ERROR_HEADER};
use crate::wire::signature;
use crate::wire::subjects::{FAMILIES, Subjects, matches};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("no outcome for command {0} within the timeout")]
    Timeout(Uuid),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("{}: {}", .0.code, .0.message)]
    Refused(ErrorBody),
}

fn nats_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Nats(e.to_string())
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
        let envelope = Envelope {
            schema_version: SCHEMA_VERSION,
            command_id,
            actor,
            correlation_id: None,
            payload,
        };
        let bytes =
            serde_json::to_vec(&envelope).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.send_raw(&self.subjects.command(name.as_str()), command_id, bytes)
            .await
    }

    /// Publishes raw bytes on a command subject and waits for the outcome of `command_id`
    /// (also for malformed commands, whose outcome is keyed by the `Nats-Msg-Id`).
    pub async fn send_raw(
        &self,
        subject: &str,
        command_id: Uuid,
        bytes: Vec<u8>,
    ) -> Result<Outcome, ClientError> {
        let inbox = self.nats.new_inbox();
        let mut replies = self.nats.subscribe(inbox.clone()).await.map_err(nats_err)?;
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, command_id.to_string().as_str());
        headers.insert(REPLY_TO_HEADER, inbox.as_str());
        if let Some(signer) = &self.signer {
            let name = self.subjects.command_name(subject).unwrap_or(subject);
            let signature = signature::sign(signer, &signature::command_message(name, &bytes));
            headers.insert(signature::SIGNATURE_HEADER, signature.as_str());
        }
        let ack = self
            .js
            .send_publish(
                subject.to_owned(),
                PublishMessage::build()
                    .payload(bytes.into())
                    .headers(headers),
            )
            .await
            .map_err(nats_err)?
            .await
            .map_err(nats_err)?;
        if ack.duplicate {
            // JetStream dropped this copy inside its duplicate window, so the worker will not
            // answer it: read the first copy's outcome instead.
            return self.wait_for_stored(command_id).await;
        }
        match tokio::time::timeout(self.timeout, replies.next()).await {
            Ok(Some(msg)) => {
                serde_json::from_slice(&msg.payload).map_err(|e| ClientError::Decode(e.to_string()))
            }
            _ => self.wait_for_stored(command_id).await,
        }
    }

    async fn wait_for_stored(&self, command_id: Uuid) -> Result<Outcome, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(o) = self.outcome(command_id).await? {
                return Ok(o);
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
        let mut headers = HeaderMap::new();
        if let Some(signer) = &self.signer {
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let message = signature::query_message(name.as_str(), &at, &bytes);
            headers.insert(
                signature::SIGNATURE_HEADER,
                signature::sign(signer, &message).as_str(),
            );
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
        .map_err(|_| ClientError::Nats(format!("no answer to {name} within the timeout")))?
        .map_err(nats_err)?;
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

    /// Asks a list query and follows its pages: the first page's answer, with the `items`
    /// array (`procedures`, `versions`, `tasks`, `entries`) of every page in order and no
    /// `next_cursor`. With `at_most`, stops once that many items have come (and keeps that many).
    pub async fn query_pages<Q: Serialize>(
        &self,
        name: QueryName,
        request: &Q,
        items: &str,
        at_most: Option<usize>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut request =
            serde_json::to_value(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        let mut whole: serde_json::Value = self.query(name, &request).await?;
        loop {
            let collected = whole[items].as_array().map_or(0, Vec::len);
            let cursor = match whole.as_object_mut().and_then(|a| a.remove("next_cursor")) {
                Some(serde_json::Value::String(c)) if at_most.is_none_or(|n| collected < n) => c,
                _ => break,
            };
            // A cursor that comes back unchanged would page forever.
            if request.get("cursor").and_then(|c| c.as_str()) == Some(cursor.as_str()) {
                return Err(ClientError::Decode(format!(
                    "{name} answered the same next_cursor twice"
                )));
            }
            request["cursor"] = serde_json::Value::String(cursor);
            let mut page: serde_json::Value = self.query(name, &request).await?;
            let more = page[items].take();
            let (Some(all), serde_json::Value::Array(more)) = (whole[items].as_array_mut(), more)
            else {
                return Err(ClientError::Decode(format!("{name}: no `{items}` list")));
            };
            all.extend(more);
            match page.get_mut("next_cursor").map(serde_json::Value::take) {
                Some(next) => whole["next_cursor"] = next,
                None => break,
            }
        }
        if let (Some(n), Some(all)) = (at_most, whole[items].as_array_mut()) {
            all.truncate(n);
        }
        Ok(whole)
    }

    /// The outcome of a command from the outcomes stream, if it has one yet.
    pub async fn outcome(&self, command_id: Uuid) -> Result<Option<Outcome>, ClientError> {
        let stream = self
            .js
            .get_stream(self.subjects.outcomes_stream())
            .await
            .map_err(nats_err)?;
        match stream
            .get_last_raw_message_by_subject(&self.subjects.outcome(CommandId(command_id)))
            .await
        {
            Ok(m) => serde_json::from_slice(&m.payload)
                .map(Some)
                .map_err(|e| ClientError::Decode(e.to_string())),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(e) => Err(nats_err(e)),
        }
    }

    /// An ordered replay of the events matching `filter` (`>` for all).
    ///
    /// A filter whose first token (after the prefix) names an event family (`task.ready.*`)
    /// is applied by the server. Others, such as a team's events (`*.*.<team>`), are not a
    /// subset of one stream subject, which a 2.9 server requires of a consumer filter: those
    /// are applied here, on the whole stream.
    pub async fn events(
        &self,
        filter: &str,
        start: EventStart,
    ) -> Result<
        impl futures::Stream<Item = Result<EventEnvelope<serde_json::Value>, ClientError>> + use<>,
        ClientError,
    > {
        let stream = self
            .js
            .get_stream(self.subjects.events_stream())
            .await
            .map_err(nats_err)?;
        let family = self
            .subjects
            .command_name(filter)
            .and_then(|rest| rest.split('.').next())
            .filter(|f| FAMILIES.contains(f));
        let (server_filter, local_filter) = match (filter, family) {
            (">", _) => (String::new(), None),
            (_, Some(_)) => (filter.to_owned(), None),
            (_, None) => (String::new(), Some(filter.to_owned())),
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: server_filter,
                deliver_policy: start.policy(),
                ..Default::default()
            })
            .await
            .map_err(nats_err)?;
        let messages = consumer.messages().await.map_err(nats_err)?;
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
            }))
    }
}

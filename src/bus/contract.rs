//! The published contract: an AsyncAPI 3.0 document generated from the Rust wire types, so the
//! document cannot say one thing while the code does another. `docs/asyncapi.yaml` is this
//! document; a test regenerates it and fails on any difference (`sop contract` prints it).

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::domain::error::ErrorCode;
use crate::domain::event::{EventKind, EventVisitor, visit_events};
use crate::domain::system::Party;
use crate::wire::admin::{self, AdminName, DeadLetters, ParkedMessages};
use crate::wire::answer::TeamIdentity;
use crate::wire::chain;
use crate::wire::command::{
    self as cmd, CommandName, Envelope, MSG_ID_HEADER, REPLY_TO_HEADER, SCHEMA_VERSION,
    TRACEPARENT_HEADER,
};
use crate::wire::event::EventEnvelope;
use crate::wire::outcome::Outcome;
use crate::wire::query::{
    self as q, QueryFailure, QueryName, SERVICE_ERROR_CODE_HEADER, SERVICE_ERROR_HEADER,
};
use crate::wire::signature::{KEY_HEADER, SIGNATURE_HEADER, SIGNED_AT_HEADER};

pub fn admin_doc(name: AdminName) -> &'static str {
    use AdminName as N;
    match name {
        N::ApplyTeam => {
            "Create or update a team and its systems (idempotent, matched by name); answers the team with every system's id."
        }
        N::DeadLetters => "Messages given up on, newest first.",
        N::ParkedOutbox => {
            "Outbox messages the relay parked because the server refused them for good, oldest first."
        }
        N::RepublishOutbox => {
            "Put parked messages back for the relay to publish (all or nothing); answers what was moved."
        }
        N::IssueToken => {
            "Register a bearer token for a system (`sop token issue`): the public key of its seed, an optional label and expiry; answers the token as kept."
        }
        N::RevokeToken => "End a token now; answers it with its revocation time.",
        N::ListTokens => "The tokens issued, of one system or all, revoked ones included.",
    }
}

pub fn error_doc(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidPayload => {
            "Not JSON, not an envelope, or a payload that does not fit its command."
        }
        ErrorCode::UnsupportedSchema => "schema_version is not one this worker speaks.",
        ErrorCode::UnknownCommand => "The subject names no command.",
        ErrorCode::ValidationFailed => "The content breaks a validation rule; `field` names it.",
        ErrorCode::Forbidden => {
            "Unknown system, wrong system type, not the task's assignee, or a missing, wrong or stale signature."
        }
        ErrorCode::NotFound => {
            "A referenced entity does not exist, or belongs to another team (answered alike)."
        }
        ErrorCode::InvalidState => "The entity's state does not allow this.",
        ErrorCode::Conflict => "Stale or contradicted by newer data.",
        ErrorCode::PolicyDenied => {
            "The team's policy does not allow this now; `field` names the rule and its limit (`night.freeze`), the message gives the figures and when it would be allowed."
        }
        ErrorCode::TooLarge => {
            "A message this would publish (event, outcome, answer) exceeds the server's max_payload; nothing was applied. Send less, or page."
        }
        ErrorCode::Internal => {
            "The worker failed on this command persistently; nothing of it was applied."
        }
    }
}

struct Builder {
    schemas: SchemaGenerator,
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
}

fn reference(to: &str) -> Value {
    json!({ "$ref": to })
}

impl cmd::PayloadVisitor for Builder {
    fn visit<P: JsonSchema + serde::de::DeserializeOwned>(&mut self, name: CommandName) {
        self.command::<P>(name);
    }
}

impl q::QueryVisitor for Builder {
    fn visit<R: JsonSchema + serde::de::DeserializeOwned, A: JsonSchema>(
        &mut self,
        name: QueryName,
    ) {
        self.query::<R, A>(name);
    }
}

impl Builder {
    fn schema<T: JsonSchema>(&mut self) -> Value {
        self.schemas.subschema_for::<T>().to_value()
    }

    fn message(&mut self, id: &str, title: String, payload: Value, headers: Option<&str>) -> Value {
        let mut m = json!({ "name": id, "title": title, "contentType": "application/json", "payload": payload });
        if let Some(h) = headers {
            m["headers"] = reference(&format!("#/components/schemas/{h}"));
        }
        self.messages.insert(id.to_owned(), m);
        reference(&format!("#/components/messages/{id}"))
    }

    fn command<P: JsonSchema>(&mut self, name: CommandName) {
        let (who, what) = (name.sender_text(), name.summary());
        let payload = self.schema::<Envelope<P>>();
        let id = name.as_str();
        let message = self.message(id, format!("{id} command"), payload, Some("CommandHeaders"));
        self.channels.insert(
            id.to_owned(),
            json!({ "address": id, "description": what, "messages": { "command": message } }),
        );
        self.operations.insert(
            format!("send.{id}"),
            json!({
                "action": "send",
                "channel": reference(&format!("#/channels/{id}")),
                "summary": what,
                "description": format!("Sent by {who}. Stored in stream SOP_COMMANDS; exactly one outcome follows."),
                "x-sent-by": who,
                "reply": {
                    "address": { "location": format!("$message.header#/{REPLY_TO_HEADER}") },
                    "channel": reference("#/channels/command.outcome"),
                },
            }),
        );
    }
}

impl EventVisitor for Builder {
    fn visit<D: JsonSchema>(&mut self, kind: EventKind) {
        let id = kind.as_str();
        // The envelope is shared by the events of a family; each message fixes its `type`.
        let payload = json!({ "allOf": [
            self.schema::<EventEnvelope<D>>(),
            { "type": "object", "properties": { "type": { "const": id } }, "required": ["type"] },
        ] });
        let message = self.message(id, format!("{id} event"), payload, Some("EventHeaders"));
        self.channels.insert(
            id.to_owned(),
            json!({
                "address": format!("{id}.{{team}}"),
                "parameters": { "team": { "description": "The team's name." } },
                "messages": { "event": message },
                "x-stream": "SOP_EVENTS_{team}",
            }),
        );
        self.operations.insert(
            format!("receive.{id}"),
            json!({ "action": "receive", "channel": reference(&format!("#/channels/{id}")),
                    "summary": kind.summary(),
                    "description": format!(
                        "Published by the worker when it commits the change. For {}.",
                        Party::list(kind.audience(), " and ")
                    ) }),
        );
    }
}

impl Builder {
    /// A request/reply endpoint at `id`: its request and answer messages, its channel, its
    /// reply channel (answers and failures) and the operation `key` that sends to it.
    fn request_reply<R: JsonSchema, A: JsonSchema>(
        &mut self,
        (id, key): (&str, String),
        (title, what, description): (&str, &str, &str),
        headers: Option<&str>,
        sent_by: Option<&str>,
    ) {
        let request = self.schema::<R>();
        let answer = self.schema::<A>();
        let request = self.message(
            &format!("{id}.request"),
            format!("{title} request"),
            request,
            headers,
        );
        let answer = self.message(
            &format!("{id}.answer"),
            format!("{title} answer"),
            answer,
            None,
        );
        let failure = reference("#/components/messages/query.failure");
        self.channels.insert(
            id.to_owned(),
            json!({ "address": id, "description": what, "messages": { "request": request } }),
        );
        self.channels.insert(
            format!("{id}.reply"),
            json!({ "address": null, "description": "The requester's inbox.", "messages": { "answer": answer, "failure": failure } }),
        );
        let mut operation = json!({
            "action": "send",
            "channel": reference(&format!("#/channels/{id}")),
            "summary": what,
            "description": description,
        });
        if let Some(who) = sent_by {
            operation["x-sent-by"] = json!(who);
        }
        operation["reply"] = json!({ "channel": reference(&format!("#/channels/{id}.reply")) });
        self.operations.insert(key, operation);
    }

    fn query<R: JsonSchema, A: JsonSchema>(&mut self, name: QueryName) {
        let id = format!("sop.query.{}", name.as_str());
        let description = if name.is_identity() {
            "Core NATS request/reply (NATS service API, service `sop`); never stored in a stream. An identity query: no `actor` and no signature, so an agent may ask before it knows its id; anyone allowed to publish on sop.query.> may ask. Answers names, types, skills and ids, never keys."
        } else {
            "Core NATS request/reply (NATS service API, service `sop`); never stored in a stream. Any system of the team may ask. A list answers one page (`limit`, `cursor`) and the `next_cursor` of the next; an answer larger than the server's max_payload is refused with `too_large`."
        };
        let title = name.to_string();
        self.request_reply::<R, A>(
            (&id, format!("query.{}", name.as_str())),
            (&title, name.doc(), description),
            Some("QueryHeaders"),
            None,
        );
    }

    fn admin<R: JsonSchema, A: JsonSchema>(&mut self, name: AdminName) {
        let id = format!("sop.admin.{}", name.as_str());
        let description = "Core NATS request/reply (NATS service API, service `sop`), for operators: no actor and no signature (a team's first registration has no system to sign it), so only NATS permissions guard it — deploy/nats/roles.conf lets only the `operator` user publish on sop.admin.>.";
        let title = format!("{name} operator");
        self.request_reply::<R, A>(
            (&id, format!("admin.{}", name.as_str())),
            (&title, admin_doc(name), description),
            None,
            Some("operator"),
        );
    }
}

/// The whole AsyncAPI document.
pub fn asyncapi() -> Value {
    let settings =
        SchemaSettings::draft07().with(|s| s.definitions_path = "/components/schemas/".into());
    let mut b = Builder {
        schemas: settings.into_generator(),
        channels: Map::new(),
        operations: Map::new(),
        messages: Map::new(),
    };
    cmd::visit_payloads(&mut b);
    visit_events(&mut b);
    let outcome = b.schema::<Outcome>();
    let outcome = b.message(
        "command.outcome",
        "command outcome".into(),
        outcome,
        Some("OutcomeHeaders"),
    );
    b.channels.insert(
        "command.outcome".into(),
        json!({
            "address": "command.outcome.{command_id}",
            "parameters": { "command_id": { "description": "The command's id." } },
            "description": "The one outcome of each command; also sent to the command's Sop-Reply-To inbox.",
            "messages": { "outcome": outcome },
            "x-stream": "SOP_OUTCOMES",
        }),
    );
    b.operations.insert(
        "receive.command.outcome".into(),
        json!({ "action": "receive", "channel": reference("#/channels/command.outcome"),
                "summary": "Await or fetch a command's outcome." }),
    );
    let failure = b.schema::<QueryFailure>();
    b.message(
        "query.failure",
        "query failure".into(),
        failure,
        Some("QueryErrorHeaders"),
    );
    q::visit_queries(&mut b);
    use AdminName as A;
    b.admin::<admin::TeamSpec, TeamIdentity>(A::ApplyTeam);
    b.admin::<admin::DeadLetterRequest, DeadLetters>(A::DeadLetters);
    b.admin::<admin::ParkedRequest, ParkedMessages>(A::ParkedOutbox);
    b.admin::<admin::RepublishRequest, ParkedMessages>(A::RepublishOutbox);
    b.admin::<admin::IssueToken, admin::TokenInfo>(A::IssueToken);
    b.admin::<admin::RevokeToken, admin::TokenInfo>(A::RevokeToken);
    b.admin::<admin::ListTokens, admin::TokenList>(A::ListTokens);

    let mut schemas = b.schemas.take_definitions(true);
    schemas.insert(
        "CommandHeaders".into(),
        json!({
            "type": "object",
            "properties": {
                MSG_ID_HEADER: { "type": "string", "format": "uuid", "description": "The command_id: JetStream drops a re-publish inside its 2-minute window." },
                REPLY_TO_HEADER: { "type": "string", "description": "Optional core-NATS inbox that also receives the outcome." },
                SIGNATURE_HEADER: { "type": "string", "description": "Ed25519 signature (base64url), by the acting system's NATS user key, of `sop-command-v1`, the command name (no subject prefix) and the exact body, one per line; required when the system has a registered public key." },
                KEY_HEADER: { "type": "string", "description": "The public key (U…) that made Sop-Signature when it is a bearer token's (sop token issue) rather than the system's registered key; the worker then checks that it is an active token of the acting system." },
                TRACEPARENT_HEADER: { "type": "string", "description": "Optional W3C trace context; set on every event the command causes (dropped when it is not a valid one)." },
            },
            "required": [MSG_ID_HEADER],
        }),
    );
    schemas.insert(
        "EventHeaders".into(),
        json!({
            "type": "object",
            "properties": {
                MSG_ID_HEADER: { "type": "string", "format": "uuid", "description": "The event_id: JetStream drops a re-publish of the event inside its 2-minute window." },
                TRACEPARENT_HEADER: { "type": "string", "description": "The W3C trace context of the command that caused the event, where it sent a valid one." },
                chain::INDEX_HEADER: { "type": "string", "pattern": "^[1-9][0-9]*$", "description": "The event's place in its team's hash chain, from 1 (docs/reference.md, Audit chain)." },
                chain::PREV_HEADER: { "type": "string", "pattern": "^[0-9a-f]{64}$", "description": "The hash of the team's previous event (64 zeros for the first): SHA-256 over the canonical form in docs/reference.md." },
            },
            "required": [MSG_ID_HEADER, chain::INDEX_HEADER, chain::PREV_HEADER],
        }),
    );
    schemas.insert(
        "OutcomeHeaders".into(),
        json!({
            "type": "object",
            "properties": {
                MSG_ID_HEADER: { "type": "string", "format": "uuid", "description": "The command_id: JetStream drops a re-publish of the outcome inside its 2-minute window. (The copy sent to a command's reply inbox carries no headers.)" },
            },
        }),
    );
    schemas.insert(
        "QueryHeaders".into(),
        json!({
            "type": "object",
            "properties": {
                SIGNATURE_HEADER: { "type": "string", "description": "Ed25519 signature (base64url), by the asking system's NATS user key, of `sop-query-v1`, the query name (no subject prefix), the Sop-Signed-At value and the exact body, one per line; required when the system has a registered public key." },
                KEY_HEADER: { "type": "string", "description": "The public key (U…) that made Sop-Signature when it is a bearer token's rather than the system's registered key." },
                SIGNED_AT_HEADER: { "type": "string", "format": "date-time", "description": "When the query was signed (RFC 3339); refused beyond 60 s of the worker's clock." },
            },
        }),
    );
    schemas.insert(
        "QueryErrorHeaders".into(),
        json!({
            "type": "object",
            "properties": {
                SERVICE_ERROR_HEADER: { "type": "string", "description": "The error message." },
                SERVICE_ERROR_CODE_HEADER: { "type": "string", "description": "400, 403, 404, 409, 413 or 500." },
            },
        }),
    );
    schemas.insert(
        "ErrorCode".into(),
        json!({
            "type": "string",
            "description": "Stable codes of rejected commands and failed queries.",
            "enum": ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "x-descriptions": ErrorCode::ALL.iter().map(|c| (c.as_str().to_owned(), Value::from(error_doc(*c)))).collect::<Map<_, _>>(),
        }),
    );
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "vsm-sop",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Governed, versioned Standard Operating Procedures for VSM agents. Commands (two-token subjects) \
                 go to JetStream stream SOP_COMMANDS with Nats-Msg-Id = command_id; each ends in exactly one \
                 outcome on command.outcome.<command_id>. Events (`<type>.<team>`) are published to the team's stream, \
                 SOP_EVENTS_<team>, in commit order with Nats-Msg-Id = event_id. Queries are core request/reply on sop.query.<name>; operator requests on sop.admin.<name>. \
                 Envelopes carry schema_version {SCHEMA_VERSION}. An optional deployment prefix precedes every \
                 subject (`acme.procedure.draft`) and stream (`ACME_SOP_COMMANDS`)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": { "local": { "host": "127.0.0.1:4222", "protocol": "nats", "description": "nats-server -js (2.9 or newer)" } },
        "channels": b.channels,
        "operations": b.operations,
        "components": { "messages": b.messages, "schemas": schemas },
    })
}

/// The payload fields of a command, from the document itself (so help and contract agree):
/// `(name, JSON type, required, description)`, in the schema's order.
pub fn payload_fields(doc: &Value, name: CommandName) -> Vec<(String, String, bool, String)> {
    let schema = |reference: &Value| {
        reference["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| doc.pointer(pointer))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let message = &doc["components"]["messages"][name.as_str()];
    let envelope = schema(&message["payload"]);
    let payload = schema(&envelope["properties"]["payload"]);
    let required: Vec<&str> = payload["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let kind = |field: &Value| match &field["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join("|"),
        _ if field.get("$ref").is_some() || field.get("enum").is_some() => "string".into(),
        _ => "value".into(),
    };
    payload["properties"]
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .map(|(field, spec)| {
                    let about = spec["description"].as_str().unwrap_or("").to_owned();
                    (
                        field.clone(),
                        kind(spec),
                        required.contains(&field.as_str()),
                        about,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The document as YAML, as checked in at `docs/asyncapi.yaml`.
pub fn asyncapi_yaml() -> String {
    serde_yaml_ng::to_string(&asyncapi()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    /// `docs/asyncapi.yaml` must be what the code generates.
    #[test]
    fn the_published_contract_matches_the_code() {
        crate::bus::golden::generated_file("docs/asyncapi.yaml", &asyncapi_yaml());
    }

    #[test]
    fn every_command_names_its_payload_fields() {
        let doc = asyncapi();
        for name in CommandName::ALL.iter().copied() {
            assert!(!payload_fields(&doc, name).is_empty(), "{name}");
        }
        let draft = payload_fields(&doc, CommandName::DraftProcedure);
        let names: Vec<(&str, bool)> = draft.iter().map(|f| (f.0.as_str(), f.2)).collect();
        assert!(names.contains(&("name", true)) && names.contains(&("description", false)));
    }

    #[test]
    fn every_reference_resolves_and_every_subject_is_described() {
        let doc = asyncapi();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
        for name in CommandName::ALL {
            assert!(doc["channels"][name.as_str()].is_object(), "{name}");
        }
        for kind in EventKind::ALL.iter().copied() {
            assert!(
                doc["channels"][kind.as_str()].is_object(),
                "{}",
                kind.as_str()
            );
        }
        for name in QueryName::ALL {
            assert!(
                doc["channels"][format!("sop.query.{}", name.as_str())].is_object(),
                "{name}"
            );
        }
        for name in AdminName::ALL {
            assert!(
                doc["channels"][format!("sop.admin.{}", name.as_str())].is_object(),
                "{name}"
            );
        }
    }
}

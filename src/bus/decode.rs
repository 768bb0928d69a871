//! Bytes on a command subject → a typed [`Incoming`] command, or the rejection that becomes
//! its outcome. Every failure is named: `invalid_payload` (not JSON, not an envelope, a
//! payload that does not fit its command), `unsupported_schema`, `unknown_command`.

use uuid::Uuid;

use crate::application::{Incoming, MessageMeta, Rejection};
use crate::domain::error::ErrorCode;
use crate::wire::command::{Command, CommandName, MAX_CORRELATION_ID, RawEnvelope, SCHEMA_VERSION};

/// What arrived, before decoding.
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    /// The command name (subject without prefix).
    pub name: &'a str,
    pub payload: &'a [u8],
    /// `Nats-Msg-Id`, if set.
    pub msg_id: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    /// Used as the command id when the message carries none (stable across redeliveries).
    pub fallback_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct Undecodable {
    pub meta: MessageMeta,
    pub rejection: Rejection,
}

/// A command's `traceparent` header as passed on to its events, if it is a W3C trace context
/// (<https://www.w3.org/TR/trace-context/#traceparent-header>): `version-trace_id-parent_id-
/// flags` in lower-case hex, neither id all zeros, version `ff` invalid. Anything else is
/// dropped, the specification's rule for an invalid one. A later version may carry more fields
/// after these four: the four are what is passed on.
pub fn trace_context(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // version (2) - trace id (32) - parent id (16) - flags (2)
    const LEN: usize = 55;
    let head = raw.get(..LEN)?;
    let fields: Vec<&str> = head.split('-').collect();
    let [version, trace_id, parent_id, flags] = fields[..] else {
        return None;
    };
    let hex = |field: &str, len: usize| {
        field.len() == len
            && field
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let zeros = |field: &str| field.bytes().all(|b| b == b'0');
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && !zeros(trace_id)
        && hex(parent_id, 16)
        && !zeros(parent_id)
        && hex(flags, 2)
        // Version 00 has exactly four fields; a later one may have more, after a dash.
        && (raw.len() == LEN || (version != "00" && raw.as_bytes()[LEN] == b'-'));
    valid.then(|| head.to_owned())
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::InvalidPayload, message)
}

pub fn decode(a: &Arrival<'_>) -> Result<Incoming, Box<Undecodable>> {
    let header_id = a.msg_id.and_then(|h| Uuid::parse_str(h.trim()).ok());
    let mut meta = MessageMeta {
        command_id: header_id.unwrap_or(a.fallback_id),
        command: a.name.to_owned(),
        actor: None,
        team: None,
        reply_to: a.reply_to.map(str::to_owned),
    };
    let fail = |meta: &MessageMeta, rejection: Rejection| {
        Box::new(Undecodable {
            meta: meta.clone(),
            rejection,
        })
    };
    let envelope: RawEnvelope = match serde_json::from_slice(a.payload) {
        Ok(e) => e,
        Err(e) => {
            // An envelope with a field too many, or one of the wrong type, still names its
            // sender and id where it can: the rejection goes where the sender looks for it.
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(a.payload) {
                let uuid = |field: &str| body[field].as_str().and_then(|s| s.parse().ok());
                meta.actor = uuid("actor");
                if header_id.is_none()
                    && let Some(id) = uuid("command_id")
                {
                    meta.command_id = id;
                }
            }
            return Err(fail(&meta, invalid(format!("not a command envelope: {e}"))));
        }
    };
    meta.actor = envelope.actor;
    if let (Some(h), Some(b)) = (header_id, envelope.command_id)
        && h != b
    {
        // Keyed by the header id, the one JetStream de-duplicated this message on: keyed by the
        // body's id, a malformed copy would use up the id of the genuine command it names.
        return Err(fail(
            &meta,
            invalid(format!(
                "command_id {b} differs from the Nats-Msg-Id header {h}"
            )),
        ));
    }
    if let Some(id) = envelope.command_id {
        meta.command_id = id;
    }
    // JetStream de-duplicated on that header: a command whose duplicates are not recognised
    // by its id would run twice under one id, or be dropped under another.
    if let Some(h) = a.msg_id
        && header_id.is_none()
    {
        return Err(fail(
            &meta,
            invalid(format!(
                "the Nats-Msg-Id header `{}` is not a UUID: it must be the command_id",
                h.chars().take(64).collect::<String>()
            )),
        ));
    }
    match envelope.schema_version {
        Some(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(fail(
                &meta,
                Rejection::new(
                    ErrorCode::UnsupportedSchema,
                    format!(
                        "schema_version {v} is not supported (this worker speaks {SCHEMA_VERSION})"
                    ),
                ),
            ));
        }
        None => return Err(fail(&meta, invalid("schema_version is required"))),
    }
    let Some(name) = CommandName::parse(a.name) else {
        return Err(fail(
            &meta,
            Rejection::new(
                ErrorCode::UnknownCommand,
                format!("no command `{}`", a.name),
            ),
        ));
    };
    if envelope.command_id.is_none() && header_id.is_none() {
        return Err(fail(&meta, invalid("command_id is required (a UUID)")));
    }
    if let Some(id) = &envelope.correlation_id
        && id.chars().count() > MAX_CORRELATION_ID
    {
        // Every event of the command carries it: bounded like a name.
        return Err(fail(
            &meta,
            Rejection {
                code: ErrorCode::ValidationFailed,
                message: format!("must be at most {MAX_CORRELATION_ID} characters"),
                field: Some("correlation_id".into()),
            },
        ));
    }
    let Some(actor) = envelope.actor else {
        return Err(fail(
            &meta,
            invalid("actor is required (the acting system's id)"),
        ));
    };
    let payload = envelope.payload.unwrap_or(serde_json::Value::Null);
    let command = to_command(name, payload).map_err(|r| fail(&meta, r))?;
    Ok(Incoming {
        command_id: meta.command_id,
        actor,
        correlation_id: envelope.correlation_id,
        reply_to: meta.reply_to,
        traceparent: None,
        signed: None,
        command,
    })
}

/// Whether `payload` fits `name`'s payload type: what the worker would reject as
/// `invalid_payload`, found before sending (the CLI checks its input with it).
pub fn check_payload(name: CommandName, payload: &serde_json::Value) -> Result<(), Rejection> {
    to_command(name, payload.clone()).map(|_| ())
}

fn to_command(name: CommandName, payload: serde_json::Value) -> Result<Command, Rejection> {
    Command::decode(name, payload).map_err(|fault| {
        let mut rejection = invalid(format!("payload: {fault}"));
        rejection.field = fault.path;
        rejection
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::command::RunCommand;

    fn arrival<'a>(name: &'a str, payload: &'a [u8]) -> Arrival<'a> {
        Arrival {
            name,
            payload,
            msg_id: None,
            reply_to: None,
            fallback_id: Uuid::from_u128(42),
        }
    }

    fn code(r: Result<Incoming, Box<Undecodable>>) -> (&'static str, Uuid) {
        let u = r.unwrap_err();
        (u.rejection.code.as_str(), u.meta.command_id)
    }

    #[test]
    fn malformed_bytes_are_invalid_payload_with_the_fallback_id() {
        assert_eq!(
            code(decode(&arrival("procedure.draft", b"{nope"))),
            ("invalid_payload", Uuid::from_u128(42))
        );
        assert_eq!(
            code(decode(&arrival("procedure.draft", &[0xff, 0xfe]))).0,
            "invalid_payload"
        );
    }

    #[test]
    fn the_header_id_names_an_undecodable_command() {
        let id = Uuid::from_u128(7).to_string();
        let mut a = arrival("procedure.draft", b"[]");
        a.msg_id = Some(&id);
        assert_eq!(code(decode(&a)).1, Uuid::from_u128(7));
    }

    #[test]
    fn an_envelope_field_the_contract_does_not_have_is_refused_under_the_commands_id() {
        let body = br#"{"schema_version":1,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","priority":"high","payload":{}}"#;
        let u = decode(&arrival("procedure.draft", body)).unwrap_err();
        assert_eq!(u.rejection.code.as_str(), "invalid_payload");
        assert!(
            u.rejection.message.contains("priority"),
            "{}",
            u.rejection.message
        );
        assert_eq!(u.meta.command_id, Uuid::from_u128(1));
        assert_eq!(u.meta.actor, Some(Uuid::from_u128(2)));
    }

    #[test]
    fn a_header_id_that_is_no_uuid_is_refused_under_the_bodys_id() {
        let body = br#"{"schema_version":1,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","payload":{"procedure_id":"00000000-0000-0000-0000-000000000003","reason":"x"}}"#;
        let mut a = arrival("procedure.discard", body);
        a.msg_id = Some("retry-42");
        let (code, id) = code(decode(&a));
        assert_eq!((code, id), ("invalid_payload", Uuid::from_u128(1)));
        a.msg_id = None;
        assert!(
            decode(&a).is_ok(),
            "the same command without the header is fine"
        );
    }

    #[test]
    fn schema_version_and_command_name_are_checked() {
        let body = br#"{"schema_version":2,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","payload":{}}"#;
        assert_eq!(
            code(decode(&arrival("procedure.draft", body))).0,
            "unsupported_schema"
        );
        let body = br#"{"schema_version":1,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","payload":{}}"#;
        let (c, id) = code(decode(&arrival("procedure.fly", body)));
        assert_eq!((c, id), ("unknown_command", Uuid::from_u128(1)));
    }

    #[test]
    fn payloads_refuse_missing_and_unknown_fields() {
        let body = br#"{"schema_version":1,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","payload":{"procedure_id":"00000000-0000-0000-0000-000000000003","colour":"red"}}"#;
        let u = decode(&arrival("procedure.approve", body)).unwrap_err();
        assert_eq!(u.rejection.code.as_str(), "invalid_payload");
        assert!(u.rejection.message.contains("colour"));
        let body = br#"{"schema_version":1,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","payload":{}}"#;
        assert_eq!(
            code(decode(&arrival("task.start", body))).0,
            "invalid_payload"
        );
    }

    #[test]
    fn a_well_formed_command_decodes() {
        let body = br#"{"schema_version":1,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","correlation_id":"c-1","payload":{"task_id":"00000000-0000-0000-0000-000000000003"}}"#;
        let i = decode(&arrival("task.start", body)).unwrap();
        assert_eq!(i.name(), CommandName::StartTask);
        assert_eq!(i.actor, Uuid::from_u128(2));
        assert_eq!(i.correlation_id.as_deref(), Some("c-1"));
        assert!(
            matches!(&i.command, Command::Run(RunCommand::StartTask(t)) if t.task_id == Uuid::from_u128(3))
        );
    }

    #[test]
    fn envelope_fields_copied_onto_every_event_are_bounded() {
        let long = "c".repeat(MAX_CORRELATION_ID + 1);
        let body = format!(
            r#"{{"schema_version":1,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","correlation_id":"{long}","payload":{{"task_id":"00000000-0000-0000-0000-000000000003"}}}}"#
        );
        let u = decode(&arrival("task.start", body.as_bytes())).unwrap_err();
        assert_eq!(u.rejection.code.as_str(), "validation_failed");
        assert_eq!(u.rejection.field.as_deref(), Some("correlation_id"));
    }

    /// The rejection of `payload` as `name`'s.
    fn refused_payload(name: &str, payload: serde_json::Value) -> Rejection {
        let body = serde_json::json!({
            "schema_version": 1,
            "command_id": "00000000-0000-0000-0000-000000000001",
            "actor": "00000000-0000-0000-0000-000000000002",
            "payload": payload,
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        decode(&arrival(name, &bytes)).unwrap_err().rejection
    }

    #[test]
    fn a_malformed_payload_names_the_path_at_fault() {
        let r = refused_payload(
            "policy.set",
            serde_json::json!({ "rules": [{ "max_open_runs": 1, "series": ["abc"] }] }),
        );
        assert_eq!(r.code.as_str(), "invalid_payload");
        assert_eq!(
            r.field.as_deref(),
            Some("rules[0].series[0]"),
            "{}",
            r.message
        );
        let r = refused_payload("task.start", serde_json::json!({ "task_id": null }));
        assert_eq!(r.field.as_deref(), Some("task_id"), "{}", r.message);
    }

    #[test]
    fn a_malformed_digest_is_a_malformed_payload_not_a_conflict() {
        let procedure_id = "00000000-0000-0000-0000-000000000003";
        for digest in [
            "",
            "abc",
            "sha256:",
            "sha256:ABC",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            let r = refused_payload(
                "procedure.approve",
                serde_json::json!({ "procedure_id": procedure_id, "digest": digest }),
            );
            assert_eq!(r.code.as_str(), "invalid_payload", "{digest:?}");
            assert_eq!(r.field.as_deref(), Some("digest"), "{digest:?}");
        }
        let well_formed = format!(" sha256:{} ", "0a".repeat(32));
        let body = serde_json::json!({
            "schema_version": 1,
            "command_id": "00000000-0000-0000-0000-000000000001",
            "actor": "00000000-0000-0000-0000-000000000002",
            "payload": { "procedure_id": procedure_id, "digest": well_formed },
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        assert!(decode(&arrival("procedure.approve", &bytes)).is_ok());
    }

    #[test]
    fn only_a_w3c_trace_context_is_passed_on() {
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_context(w3c).as_deref(), Some(w3c));
        assert_eq!(trace_context(&format!(" {w3c}\t")).as_deref(), Some(w3c));
        // A later version's extra fields are not passed on; its four known ones are.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert_eq!(trace_context(later).as_deref(), Some(&later[..55]));
        for invalid in [
            "",
            "cafe",
            "0",
            "00-\"quoted\"-01",
            &w3c.to_uppercase(),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            &"0".repeat(200),
        ] {
            assert_eq!(trace_context(invalid), None, "{invalid:?}");
        }
    }

    #[test]
    fn a_header_id_that_contradicts_the_body_is_refused() {
        let id = Uuid::from_u128(9).to_string();
        let body = br#"{"schema_version":1,"command_id":"00000000-0000-0000-0000-000000000001","actor":"00000000-0000-0000-0000-000000000002","payload":{"task_id":"00000000-0000-0000-0000-000000000003"}}"#;
        let mut a = arrival("task.start", body);
        a.msg_id = Some(&id);
        // Keyed by the header's id: the body's id stays free for the command that owns it.
        assert_eq!(code(decode(&a)), ("invalid_payload", Uuid::from_u128(9)));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::wire::command::CommandName;
    use proptest::prelude::*;

    fn known_code(code: ErrorCode) -> bool {
        matches!(
            code,
            ErrorCode::InvalidPayload | ErrorCode::UnsupportedSchema | ErrorCode::UnknownCommand
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary bytes on any subject: never a panic, always a command or a typed rejection
        /// that keeps the message's id.
        #[test]
        fn arbitrary_bytes_decode_or_are_rejected_with_a_code(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            name in prop_oneof![
                proptest::sample::select(CommandName::ALL.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>()),
                "[a-z.]{0,20}",
            ],
        ) {
            let fallback = Uuid::from_u128(99);
            let arrival = Arrival { name: &name, payload: &bytes, msg_id: None, reply_to: None, fallback_id: fallback };
            if let Err(u) = decode(&arrival) {
                prop_assert!(known_code(u.rejection.code));
            }
        }

        /// Envelopes that are JSON with random payloads: the same guarantee, past the envelope.
        #[test]
        fn random_payloads_in_valid_envelopes_are_decoded_or_rejected(
            name in proptest::sample::select(CommandName::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()),
            key in "[a-z_]{1,12}",
            value in prop_oneof![Just(serde_json::json!(null)), any::<i64>().prop_map(|n| serde_json::json!(n)), "[ -~]{0,40}".prop_map(|s| serde_json::json!(s))],
            schema in 0u32..3,
        ) {
            let body = serde_json::json!({
                "schema_version": schema, "command_id": Uuid::from_u128(1), "actor": Uuid::from_u128(2),
                "payload": { key: value },
            });
            let bytes = serde_json::to_vec(&body).expect("json");
            let arrival = Arrival { name, payload: &bytes, msg_id: None, reply_to: None, fallback_id: Uuid::nil() };
            match decode(&arrival) {
                Ok(i) => prop_assert_eq!(i.command_id, Uuid::from_u128(1)),
                Err(u) => {
                    prop_assert!(known_code(u.rejection.code));
                    prop_assert_eq!(u.meta.command_id, Uuid::from_u128(1));
                }
            }
        }
    }
}

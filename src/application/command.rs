//! A decoded command with its envelope, as the pipeline takes it. The commands themselves, by
//! family, are declared once in [`crate::wire::command`].

use uuid::Uuid;

use super::{MessageMeta, Rejection};
use crate::domain::error::ErrorCode;
use crate::domain::system::Actor;
use crate::wire::command::{Command, CommandName};

/// A decoded command with its envelope.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub command_id: Uuid,
    pub actor: Uuid,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    /// W3C `traceparent` of the command, passed on to its events.
    pub traceparent: Option<String>,
    /// The `Sop-Signature` header and the bytes it signs, when the command carried one.
    pub signed: Option<Signed>,
    pub command: Command,
}

/// A signature and the bytes it is over (for a command, its name and body:
/// [`crate::wire::signature::command_message`]).
#[derive(Debug, Clone)]
pub struct Signed {
    pub signature: String,
    pub message: Vec<u8>,
    /// The key that signed, as the `Sop-Key` header names it; the registered key when absent.
    pub key: Option<String>,
}

impl Signed {
    /// The key that signed, when it is not `registered`: a token's, to be found active.
    pub fn token_key(&self, registered: Option<&str>) -> Option<&str> {
        self.key
            .as_deref()
            .map(str::trim)
            .filter(|k| Some(*k) != registered)
    }
}

impl Incoming {
    pub fn name(&self) -> CommandName {
        self.command.name()
    }

    pub fn meta(&self) -> MessageMeta {
        MessageMeta {
            command_id: self.command_id,
            command: self.name().as_str().to_owned(),
            actor: Some(self.actor),
            team: None,
            reply_to: self.reply_to.clone(),
        }
    }
}

/// Whether a deployment serves systems that have no key (the worker setting
/// `require_signatures`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Signing {
    /// A system with a registered key must sign; one without is served unsigned.
    #[default]
    WhereKeyed,
    /// Every command and query must be signed: a system without a key is refused.
    Required,
}

impl Signing {
    pub fn required(required: bool) -> Signing {
        if required {
            Signing::Required
        } else {
            Signing::WhereKeyed
        }
    }
}

/// The key a message of `actor` must be signed with: the token's key its signature names
/// (`token`: whether that key is an active token of the actor; refused when it is not), else
/// the actor's registered key; `None` when it has neither and `signing` lets that pass.
pub fn verifying_key<'a>(
    signed: Option<&'a Signed>,
    token: Option<bool>,
    actor: &'a Actor,
    signing: Signing,
) -> Result<Option<&'a str>, Rejection> {
    let registered = actor.public_key.as_deref();
    if registered.is_none() && token.is_none() && signing == Signing::Required {
        return Err(Rejection::new(
            ErrorCode::Forbidden,
            format!(
                "this deployment requires every command and query to be signed, and system {} \
                 has no registered key: an operator registers its public key with \
                 `sop team apply` (public_key), then the agent signs with its seed",
                actor.id
            ),
        ));
    }
    match (signed.and_then(|s| s.token_key(registered)), token) {
        (Some(key), Some(true)) => Ok(Some(key)),
        (Some(key), _) => Err(Rejection::new(
            ErrorCode::Forbidden,
            format!(
                "the key {key} that signed is no token of system {} (revoked, expired or never issued)",
                actor.id
            ),
        )),
        (None, _) => Ok(registered),
    }
}

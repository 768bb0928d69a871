//! Operator requests (`<prefix>sop.admin.<name>`): core request/reply through the NATS service
//! API, like queries, but for operators. No system exists yet to sign a team's registration,
//! so these carry no `actor` and no signature: NATS permissions keep them to the `operator`
//! user (`deploy/nats/roles.conf`). Failures answer as queries do ([`super::query::QueryFailure`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::error::DomainError;
use crate::domain::system::SystemKind;
use crate::domain::team::{check_roster, parse_team_name};

subject_names!(
    /// Every operator request, named as its subject suffix (`<prefix>sop.admin.<name>`).
    AdminName {
        ApplyTeam = "team.apply",
        DeadLetters = "dead_letter.list",
        ParkedOutbox = "outbox.parked",
        RepublishOutbox = "outbox.republish",
        IssueToken = "token.issue",
        RevokeToken = "token.revoke",
        ListTokens = "token.list",
    }
);

/// A team as an operator describes it (bootstrap file, CLI or `team.apply`). Applying it is
/// idempotent: the team and its systems are matched by name, created when missing, updated
/// otherwise; systems not named are left as they are.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    pub name: String,
    pub systems: Vec<SystemSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    /// Agent identity, e.g. `System3/root`.
    pub name: String,
    /// `system1` … `system5`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Keep a known id (e.g. one already configured in an agent); minted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(default)]
    pub skills: Vec<String>,
    /// NATS user public key (`U…`): from then on, this system's commands must be signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The NATS user (nkey, `U…`) its agent connects to NATS as, in a deployment whose teams
    /// are isolated on the bus (`sop roles` makes that user's permissions). A key of its own,
    /// never `public_key`: the NATS server chooses what a client signs to connect. Read by
    /// `sop roles`, not kept by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_key: Option<String>,
}

impl TeamSpec {
    /// The team's name and its systems' types, once every field is valid (the keys too).
    pub fn check(&self) -> Result<(String, Vec<SystemKind>), DomainError> {
        let name = parse_team_name(&self.name)?;
        let mut kinds = Vec::new();
        for (i, s) in self.systems.iter().enumerate() {
            kinds.push(SystemKind::parse(&format!("systems[{i}].type"), &s.kind)?);
            crate::domain::text::required(&format!("systems[{i}].name"), &s.name, 200)?;
            for (field, key) in [("public_key", &s.public_key), ("nats_key", &s.nats_key)] {
                if let Some(key) = key {
                    crate::wire::signature::parse_public_key(key).map_err(|e| {
                        DomainError::invalid(format!("systems[{i}].{field}"), e.to_string())
                    })?;
                }
            }
            if s.nats_key.is_some() && s.nats_key == s.public_key {
                return Err(DomainError::invalid(
                    format!("systems[{i}].nats_key"),
                    "must be a key of its own, not public_key: the NATS server chooses what a \
                     client signs to connect, so the signing key never signs in to NATS",
                ));
            }
        }
        check_roster(&kinds)?;
        Ok((name, kinds))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterRequest {
    /// At most this many, newest first (default 50, at most 1000); fewer when more would make
    /// the answer larger than the server accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParkedRequest {}

/// Which parked messages to put back on the relay's list: `seqs`, or `all`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepublishRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seqs: Vec<i64>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeadLetter {
    pub command_id: Uuid,
    pub subject: String,
    pub reason: String,
    pub message: String,
    /// The body as received, cut at 64 KiB.
    pub payload: String,
    /// The whole body's size.
    pub payload_bytes: i32,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeadLetters {
    /// Newest first.
    pub dead_letters: Vec<DeadLetter>,
    /// Whether older ones were left out to keep the answer within the server's limit.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ParkedMessage {
    pub seq: i64,
    pub subject: String,
    /// `event.<type>` or `outcome`.
    pub kind: String,
    /// The payload's size.
    pub bytes: usize,
    /// Why the server refused it.
    pub reason: String,
    pub parked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ParkedMessages {
    /// Oldest first (by `seq`).
    pub parked: Vec<ParkedMessage>,
}

/// A bearer token for a system, as the CLI registers it: the public key of a seed made on
/// the operator's machine, so the secret never crosses the bus.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    pub system_id: Uuid,
    /// NATS user public key (`U…`) of the token's seed.
    pub public_key: String,
    /// What the token is for, shown in `token.list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it stops working; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Ends a token now: every call made with it from then on is refused.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    pub token_id: Uuid,
}

/// The tokens of one system, or of every system when none is named.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<Uuid>,
}

/// A token as the service keeps it: never the token itself.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenInfo {
    pub token_id: Uuid,
    pub system_id: Uuid,
    pub system: String,
    pub team: String,
    /// The public key its signatures are checked against.
    pub public_key: String,
    pub label: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenList {
    /// In the order they were issued.
    pub tokens: Vec<TokenInfo>,
}

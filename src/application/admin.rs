//! Operator use cases: register a team, read dead letters, list and republish parked outbox
//! messages. They take no acting system (NATS permissions decide who may ask) and answer with
//! the same [`QueryError`] as queries.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::Rejection;
use super::command::Signing;
use super::pages::{PageSize, fit};
use super::queries::QueryError;
use crate::domain::error::{DomainError, ErrorCode};
use crate::domain::text;
use crate::store::{
    self,
    outbox::{Parked, RepublishError, Selection},
    teams::{TeamError, TeamSpec},
};
use crate::wire::admin::{
    DeadLetter, DeadLetters, IssueToken, ParkedMessage, ParkedMessages, TokenInfo, TokenList,
};
use crate::wire::answer::TeamIdentity;
use crate::wire::page::json_len;

/// Dead letters an answer holds unless asked otherwise, and at most.
pub const DEAD_LETTERS_PAGE: PageSize = PageSize {
    default: 50,
    max: 1000,
};

fn parked_messages(rows: Vec<Parked>) -> ParkedMessages {
    ParkedMessages {
        parked: rows
            .into_iter()
            .map(|p| ParkedMessage {
                seq: p.seq,
                subject: p.subject,
                kind: p.kind,
                bytes: p.bytes,
                reason: p.reason,
                parked_at: p.parked_at,
            })
            .collect(),
    }
}

/// Creates or updates a team and its systems in one transaction ([`store::teams::apply`]).
/// Where `signing` requires signatures, every system must come with its key: one without
/// could not act at all.
pub async fn apply_team(
    db: &DatabaseConnection,
    spec: &TeamSpec,
    signing: Signing,
) -> Result<TeamIdentity, QueryError> {
    if signing == Signing::Required
        && let Some(i) = spec.systems.iter().position(|s| s.public_key.is_none())
    {
        return Err(DomainError::invalid(
            format!("systems[{i}].public_key"),
            format!(
                "this deployment requires signatures, and system `{}` has no public_key: give \
                 each system the public key (U…) of the nkey its agent signs with",
                text::excerpt(&spec.systems[i].name, 64, 16)
            ),
        )
        .into());
    }
    let txn = store::begin(db).await?;
    let record = match store::teams::apply(&txn, spec).await {
        Ok(record) => record,
        Err(TeamError::Invalid(e)) => return Err(e.into()),
        Err(TeamError::Db(e)) => return Err(e.into()),
    };
    txn.commit().await?;
    Ok(record.into())
}

/// The newest dead letters, as many as `limit` and `max_bytes` allow.
pub async fn dead_letters(
    db: &DatabaseConnection,
    limit: Option<u64>,
    max_bytes: usize,
) -> Result<DeadLetters, QueryError> {
    let limit = DEAD_LETTERS_PAGE.limit(limit);
    let rows = store::dead_letters::latest(db, limit).await?;
    let found: Vec<((), DeadLetter)> = rows
        .into_iter()
        .map(|r| {
            (
                (),
                DeadLetter {
                    command_id: r.command_id,
                    subject: r.subject,
                    reason: r.reason,
                    message: r.message,
                    payload: r.payload,
                    payload_bytes: r.payload_bytes,
                    received_at: r.received_at,
                },
            )
        })
        .collect();
    let base = json_len(&DeadLetters {
        dead_letters: vec![],
        truncated: false,
    });
    let (dead_letters, left_out) = fit(base, found, limit, max_bytes)?;
    Ok(DeadLetters {
        dead_letters,
        truncated: left_out.is_some(),
    })
}

pub async fn parked(db: &DatabaseConnection) -> Result<ParkedMessages, QueryError> {
    Ok(parked_messages(store::outbox::parked(db).await?))
}

/// Puts parked messages back on the relay's list: all or nothing ([`store::outbox::republish`]).
pub async fn republish(
    db: &DatabaseConnection,
    seqs: &[i64],
    all: bool,
) -> Result<ParkedMessages, QueryError> {
    let which = match (all, seqs.is_empty()) {
        (true, true) => Selection::All,
        (false, false) => Selection::Seqs(seqs),
        _ => {
            return Err(Rejection {
                code: ErrorCode::ValidationFailed,
                message: "give either seqs or all".into(),
                field: Some("seqs".into()),
            }
            .into());
        }
    };
    match store::outbox::republish(db, which).await {
        Ok(moved) => Ok(parked_messages(moved)),
        Err(e @ RepublishError::NotParked(_)) => {
            Err(Rejection::new(ErrorCode::NotFound, e.to_string()).into())
        }
        Err(RepublishError::Db(e)) => Err(e.into()),
    }
}

/// Registers a token's public key for a system ([`store::tokens::insert`]).
pub async fn issue_token(
    db: &DatabaseConnection,
    token: &IssueToken,
    now: DateTime<Utc>,
) -> Result<TokenInfo, QueryError> {
    crate::wire::signature::parse_public_key(&token.public_key)
        .map_err(|e| Rejection::from(DomainError::invalid("public_key", e.to_string())))?;
    if let Some(label) = &token.label {
        text::required("label", label, text::MAX_NAME).map_err(Rejection::from)?;
    }
    if token.expires_at.is_some_and(|at| at <= now) {
        return Err(
            Rejection::from(DomainError::invalid("expires_at", "is not in the future")).into(),
        );
    }
    let issued = store::tokens::insert(db, token, now)
        .await?
        .ok_or_else(|| Rejection::not_found("system", token.system_id))?;
    tracing::info!(token = %issued.token_id, system = %issued.system, team = %issued.team,
        expires_at = ?issued.expires_at, "token issued");
    Ok(issued)
}

pub async fn revoke_token(
    db: &DatabaseConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<TokenInfo, QueryError> {
    let revoked = store::tokens::revoke(db, id, now)
        .await?
        .ok_or_else(|| Rejection::not_found("token", id))?;
    tracing::info!(token = %revoked.token_id, system = %revoked.system, team = %revoked.team,
        "token revoked");
    Ok(revoked)
}

pub async fn tokens(
    db: &DatabaseConnection,
    system: Option<Uuid>,
) -> Result<TokenList, QueryError> {
    Ok(TokenList {
        tokens: store::tokens::list(db, system).await?,
    })
}

//! The query service: one NATS service-API endpoint per query (`<prefix>sop.query.<name>`),
//! discoverable with `$SRV.PING` / `$SRV.INFO` / `$SRV.STATS`, load-balanced across workers by
//! the service's queue group. Failures answer with the `Nats-Service-Error(-Code)` headers and
//! a JSON body carrying the same codes as command rejections.

use std::collections::HashMap;

use async_nats::HeaderMap;
use async_nats::service::{Service, ServiceExt};
use chrono::Utc;
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::application::queries::{
    self, AUDIT_PAGE, HISTORY_PAGE, PROCEDURES_PAGE, Page, Query, QueryError, RUN_TASKS_PAGE,
    SignedQuery,
};
use crate::application::{Rejection, Signed};
use crate::domain::error::ErrorCode;
use crate::domain::ids::{SeriesId, Version};
use crate::wire::outcome::ErrorBody;
use crate::wire::page::{BadCursor, Cursor};
use crate::wire::query::*;
use crate::wire::signature::{SIGNATURE_HEADER, SIGNED_AT_HEADER, query_message};
use crate::wire::subjects::Subjects;

/// How many requests one endpoint answers at once.
const CONCURRENCY: usize = 16;

fn status(code: ErrorCode) -> usize {
    match code {
        ErrorCode::InvalidPayload
        | ErrorCode::UnsupportedSchema
        | ErrorCode::UnknownCommand
        | ErrorCode::ValidationFailed => 400,
        ErrorCode::Forbidden => 403,
        ErrorCode::NotFound => 404,
        ErrorCode::InvalidState | ErrorCode::Conflict => 409,
        ErrorCode::TooLarge => 413,
        ErrorCode::Internal => 500,
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejection> {
    serde_json::from_slice(bytes)
        .map_err(|e| Rejection::new(ErrorCode::InvalidPayload, format!("request: {e}")))
}

/// The key a request's `cursor` holds, when it is one this list gave out (`key` says which it
/// accepts: a cursor of another query, series or run is refused like a malformed one).
fn after<K>(
    cursor: Option<&str>,
    key: impl FnOnce(Cursor) -> Option<K>,
) -> Result<Option<K>, Rejection> {
    let Some(text) = cursor else {
        return Ok(None);
    };
    Cursor::decode(text)
        .ok()
        .and_then(key)
        .map(Some)
        .ok_or_else(|| Rejection {
            code: ErrorCode::ValidationFailed,
            message: BadCursor.to_string(),
            field: Some("cursor".into()),
        })
}

/// Bytes of a request → the asking system and its query.
pub fn decode(name: QueryName, bytes: &[u8]) -> Result<(uuid::Uuid, Query), Rejection> {
    use QueryName as N;
    Ok(match name {
        N::GetProcedure => {
            let q: ProcedureQuery = parse(bytes)?;
            (
                q.actor,
                Query::GetProcedure {
                    procedure_id: q.procedure_id,
                },
            )
        }
        N::ListProcedures => {
            let q: ListQuery = parse(bytes)?;
            let after = after(q.cursor.as_deref(), |c| match c {
                Cursor::Procedures { series_id, version } => {
                    Some((SeriesId(series_id), Version(version)))
                }
                _ => None,
            })?;
            (
                q.actor,
                Query::ListProcedures {
                    status: q.status,
                    name: q.name,
                    page: Page {
                        after,
                        limit: PROCEDURES_PAGE.limit(q.limit),
                    },
                },
            )
        }
        N::History => {
            let q: SeriesQuery = parse(bytes)?;
            let after = after(q.cursor.as_deref(), |c| match c {
                Cursor::History { series_id, version } if series_id == q.series_id => {
                    Some(Version(version))
                }
                _ => None,
            })?;
            (
                q.actor,
                Query::History {
                    series_id: q.series_id,
                    page: Page {
                        after,
                        limit: HISTORY_PAGE.limit(q.limit),
                    },
                },
            )
        }
        N::Diff => {
            let q: DiffQuery = parse(bytes)?;
            (
                q.actor,
                Query::Diff {
                    from: q.from,
                    to: q.to,
                },
            )
        }
        N::Preview => {
            let q: ProcedureQuery = parse(bytes)?;
            (
                q.actor,
                Query::Preview {
                    procedure_id: q.procedure_id,
                },
            )
        }
        N::GetRun => {
            let q: RunQuery = parse(bytes)?;
            let after = after(q.cursor.as_deref(), |c| match c {
                Cursor::RunTasks { run_id, seq } if run_id == q.run_id => Some(seq),
                _ => None,
            })?;
            (
                q.actor,
                Query::GetRun {
                    run_id: q.run_id,
                    page: Page {
                        after,
                        limit: RUN_TASKS_PAGE.limit(q.limit),
                    },
                },
            )
        }
        N::Trace => {
            let q: InitiativeQuery = parse(bytes)?;
            (
                q.actor,
                Query::Trace {
                    initiative_id: q.initiative_id,
                },
            )
        }
        N::Audit => {
            let q: AuditQuery = parse(bytes)?;
            let after = after(q.cursor.as_deref(), |c| match c {
                Cursor::Audit {
                    series_id,
                    run_id,
                    seq,
                } if series_id == q.series_id && run_id == q.run_id => Some(seq),
                _ => None,
            })?;
            (
                q.actor,
                Query::Audit {
                    series_id: q.series_id,
                    run_id: q.run_id,
                    page: Page {
                        after,
                        limit: AUDIT_PAGE.limit(q.limit),
                    },
                },
            )
        }
        N::Outcome => {
            let q: OutcomeQuery = parse(bytes)?;
            (
                q.actor,
                Query::Outcome {
                    command_id: q.command_id,
                },
            )
        }
    })
}

/// The signature a request carries, with the bytes it is over.
fn signature(name: QueryName, headers: Option<&HeaderMap>, bytes: &[u8]) -> Option<SignedQuery> {
    let header = |key: &str| {
        headers
            .and_then(|h| h.get(key))
            .map(|v| v.as_str().to_owned())
    };
    let signature = header(SIGNATURE_HEADER)?;
    let signed_at = header(SIGNED_AT_HEADER).unwrap_or_default();
    Some(SignedQuery {
        signed: Signed {
            signature,
            message: query_message(name.as_str(), &signed_at, bytes),
        },
        signed_at,
    })
}

/// Room the reply's headers may take beside its body within the server's `max_payload` (a
/// successful answer has none; the margin keeps the limit clear of any the library adds).
const HEADER_ROOM: usize = 1024;

/// The bytes an answer's body may take on a server that accepts messages of `max_payload`.
fn answer_room(max_payload: usize) -> usize {
    max_payload.saturating_sub(HEADER_ROOM)
}

async fn respond(
    db: &DatabaseConnection,
    name: QueryName,
    headers: Option<&HeaderMap>,
    bytes: &[u8],
    max_answer_bytes: usize,
) -> Result<Vec<u8>, Rejection> {
    let (actor, query) = decode(name, bytes)?;
    let signed = signature(name, headers, bytes);
    match queries::answer(
        db,
        actor,
        query,
        signed.as_ref(),
        Utc::now(),
        max_answer_bytes,
    )
    .await
    {
        Ok(answer) => {
            let body = serde_json::to_vec(&answer)
                .map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
            // Lists page within the limit; what still exceeds it (one version, a diff…)
            // cannot be sent, and a refusal beats the silence of a dropped reply.
            if body.len() > max_answer_bytes {
                return Err(Rejection::new(
                    ErrorCode::TooLarge,
                    format!(
                        "the answer is {} bytes; the server accepts at most {max_answer_bytes}",
                        body.len()
                    ),
                ));
            }
            Ok(body)
        }
        Err(QueryError::Rejected(r)) => Err(r),
        Err(QueryError::Store(e)) => {
            warn!(query = %name, error = %e, "query failed");
            Err(Rejection::new(
                ErrorCode::Internal,
                "the database could not answer; try again",
            ))
        }
    }
}

/// Starts the service and one task per endpoint; returns the service to stop it later.
pub async fn start(
    nats: &async_nats::Client,
    db: DatabaseConnection,
    subjects: &Subjects,
) -> Result<Service, async_nats::Error> {
    let service = nats
        .service_builder()
        .description(
            "vsm-sop: queries over Standard Operating Procedures, runs and their audit trail",
        )
        .start("sop", env!("CARGO_PKG_VERSION"))
        .await?;
    let group = service.group(subjects.query_group());
    for name in QueryName::ALL.iter().copied() {
        let metadata = HashMap::from([
            ("query".to_owned(), name.as_str().to_owned()),
            (
                "schema".to_owned(),
                format!("docs/schemas/query.{}.json", name.as_str()),
            ),
        ]);
        let endpoint = group
            .endpoint_builder()
            .name(name.as_str().replace('.', "_"))
            .metadata(metadata)
            .add(name.as_str())
            .await?;
        let db = db.clone();
        let nats = nats.clone();
        tokio::spawn(endpoint.for_each_concurrent(CONCURRENCY, move |request| {
            let db = db.clone();
            // The bytes an answer may take, read per request: a reconnect may land on a
            // server with another max_payload.
            let room = answer_room(nats.max_payload());
            async move {
                let message = &request.message;
                let result = match respond(
                    &db,
                    name,
                    message.headers.as_ref(),
                    &message.payload,
                    room,
                )
                .await
                {
                    Ok(body) => request.respond(Ok(body.into())).await,
                    Err(r) => {
                        let mut headers = HeaderMap::new();
                        headers.insert(SERVICE_ERROR_HEADER, r.message.as_str());
                        headers.insert(
                            SERVICE_ERROR_CODE_HEADER,
                            status(r.code).to_string().as_str(),
                        );
                        let body = QueryFailure {
                            error: ErrorBody {
                                code: r.code.as_str().to_owned(),
                                message: r.message,
                                field: r.field,
                            },
                        };
                        let bytes = serde_json::to_vec(&body).unwrap_or_default();
                        request
                            .respond_with_headers(Ok(bytes.into()), headers)
                            .await
                    }
                };
                if let Err(e) = result {
                    warn!(query = %name, error = %e, "could not answer a query");
                }
            }
        }));
    }
    Ok(service)
}

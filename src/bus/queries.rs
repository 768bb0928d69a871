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

use crate::application::command::Signing;
use crate::application::pages::{
    AUDIT_PAGE, HISTORY_PAGE, PROCEDURES_PAGE, Page, RUN_TASKS_PAGE, RUNS_PAGE, TASKS_PAGE,
};
use crate::application::queries::{self, Identity, Query, QueryError, SignedQuery};
use crate::application::{Rejection, Signed};
use crate::domain::error::ErrorCode;
use crate::domain::ids::{RunId, SeriesId, SystemId, TaskId, Version};
use crate::wire::outcome::ErrorBody;
use crate::wire::page::{BadCursor, Cursor};
use crate::wire::query::*;
use crate::wire::signature::{KEY_HEADER, SIGNATURE_HEADER, SIGNED_AT_HEADER, query_message};
use crate::wire::subjects::Subjects;

/// How many requests one endpoint answers at once.
const CONCURRENCY: usize = 16;

fn status(code: ErrorCode) -> usize {
    match code {
        ErrorCode::InvalidPayload
        | ErrorCode::UnsupportedSchema
        | ErrorCode::UnknownCommand
        | ErrorCode::ValidationFailed => 400,
        ErrorCode::Forbidden | ErrorCode::PolicyDenied => 403,
        ErrorCode::NotFound => 404,
        ErrorCode::InvalidState | ErrorCode::Conflict => 409,
        ErrorCode::TooLarge => 413,
        ErrorCode::Internal => 500,
    }
}

pub(super) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejection> {
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

/// A decoded request: a question a team member asks, or one about identity, which has no asker.
#[derive(Debug, Clone)]
pub enum Asked {
    ByMember(uuid::Uuid, Query),
    Identity(Identity),
}

/// Bytes of a request → who asks what.
pub fn decode(name: QueryName, bytes: &[u8]) -> Result<Asked, Rejection> {
    use QueryName as N;
    let (actor, query) = match name {
        N::GetSystem => {
            let q: SystemQuery = parse(bytes)?;
            return Ok(Asked::Identity(Identity::System {
                team: q.team,
                name: q.name,
            }));
        }
        N::GetTeam => {
            let q: TeamQuery = parse(bytes)?;
            return match (q.team, q.system_id) {
                (Some(team), None) => Ok(Asked::Identity(Identity::Team { team })),
                (None, Some(system_id)) => Ok(Asked::Identity(Identity::TeamOf { system_id })),
                _ => Err(Rejection {
                    code: ErrorCode::ValidationFailed,
                    message: "give either team or system_id".into(),
                    field: Some("team".into()),
                }),
            };
        }
        N::GetPolicy => {
            let q: PolicyQuery = parse(bytes)?;
            (q.actor, Query::GetPolicy)
        }
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
        N::ListRuns => {
            let q: RunListQuery = parse(bytes)?;
            let after = after(q.cursor.as_deref(), |c| match c {
                Cursor::Runs { run_id } => Some(RunId(run_id)),
                _ => None,
            })?;
            (
                q.actor,
                Query::ListRuns {
                    status: q.status,
                    series_id: q.series_id.map(SeriesId),
                    page: Page {
                        after,
                        limit: RUNS_PAGE.limit(q.limit),
                    },
                },
            )
        }
        N::ListTasks => {
            let q: TaskListQuery = parse(bytes)?;
            let assignee = q.assignee_system_id.unwrap_or(q.actor);
            let after = after(q.cursor.as_deref(), |c| match c {
                Cursor::Tasks {
                    assignee: a,
                    task_id,
                } if a == assignee => Some(TaskId(task_id)),
                _ => None,
            })?;
            (
                q.actor,
                Query::ListTasks {
                    assignee: SystemId(assignee),
                    status: q.status,
                    ready: q.ready,
                    page: Page {
                        after,
                        limit: TASKS_PAGE.limit(q.limit),
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
    };
    Ok(Asked::ByMember(actor, query))
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
            key: header(KEY_HEADER),
        },
        signed_at,
    })
}

/// Room the reply's headers may take beside its body within the server's `max_payload` (a
/// successful answer has none; the margin keeps the limit clear of any the library adds).
const HEADER_ROOM: usize = 1024;

/// The bytes an answer's body may take on a server that accepts messages of `max_payload`.
pub(super) fn answer_room(max_payload: usize) -> usize {
    max_payload.saturating_sub(HEADER_ROOM)
}

async fn respond(
    db: &DatabaseConnection,
    signing: Signing,
    name: QueryName,
    headers: Option<&HeaderMap>,
    bytes: &[u8],
    max_answer_bytes: usize,
) -> Result<Vec<u8>, Rejection> {
    let answered = match decode(name, bytes)? {
        Asked::Identity(question) => queries::identify(db, question).await,
        Asked::ByMember(actor, query) => {
            let signed = signature(name, headers, bytes);
            queries::answer(
                db,
                actor,
                query,
                signed.as_ref(),
                signing,
                Utc::now(),
                max_answer_bytes,
            )
            .await
        }
    };
    body(name.as_str(), answered, max_answer_bytes)
}

/// The bytes of an answer, or the refusal to send: too large, or failed.
pub(super) fn body<A: serde::Serialize>(
    name: &str,
    answered: Result<A, QueryError>,
    max_answer_bytes: usize,
) -> Result<Vec<u8>, Rejection> {
    match answered {
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
            warn!(request = %name, error = %e, "request failed");
            Err(Rejection::new(
                ErrorCode::Internal,
                "the database could not answer; try again",
            ))
        }
    }
}

/// Sends an answer, or a refusal with the service-API error headers and a [`QueryFailure`].
///
/// async-nats counts an endpoint's errors (`num_errors` in `$SRV.STATS`) only for a reply it
/// sends itself with an empty body, and a refusal needs its typed body: so the refusal goes
/// out on `nats`, then the library counts it with its empty error sent to an inbox nobody
/// reads.
pub(super) async fn reply(
    mut request: async_nats::service::Request,
    nats: &async_nats::Client,
    name: &str,
    result: Result<Vec<u8>, Rejection>,
) {
    let sent = match (result, request.message.reply.clone()) {
        (Ok(body), _) => request.respond(Ok(body.into())).await,
        (Err(r), Some(reply_to)) => {
            let status = status(r.code);
            let mut headers = HeaderMap::new();
            headers.insert(SERVICE_ERROR_HEADER, r.message.as_str());
            headers.insert(SERVICE_ERROR_CODE_HEADER, status.to_string().as_str());
            let error = async_nats::service::error::Error {
                status: r.message.clone(),
                code: status,
            };
            let body = QueryFailure {
                error: ErrorBody {
                    code: r.code.as_str().to_owned(),
                    message: r.message,
                    field: r.field,
                },
            };
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let answered = nats
                .publish_with_headers(reply_to, headers, bytes.into())
                .await;
            request.message.reply = Some(nats.new_inbox().into());
            let counted = request.respond(Err(error)).await;
            answered.and(counted)
        }
        // A request without a reply subject has nobody to answer.
        (Err(_), None) => Ok(()),
    };
    if let Err(e) = sent {
        warn!(request = %name, error = %e, "could not answer a request");
    }
}

/// Where an endpoint's request and answer schemas are: its channel in the AsyncAPI document,
/// a file of the repository (`sop contract` prints the same document).
pub fn contract_pointer(channel: &str) -> String {
    format!("docs/asyncapi.yaml#/channels/{channel}")
}

/// Starts the service and one task per endpoint; returns the service to stop it later.
/// Also starts the operator endpoints ([`super::admin`]) in the same service.
pub async fn start(
    nats: &async_nats::Client,
    db: DatabaseConnection,
    subjects: &Subjects,
    signing: Signing,
    team_streams: super::streams::TeamStreams,
) -> Result<Service, async_nats::Error> {
    let service = nats
        .service_builder()
        .description(
            "vsm-sop: queries over Standard Operating Procedures, runs and their audit trail; operator requests",
        )
        .start("sop", env!("CARGO_PKG_VERSION"))
        .await?;
    let group = service.group(subjects.query_group());
    for name in QueryName::ALL.iter().copied() {
        let metadata = HashMap::from([
            ("query".to_owned(), name.as_str().to_owned()),
            (
                "schema".to_owned(),
                contract_pointer(&format!("sop.query.{}", name.as_str())),
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
            let nats = nats.clone();
            async move {
                let message = &request.message;
                let result = respond(
                    &db,
                    signing,
                    name,
                    message.headers.as_ref(),
                    &message.payload,
                    room,
                )
                .await;
                reply(request, &nats, name.as_str(), result).await;
            }
        }));
    }
    super::admin::start(&service, nats, db, subjects, signing, team_streams).await?;
    Ok(service)
}

//! Read-side use cases: each answers one question about a team's procedures and runs, from
//! the database, for any registered system of that team. Nothing here writes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use uuid::Uuid;

use super::{Rejection, Signed, within_team};
use crate::domain::diff::{Diff, diff};
use crate::domain::error::{DomainError, ErrorCode};
use crate::domain::event::{InitiativeView, ProcedureView, ReviewView, RunView, TaskView};
use crate::domain::ids::*;
use crate::domain::procedure::{Procedure, ProcedureStatus};
use crate::domain::run::assign;
use crate::domain::system::{Actor, SystemKind};
use crate::domain::template::TaskTemplate;
use crate::domain::text;
use crate::store;
use crate::store::procedures::SeriesLock;
use crate::wire::outcome::Outcome;
use crate::wire::signature::{MAX_QUERY_SKEW_SECS, verify};

/// Every question the service answers.
#[derive(Debug, Clone)]
pub enum Query {
    GetProcedure {
        procedure_id: Uuid,
    },
    ListProcedures {
        status: Option<String>,
        name: Option<String>,
    },
    History {
        series_id: Uuid,
    },
    Diff {
        from: Uuid,
        to: Uuid,
    },
    Preview {
        procedure_id: Uuid,
    },
    GetRun {
        run_id: Uuid,
    },
    Trace {
        initiative_id: Uuid,
    },
    Audit {
        series_id: Option<Uuid>,
        run_id: Option<Uuid>,
        limit: u64,
    },
    Outcome {
        command_id: Uuid,
    },
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProcedureDetail {
    pub procedure: ProcedureView,
    pub tasks: Vec<TaskTemplate>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProcedureList {
    pub procedures: Vec<ProcedureView>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct History {
    pub series_id: SeriesId,
    /// Oldest first; each says who drafted, approved, rejected or retired it, and when.
    pub versions: Vec<ProcedureView>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct VersionDiff {
    pub from: ProcedureView,
    pub to: ProcedureView,
    #[serde(flatten)]
    pub diff: Diff,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PreviewTask {
    pub position: u32,
    pub name: String,
    pub description: String,
    pub depends_on: Vec<u32>,
    /// Ready as soon as the run starts (no dependencies).
    pub ready_at_start: bool,
    pub assignee_type: SystemKind,
    pub assignee_system_id: Option<SystemId>,
    pub assignee_name: Option<String>,
    pub required_skills: Vec<String>,
}

/// What executing a version would create, without creating it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Preview {
    pub procedure: ProcedureView,
    /// Whether `procedure.execute` would run this version now.
    pub executable: bool,
    /// Why it would not (not approved, or no system to assign a task to).
    pub blocked_by: Option<String>,
    pub initiative_name: String,
    pub initiative_description: String,
    pub tasks: Vec<PreviewTask>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunDetail {
    pub run: RunView,
    pub initiative: InitiativeView,
    pub tasks: Vec<TaskView>,
    pub review: Option<ReviewView>,
}

/// From an initiative back to the procedure version and run that made it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Trace {
    pub initiative_id: InitiativeId,
    pub run: RunView,
    pub procedure: ProcedureView,
    pub review_id: Option<ReviewId>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub published: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Audit {
    pub entries: Vec<AuditEntry>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Answer {
    Procedure(Box<ProcedureDetail>),
    Procedures(ProcedureList),
    History(History),
    Diff(Box<VersionDiff>),
    Preview(Box<Preview>),
    Run(Box<RunDetail>),
    Trace(Box<Trace>),
    Audit(Audit),
    Outcome(Box<Outcome>),
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{}", .0.message)]
    Rejected(Rejection),
    #[error(transparent)]
    Store(#[from] sea_orm::DbErr),
}

impl From<Rejection> for QueryError {
    fn from(r: Rejection) -> QueryError {
        QueryError::Rejected(r)
    }
}

impl From<DomainError> for QueryError {
    fn from(e: DomainError) -> QueryError {
        QueryError::Rejected(e.into())
    }
}

/// A query's signature as it arrived: the bytes it is over
/// ([`crate::wire::signature::query_message`]) and the `Sop-Signed-At` time it claims.
#[derive(Debug, Clone)]
pub struct SignedQuery {
    pub signed: Signed,
    pub signed_at: String,
}

/// A system with a registered key must sign each query with it, at a time within
/// [`MAX_QUERY_SKEW_SECS`] of `now`; others may, unchecked.
fn check_signature(
    who: &Actor,
    signed: Option<&SignedQuery>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    let Some(key) = &who.public_key else {
        return Ok(());
    };
    let forbidden = |message: String| Rejection::new(ErrorCode::Forbidden, message);
    let Some(query) = signed else {
        return Err(forbidden(format!(
            "system {} signs its queries: this one carries no Sop-Signature",
            who.id
        )));
    };
    let at = DateTime::parse_from_rfc3339(query.signed_at.trim()).map_err(|_| {
        forbidden(format!(
            "Sop-Signed-At `{}` is not an RFC 3339 time",
            text::excerpt(&query.signed_at, 64, 64)
        ))
    })?;
    let skew = (now - at.with_timezone(&Utc)).num_seconds();
    if skew.abs() > MAX_QUERY_SKEW_SECS {
        return Err(forbidden(format!(
            "the query was signed at {at}, more than {MAX_QUERY_SKEW_SECS} s from the worker's \
             clock ({now}): sign each query when it is sent"
        )));
    }
    verify(key, &query.signed.message, &query.signed.signature)
        .map_err(|e| forbidden(format!("query of system {}: {e}", who.id)))
}

async fn asker(db: &DatabaseConnection, actor: Uuid) -> Result<Actor, QueryError> {
    store::teams::actor(db, actor)
        .await?
        .map(|(a, _)| a)
        .ok_or_else(|| {
            Rejection::new(
                ErrorCode::Forbidden,
                format!("no system {actor} is registered"),
            )
            .into()
        })
}

async fn procedure(
    db: &DatabaseConnection,
    who: &Actor,
    id: Uuid,
) -> Result<Procedure, QueryError> {
    let p = store::procedures::find(db, id)
        .await?
        .ok_or_else(|| Rejection::not_found("procedure", id))?;
    within_team(who, p.team_id, "procedure", id)?;
    Ok(p)
}

async fn templates(
    db: &DatabaseConnection,
    id: ProcedureId,
) -> Result<crate::domain::template::Templates, QueryError> {
    Ok(store::procedures::templates(db, id).await?.0)
}

/// Answers `query` for the system `actor`, within its team, once its signature (when the
/// system has a key) checks out at `now`.
pub async fn answer(
    db: &DatabaseConnection,
    actor: Uuid,
    query: Query,
    signed: Option<&SignedQuery>,
    now: DateTime<Utc>,
) -> Result<Answer, QueryError> {
    let who = asker(db, actor).await?;
    check_signature(&who, signed, now)?;
    Ok(match query {
        Query::GetProcedure { procedure_id } => {
            let p = procedure(db, &who, procedure_id).await?;
            let tasks = templates(db, p.id).await?.as_slice().to_vec();
            Answer::Procedure(Box::new(ProcedureDetail {
                procedure: ProcedureView::of(&p),
                tasks,
            }))
        }
        Query::ListProcedures { status, name } => {
            let name = name.map(|n| n.to_lowercase());
            let procedures = store::procedures::of_team(db, who.team_id)
                .await?
                .iter()
                .filter(|p| status.as_deref().is_none_or(|s| p.status().as_str() == s))
                .filter(|p| {
                    name.as_deref()
                        .is_none_or(|n| p.meta.name.to_lowercase().contains(n))
                })
                .map(ProcedureView::of)
                .collect();
            Answer::Procedures(ProcedureList { procedures })
        }
        Query::History { series_id } => {
            let series = store::procedures::load_series(db, SeriesId(series_id), SeriesLock::None)
                .await?
                .ok_or_else(|| Rejection::not_found("procedure series", series_id))?;
            within_team(&who, series.latest().team_id, "procedure series", series_id)?;
            Answer::History(History {
                series_id: SeriesId(series_id),
                versions: series.versions().iter().map(ProcedureView::of).collect(),
            })
        }
        Query::Diff { from, to } => {
            let (a, b) = (
                procedure(db, &who, from).await?,
                procedure(db, &who, to).await?,
            );
            let (ta, tb) = (templates(db, a.id).await?, templates(db, b.id).await?);
            Answer::Diff(Box::new(VersionDiff {
                diff: diff((&a.meta, &ta), (&b.meta, &tb)),
                from: ProcedureView::of(&a),
                to: ProcedureView::of(&b),
            }))
        }
        Query::Preview { procedure_id } => {
            let p = procedure(db, &who, procedure_id).await?;
            let ts = templates(db, p.id).await?;
            let team = store::teams::members(db, p.team_id).await?;
            let names: BTreeMap<SystemId, String> =
                team.iter().map(|s| (s.id, s.name.clone())).collect();
            let (assignees, assignment_error) = match assign(&ts, &team) {
                Ok(a) => (a.into_iter().map(Some).collect(), None),
                Err(e) => (vec![None; ts.len()], Some(e.to_string())),
            };
            let not_approved = (p.status() != ProcedureStatus::Approved).then(|| {
                format!(
                    "version {} is {}, only the approved version executes",
                    p.version,
                    p.status()
                )
            });
            let blocked_by = not_approved.or(assignment_error);
            let tasks = ts
                .as_slice()
                .iter()
                .zip(assignees)
                .map(|(t, chosen)| PreviewTask {
                    position: t.position,
                    name: t.name.clone(),
                    description: t.description.clone(),
                    depends_on: t.depends_on.iter().copied().collect(),
                    ready_at_start: t.depends_on.is_empty(),
                    assignee_type: t.default_assignee_type.unwrap_or(SystemKind::System1),
                    assignee_system_id: chosen.map(|c| c.0),
                    assignee_name: chosen.and_then(|c| names.get(&c.0).cloned()),
                    required_skills: t.required_skills.clone(),
                })
                .collect();
            Answer::Preview(Box::new(Preview {
                executable: blocked_by.is_none(),
                blocked_by,
                initiative_name: p.meta.name.clone(),
                initiative_description: p.meta.description.clone(),
                procedure: ProcedureView::of(&p),
                tasks,
            }))
        }
        Query::GetRun { run_id } => Answer::Run(Box::new(
            run_detail(db, &who, RunId(run_id), "run", run_id).await?,
        )),
        Query::Trace { initiative_id } => {
            let run = store::runs::run_of_initiative(db, initiative_id)
                .await?
                .ok_or_else(|| Rejection::not_found("initiative", initiative_id))?;
            let detail = run_detail(db, &who, run, "initiative", initiative_id).await?;
            let p = procedure(db, &who, detail.run.provenance.procedure_id.0).await?;
            Answer::Trace(Box::new(Trace {
                initiative_id: InitiativeId(initiative_id),
                review_id: detail.review.as_ref().map(|r| r.review_id),
                run: detail.run,
                procedure: ProcedureView::of(&p),
            }))
        }
        Query::Audit {
            series_id,
            run_id,
            limit,
        } => {
            if series_id.is_none() && run_id.is_none() {
                return Err(Rejection {
                    code: ErrorCode::ValidationFailed,
                    message: "give series_id or run_id".into(),
                    field: Some("series_id".into()),
                }
                .into());
            }
            if let Some(s) = series_id {
                let series = store::procedures::load_series(db, SeriesId(s), SeriesLock::None)
                    .await?
                    .ok_or_else(|| Rejection::not_found("procedure series", s))?;
                within_team(&who, series.latest().team_id, "procedure series", s)?;
            }
            if let Some(r) = run_id {
                let run = store::runs::load(db, RunId(r))
                    .await?
                    .ok_or_else(|| Rejection::not_found("run", r))?;
                within_team(&who, run.team_id, "run", r)?;
            }
            let rows = store::outbox::trail(db, series_id, run_id, limit.clamp(1, 10_000)).await?;
            let entries = rows
                .into_iter()
                .map(|(r, published)| AuditEntry {
                    seq: r.seq,
                    event_id: r.message_id,
                    kind: r.kind.trim_start_matches("event.").to_owned(),
                    subject: r.subject,
                    occurred_at: r.created_at,
                    actor: store::outbox::actor_of(&r.payload),
                    causation_id: r.causation_id,
                    published,
                })
                .collect();
            Answer::Audit(Audit { entries })
        }
        Query::Outcome { command_id } => {
            let (outcome, sender) = store::inbox::find_with_actor(db, command_id)
                .await?
                .ok_or_else(|| Rejection::not_found("outcome of command", command_id))?;
            // A command's outcome is its team's business; one from an unknown sender is anyone's.
            if let Some((sender, _)) = match sender {
                Some(s) => store::teams::actor(db, s).await?,
                None => None,
            } {
                within_team(&who, sender.team_id, "outcome of command", command_id)?;
            }
            Answer::Outcome(Box::new(outcome))
        }
    })
}

async fn run_detail(
    db: &DatabaseConnection,
    who: &Actor,
    run: RunId,
    what: &str,
    id: Uuid,
) -> Result<RunDetail, QueryError> {
    let run = store::runs::load(db, run)
        .await?
        .ok_or_else(|| Rejection::not_found(what, id))?;
    within_team(who, run.team_id, what, id)?;
    let review = store::reviews::of_run(db, run.provenance.run_id.0)
        .await?
        .map(|row| store::reviews::view_of(row, run.provenance.series_id, run.status.as_str()))
        .transpose()?;
    Ok(RunDetail {
        run: run.run_view(),
        initiative: run.initiative_view(),
        tasks: run.tasks.iter().map(|t| run.task_view(t)).collect(),
        review,
    })
}

//! Read-side use cases: each answers one question about a team's procedures and runs, from
//! the database, for any registered system of that team. Nothing here writes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::command::Signing;
use super::pages::{Page, fit};
use super::policies::{Judgement, TeamPolicy};
use super::{Rejection, Signed, within_team};
use crate::domain::diff::diff;
use crate::domain::error::{DomainError, ErrorCode};
use crate::domain::event::{ProcedureView, ReviewView};
use crate::domain::ids::*;
use crate::domain::policy::PolicyDocument;
use crate::domain::procedure::{Procedure, ProcedureStatus};
use crate::domain::run::{Execution, RunStatus, TaskStatus, assign, task_view};
use crate::domain::system::{Actor, SystemKind};
use crate::domain::text;
use crate::store;
use crate::wire::answer::*;
use crate::wire::page::{Cursor, json_len};
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
        page: Page<(SeriesId, Version)>,
    },
    History {
        series_id: Uuid,
        page: Page<Version>,
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
        /// Tasks by creation index.
        page: Page<u32>,
    },
    ListRuns {
        status: Option<String>,
        series_id: Option<SeriesId>,
        page: Page<RunId>,
    },
    ListTasks {
        assignee: SystemId,
        status: Option<String>,
        ready: Option<bool>,
        page: Page<TaskId>,
    },
    Trace {
        initiative_id: Uuid,
    },
    Audit {
        series_id: Option<Uuid>,
        run_id: Option<Uuid>,
        /// Events by outbox sequence.
        page: Page<i64>,
    },
    Outcome {
        command_id: Uuid,
    },
    GetPolicy,
}

/// A question about who is who, asked by anyone with access to `sop.query.>`: an agent needs
/// its id before it can ask anything else.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A system by name, or by type when its team has one of that type.
    System { team: String, name: String },
    /// A team by name.
    Team { team: String },
    /// The team of a system, by the system's id.
    TeamOf { system_id: Uuid },
}

impl From<store::teams::TeamRecord> for TeamIdentity {
    fn from(t: store::teams::TeamRecord) -> TeamIdentity {
        TeamIdentity {
            id: t.id,
            name: t.name,
            systems: t
                .systems
                .into_iter()
                .map(|s| Member {
                    id: s.id,
                    name: s.name,
                    kind: s.kind,
                    skills: s.skills,
                    has_key: s.public_key.is_some(),
                })
                .collect(),
        }
    }
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
/// [`MAX_QUERY_SKEW_SECS`] of `now`; others may, unchecked. A query signed by a token's key
/// (`token`: whether that key is an active token of the system) is checked against that key.
fn check_signature(
    who: &Actor,
    signed: Option<&SignedQuery>,
    token: Option<bool>,
    now: DateTime<Utc>,
    signing: Signing,
) -> Result<(), Rejection> {
    let forbidden = |message: String| Rejection::new(ErrorCode::Forbidden, message);
    let Some(key) = super::command::verifying_key(signed.map(|q| &q.signed), token, who, signing)?
    else {
        return Ok(());
    };
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

/// A list's `status` filter: one of the status type's wire names, the ones its schema lists.
fn status_filter<T: serde::de::DeserializeOwned + schemars::JsonSchema>(
    raw: Option<String>,
) -> Result<Option<T>, DomainError> {
    raw.map(|raw| {
        serde_json::from_value(serde_json::Value::String(raw.trim().to_owned())).map_err(|_| {
            let schema = schemars::schema_for!(T).to_value();
            let names: Vec<&str> = schema["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(
                    schema["oneOf"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|b| &b["const"]),
                )
                .filter_map(serde_json::Value::as_str)
                .collect();
            DomainError::invalid("status", format!("one of {}", names.join(", ")))
        })
    })
    .transpose()
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
/// system has a key, or `signing` requires one) checks out at `now`; a list's page holds only
/// as many items as keep the answer within `max_bytes` as JSON.
pub async fn answer(
    db: &DatabaseConnection,
    actor: Uuid,
    query: Query,
    signed: Option<&SignedQuery>,
    signing: Signing,
    now: DateTime<Utc>,
    max_bytes: usize,
) -> Result<Answer, QueryError> {
    let who = asker(db, actor).await?;
    let token = match signed.and_then(|s| s.signed.token_key(who.public_key.as_deref())) {
        Some(key) => Some(store::tokens::active(db, who.id.0, key, now).await?),
        None => None,
    };
    check_signature(&who, signed, token, now, signing)?;
    let asked = Asked {
        db,
        who,
        now,
        max_bytes,
    };
    match query {
        Query::GetPolicy => get_policy(&asked).await,
        Query::GetProcedure { procedure_id } => get_procedure(&asked, procedure_id).await,
        Query::ListProcedures { status, name, page } => {
            list_procedures(&asked, status, name, page).await
        }
        Query::History { series_id, page } => history(&asked, series_id, page).await,
        Query::Diff { from, to } => version_diff(&asked, from, to).await,
        Query::Preview { procedure_id } => preview(&asked, procedure_id).await,
        Query::GetRun { run_id, page } => get_run(&asked, run_id, page).await,
        Query::ListRuns {
            status,
            series_id,
            page,
        } => list_runs(&asked, status, series_id, page).await,
        Query::ListTasks {
            assignee,
            status,
            ready,
            page,
        } => list_tasks(&asked, assignee, status, ready, page).await,
        Query::Trace { initiative_id } => trace(&asked, initiative_id).await,
        Query::Audit {
            series_id,
            run_id,
            page,
        } => audit(&asked, series_id, run_id, page).await,
        Query::Outcome { command_id } => outcome(&asked, command_id).await,
    }
}

/// What every query is answered with: the database, the asking system (its signature
/// checked), the time, and the bytes the answer may take.
struct Asked<'a> {
    db: &'a DatabaseConnection,
    who: Actor,
    now: DateTime<Utc>,
    max_bytes: usize,
}

async fn get_policy(asked: &Asked<'_>) -> Result<Answer, QueryError> {
    let (db, who) = (asked.db, &asked.who);
    let stored = store::policies::in_force(db, who.team_id).await?;
    Ok(Answer::Policy(Box::new(match stored {
        Some(p) => PolicyAnswer {
            version: p.version,
            policy: p.document,
            set_by_system_id: Some(p.set_by),
            set_at: Some(p.set_at),
        },
        None => PolicyAnswer {
            version: 0,
            policy: PolicyDocument::default(),
            set_by_system_id: None,
            set_at: None,
        },
    })))
}

async fn get_procedure(asked: &Asked<'_>, procedure_id: Uuid) -> Result<Answer, QueryError> {
    let (db, who) = (asked.db, &asked.who);
    let p = procedure(db, who, procedure_id).await?;
    let tasks = templates(db, p.id).await?.as_slice().to_vec();
    Ok(Answer::Procedure(Box::new(ProcedureDetail {
        procedure: ProcedureView::of(&p),
        tasks,
    })))
}

async fn list_procedures(
    asked: &Asked<'_>,
    status: Option<String>,
    name: Option<String>,
    page: Page<(SeriesId, Version)>,
) -> Result<Answer, QueryError> {
    let (db, who, max_bytes) = (asked.db, &asked.who, asked.max_bytes);
    let found = versions_page(db, who, status, name, page).await?;
    let cursor = |(series, version): (SeriesId, Version)| {
        Cursor::Procedures {
            series_id: series.0,
            version: version.0,
        }
        .encode()
    };
    // Every cursor of one list has the same length, so any stands for the real one.
    let base = json_len(&ProcedureList {
        procedures: vec![],
        next_cursor: Some(cursor((SeriesId(Uuid::nil()), Version(0)))),
    });
    let (procedures, next) = fit(base, found, page.limit, max_bytes)?;
    Ok(Answer::Procedures(ProcedureList {
        procedures,
        next_cursor: next.map(cursor),
    }))
}

async fn history(
    asked: &Asked<'_>,
    series_id: Uuid,
    page: Page<Version>,
) -> Result<Answer, QueryError> {
    let (db, who, max_bytes) = (asked.db, &asked.who, asked.max_bytes);
    let team = store::procedures::team_of_series(db, SeriesId(series_id))
        .await?
        .ok_or_else(|| Rejection::not_found("procedure series", series_id))?;
    within_team(who, team, "procedure series", series_id)?;
    let found =
        store::procedures::page_of_series(db, SeriesId(series_id), page.after, page.limit + 1)
            .await?
            .iter()
            .map(|p| (p.version, ProcedureView::of(p)))
            .collect();
    let cursor = |version: Version| {
        Cursor::History {
            series_id,
            version: version.0,
        }
        .encode()
    };
    let base = json_len(&History {
        series_id: SeriesId(series_id),
        versions: vec![],
        next_cursor: Some(cursor(Version(0))),
    });
    let (versions, next) = fit(base, found, page.limit, max_bytes)?;
    Ok(Answer::History(History {
        series_id: SeriesId(series_id),
        versions,
        next_cursor: next.map(cursor),
    }))
}

async fn version_diff(asked: &Asked<'_>, from: Uuid, to: Uuid) -> Result<Answer, QueryError> {
    let (db, who) = (asked.db, &asked.who);
    let (a, b) = (
        procedure(db, who, from).await?,
        procedure(db, who, to).await?,
    );
    let (ta, tb) = (templates(db, a.id).await?, templates(db, b.id).await?);
    Ok(Answer::Diff(Box::new(VersionDiff {
        diff: diff((&a.meta, &ta), (&b.meta, &tb)),
        from: ProcedureView::of(&a),
        to: ProcedureView::of(&b),
    })))
}

async fn preview(asked: &Asked<'_>, procedure_id: Uuid) -> Result<Answer, QueryError> {
    let (db, who, now) = (asked.db, &asked.who, asked.now);
    let p = procedure(db, who, procedure_id).await?;
    let ts = templates(db, p.id).await?;
    let team = store::teams::members(db, p.team_id).await?;
    let names: BTreeMap<SystemId, String> = team.iter().map(|s| (s.id, s.name.clone())).collect();
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
    // What the team's policy would say now (a freeze, a run limit), as an execute meets it.
    let policy = match store::policies::in_force(db, p.team_id).await? {
        Some(stored) => Some(TeamPolicy::of(stored)?),
        None => None,
    };
    let judgement = match &policy {
        Some(policy) => {
            let series = p.series_id;
            let activity = async |since| store::runs::activity(db, series, since).await;
            policy
                .judge(series, p.meta.risk_level, now, activity)
                .await?
        }
        None => Judgement::Allowed {
            approval_rule: None,
        },
    };
    let (refusal, approval_rule) = match judgement {
        Judgement::Refused(why) => (Some(why), None),
        Judgement::Allowed { approval_rule } => (None, approval_rule),
    };
    let policy_rule = refusal.as_ref().and_then(|e| e.field().map(str::to_owned));
    let blocked_by = not_approved
        .or(assignment_error)
        .or(refusal.map(|e| e.to_string()));
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
    Ok(Answer::Preview(Box::new(Preview {
        executable: blocked_by.is_none(),
        blocked_by,
        policy_rule,
        approval_rule,
        initiative_name: p.meta.name.clone(),
        initiative_description: p.meta.description.clone(),
        procedure: ProcedureView::of(&p),
        tasks,
    })))
}

async fn get_run(asked: &Asked<'_>, run_id: Uuid, page: Page<u32>) -> Result<Answer, QueryError> {
    let (db, who, max_bytes) = (asked.db, &asked.who, asked.max_bytes);
    let (run, review) = run_and_review(db, who, RunId(run_id), "run", run_id).await?;
    // The run's views count and list every task, so the whole aggregate is loaded
    // anyway; its tasks are in creation order, their index is their stored `seq`.
    let first = page.after.map_or(0, |seq| seq as usize + 1);
    let found = run
        .tasks
        .iter()
        .enumerate()
        .skip(first)
        .take(page.limit as usize + 1)
        .map(|(seq, t)| (seq as u32, run.task_view(t)))
        .collect();
    let cursor = |seq: u32| Cursor::RunTasks { run_id, seq }.encode();
    let mut detail = RunDetail {
        run: run.run_view(),
        initiative: run.initiative_view(),
        tasks: vec![],
        review,
        next_cursor: Some(cursor(0)),
    };
    let (tasks, next) = fit(json_len(&detail), found, page.limit, max_bytes)?;
    detail.tasks = tasks;
    detail.next_cursor = next.map(cursor);
    Ok(Answer::Run(Box::new(detail)))
}

async fn list_runs(
    asked: &Asked<'_>,
    status: Option<String>,
    series_id: Option<SeriesId>,
    page: Page<RunId>,
) -> Result<Answer, QueryError> {
    let (db, who, max_bytes) = (asked.db, &asked.who, asked.max_bytes);
    let status = status_filter::<RunStatus>(status)?;
    let found = store::runs::page(
        db,
        who.team_id,
        status,
        series_id,
        page.after,
        page.limit + 1,
    )
    .await?
    .into_iter()
    .map(|run| (run.provenance.run_id, run))
    .collect();
    let cursor = |run: RunId| Cursor::Runs { run_id: run.0 }.encode();
    let mut list = RunList {
        runs: vec![],
        next_cursor: Some(cursor(RunId(Uuid::nil()))),
    };
    let (runs, next) = fit(json_len(&list), found, page.limit, max_bytes)?;
    list.runs = runs;
    list.next_cursor = next.map(cursor);
    Ok(Answer::Runs(list))
}

async fn list_tasks(
    asked: &Asked<'_>,
    assignee: SystemId,
    status: Option<String>,
    ready: Option<bool>,
    page: Page<TaskId>,
) -> Result<Answer, QueryError> {
    let (db, who, max_bytes) = (asked.db, &asked.who, asked.max_bytes);
    let status = status_filter::<TaskStatus>(status)?;
    // Another team's system is answered like one that does not exist.
    match store::teams::actor(db, assignee.0).await? {
        Some((system, _)) if system.team_id == who.team_id => {}
        _ => return Err(Rejection::not_found("system", assignee.0).into()),
    }
    let filter = store::runs::TaskFilter {
        team: who.team_id,
        assignee,
        status,
        ready,
    };
    let found = store::runs::assigned_tasks(db, &filter, page.after, page.limit + 1)
        .await?
        .into_iter()
        .map(|(provenance, t)| (t.id, task_view(&provenance, &t)))
        .collect();
    let cursor = |task: TaskId| {
        Cursor::Tasks {
            assignee: assignee.0,
            task_id: task.0,
        }
        .encode()
    };
    let mut list = TaskList {
        assignee_system_id: assignee,
        tasks: vec![],
        next_cursor: Some(cursor(TaskId(Uuid::nil()))),
    };
    let (tasks, next) = fit(json_len(&list), found, page.limit, max_bytes)?;
    list.tasks = tasks;
    list.next_cursor = next.map(cursor);
    Ok(Answer::Tasks(list))
}

async fn trace(asked: &Asked<'_>, initiative_id: Uuid) -> Result<Answer, QueryError> {
    let (db, who) = (asked.db, &asked.who);
    let run = store::runs::run_of_initiative(db, initiative_id)
        .await?
        .ok_or_else(|| Rejection::not_found("initiative", initiative_id))?;
    let (run, review) = run_and_review(db, who, run, "initiative", initiative_id).await?;
    let p = procedure(db, who, run.provenance.procedure_id.0).await?;
    Ok(Answer::Trace(Box::new(Trace {
        initiative_id: InitiativeId(initiative_id),
        review_id: review.as_ref().map(|r| r.review_id),
        run: run.run_view(),
        procedure: ProcedureView::of(&p),
    })))
}

async fn audit(
    asked: &Asked<'_>,
    series_id: Option<Uuid>,
    run_id: Option<Uuid>,
    page: Page<i64>,
) -> Result<Answer, QueryError> {
    let (db, who, max_bytes) = (asked.db, &asked.who, asked.max_bytes);
    if series_id.is_none() && run_id.is_none() {
        return Err(Rejection {
            code: ErrorCode::ValidationFailed,
            message: "give series_id or run_id".into(),
            field: Some("series_id".into()),
        }
        .into());
    }
    if let Some(s) = series_id {
        let team = store::procedures::team_of_series(db, SeriesId(s))
            .await?
            .ok_or_else(|| Rejection::not_found("procedure series", s))?;
        within_team(who, team, "procedure series", s)?;
    }
    if let Some(r) = run_id {
        let run = store::runs::load(db, RunId(r))
            .await?
            .ok_or_else(|| Rejection::not_found("run", r))?;
        within_team(who, run.team_id, "run", r)?;
    }
    let rows = store::outbox::trail(db, series_id, run_id, page.after, page.limit + 1).await?;
    let found = rows
        .into_iter()
        .map(|(r, published)| {
            let entry = AuditEntry {
                seq: r.publication.seq,
                event_id: r.publication.message_id,
                kind: r.kind.trim_start_matches("event.").to_owned(),
                actor: store::outbox::actor_of(&r.publication.payload),
                subject: r.publication.subject,
                occurred_at: r.created_at,
                causation_id: Some(r.causation_id),
                published,
            };
            (entry.seq, entry)
        })
        .collect();
    let cursor = |seq: i64| {
        Cursor::Audit {
            series_id,
            run_id,
            seq,
        }
        .encode()
    };
    let base = json_len(&Audit {
        entries: vec![],
        next_cursor: Some(cursor(0)),
    });
    let (entries, next) = fit(base, found, page.limit, max_bytes)?;
    Ok(Answer::Audit(Audit {
        entries,
        next_cursor: next.map(cursor),
    }))
}

async fn outcome(asked: &Asked<'_>, command_id: Uuid) -> Result<Answer, QueryError> {
    let (db, who) = (asked.db, &asked.who);
    let (outcome, sender) = store::inbox::find_with_actor(db, command_id)
        .await?
        .ok_or_else(|| Rejection::not_found("outcome of command", command_id))?;
    // A command's outcome is its team's business; one from an unknown sender is anyone's.
    if let Some((sender, _)) = match sender {
        Some(s) => store::teams::actor(db, s).await?,
        None => None,
    } {
        within_team(who, sender.team_id, "outcome of command", command_id)?;
    }
    Ok(Answer::Outcome(Box::new(outcome)))
}

/// Answers an identity question: no asker, no signature (see [`Identity`]).
pub async fn identify(db: &DatabaseConnection, question: Identity) -> Result<Answer, QueryError> {
    let no_team = |team: &str| Rejection::new(ErrorCode::NotFound, format!("no team {team}"));
    Ok(match question {
        Identity::System { team, name } => {
            let found = store::teams::find_by_name(db, team.trim())
                .await?
                .ok_or_else(|| no_team(&team))?;
            let wanted = name.trim();
            let by_name = found.systems.iter().find(|s| s.name == wanted);
            // A type names a system only when the team has exactly one of that type.
            let by_kind = || {
                let lower = wanted.to_lowercase();
                if !lower.starts_with("system") {
                    return None;
                }
                let kind = SystemKind::parse("name", &lower).ok()?;
                let mut of_kind = found.systems.iter().filter(|s| s.kind == kind);
                match (of_kind.next(), of_kind.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            };
            let Some(s) = by_name.or_else(by_kind) else {
                let names: Vec<&str> = found.systems.iter().map(|s| s.name.as_str()).collect();
                return Err(Rejection::new(
                    ErrorCode::NotFound,
                    format!(
                        "team {} has no system `{wanted}`; its systems: {}",
                        found.name,
                        names.join(", ")
                    ),
                )
                .into());
            };
            Answer::System(SystemIdentity {
                id: s.id,
                name: s.name.clone(),
                kind: s.kind,
                team_id: found.id,
                team: found.name.clone(),
                skills: s.skills.clone(),
                has_key: s.public_key.is_some(),
            })
        }
        Identity::Team { team } => Answer::Team(
            store::teams::find_by_name(db, team.trim())
                .await?
                .ok_or_else(|| no_team(&team))?
                .into(),
        ),
        Identity::TeamOf { system_id } => Answer::Team(
            store::teams::team_of_system(db, system_id)
                .await?
                .ok_or_else(|| Rejection::not_found("system", system_id))?
                .into(),
        ),
    })
}

/// A run and its post-run review, if the asking system's team owns the run.
async fn run_and_review(
    db: &DatabaseConnection,
    who: &Actor,
    run: RunId,
    what: &str,
    id: Uuid,
) -> Result<(Execution, Option<ReviewView>), QueryError> {
    let run = store::runs::load(db, run)
        .await?
        .ok_or_else(|| Rejection::not_found(what, id))?;
    within_team(who, run.team_id, what, id)?;
    let review = store::reviews::of_run(db, run.provenance.run_id.0)
        .await?
        .map(|row| store::reviews::view_of(row, run.provenance.series_id, run.status.as_str()))
        .transpose()?;
    Ok((run, review))
}

/// The team's versions after `page.after`, of `status` and with `name` in theirs when given:
/// at most one more than the page holds (that one says a next page exists).
async fn versions_page(
    db: &DatabaseConnection,
    who: &Actor,
    status: Option<String>,
    name: Option<String>,
    page: Page<(SeriesId, Version)>,
) -> Result<Vec<((SeriesId, Version), ProcedureView)>, QueryError> {
    let status = status_filter::<ProcedureStatus>(status)?;
    let name = name.map(|n| n.to_lowercase());
    let wanted = page.limit + 1;
    let mut found = Vec::new();
    let mut after = page.after;
    // The name matches case-insensitively in Unicode, which SQL spells differently on each
    // database: it is filtered here, over batches read in key order.
    loop {
        let batch = store::procedures::page_of_team(db, who.team_id, status, after, wanted).await?;
        let exhausted = (batch.len() as u64) < wanted;
        after = batch.last().map(|p| (p.series_id, p.version)).or(after);
        found.extend(
            batch
                .iter()
                .filter(|p| {
                    name.as_deref()
                        .is_none_or(|n| p.meta.name.to_lowercase().contains(n))
                })
                .map(|p| ((p.series_id, p.version), ProcedureView::of(p))),
        );
        if exhausted || found.len() as u64 >= wanted {
            return Ok(found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_filter_takes_a_wire_name_and_names_them_all_otherwise() {
        assert_eq!(
            status_filter::<ProcedureStatus>(Some(" approved ".into())).unwrap(),
            Some(ProcedureStatus::Approved)
        );
        assert_eq!(status_filter::<RunStatus>(None).unwrap(), None);
        let refused = |e: DomainError| (e.field().map(str::to_owned), e.to_string());
        let (field, message) =
            refused(status_filter::<ProcedureStatus>(Some("drafts".into())).unwrap_err());
        assert_eq!(field.as_deref(), Some("status"));
        assert!(
            message.contains("one of draft, approved, retired"),
            "{message}"
        );
        let (_, message) = refused(status_filter::<RunStatus>(Some("done".into())).unwrap_err());
        for name in [
            "awaiting_approval",
            "started",
            "completed",
            "failed",
            "canceled",
        ] {
            assert!(message.contains(name), "{message}");
        }
        let (_, message) = refused(status_filter::<TaskStatus>(Some("x".into())).unwrap_err());
        assert!(
            message.contains(
                "one of pending, in_progress, blocked, completed, approved, rejected, canceled"
            ),
            "{message}"
        );
    }
}

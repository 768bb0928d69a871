//! `sop run`, `sop initiative` and `sop audit`: what an execution made, from the run to its
//! review, and back to the procedure version.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use uuid::Uuid;

use super::ctx::{Ctx, Exit};
use super::render::{Columns, Names, fields, opt, opt_time, time};
use super::send::{InitiativeVerbs, RunVerbs, TaskVerbs};
use crate::application::pages::AUDIT_PAGE;
use crate::domain::event::{RunView, TaskView};
use crate::domain::run::Verdict;
use crate::wire::answer::{Audit, AuditEntry, RunDetail, RunList, TaskList, Trace};
use crate::wire::query::QueryName;

#[derive(Subcommand)]
pub enum RunCmd {
    /// Cancel: the commands.
    #[command(flatten)]
    Send(RunVerbs),
    /// A run with its initiative, tasks and review.
    Show {
        /// The run's id.
        run_id: Uuid,
    },
    /// The team's runs: by status (`awaiting_approval`: those System5 is to decide on) and
    /// series.
    List {
        /// Only runs in this status.
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this series.
        #[arg(long)]
        series: Option<Uuid>,
        /// At most this many (fetched page by page).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub enum TaskCmd {
    /// Start, complete, block, …: the commands.
    #[command(flatten)]
    Send(TaskVerbs),
    /// Tasks assigned to a system (the acting one unless `--assignee`): its work list.
    List {
        /// Whose tasks: a system id (default: the acting system).
        #[arg(long)]
        assignee: Option<Uuid>,
        /// Only tasks in this status.
        #[arg(long)]
        status: Option<String>,
        /// Only tasks that can be started now.
        #[arg(long)]
        ready: bool,
        /// At most this many (fetched page by page).
        #[arg(long, default_value_t = 500)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub enum InitiativeCmd {
    /// Review: the commands.
    #[command(flatten)]
    Send(InitiativeVerbs),
    /// From an initiative back to its procedure version and run.
    Trace {
        /// The initiative's id.
        initiative_id: Uuid,
    },
}

/// The audit trail of a series or a run.
#[derive(Args)]
pub struct AuditArgs {
    /// A series' trail: every version's events and its runs'.
    #[arg(long, required_unless_present = "run")]
    series: Option<Uuid>,
    /// One run's trail.
    #[arg(long)]
    run: Option<Uuid>,
    /// At most this many entries (fetched page by page).
    #[arg(long, default_value_t = 1000)]
    limit: u64,
}

pub async fn run(ctx: &Ctx, command: RunCmd) -> Result<ExitCode, Exit> {
    match command {
        RunCmd::Send(RunVerbs(v)) => ctx.send(v.name, v.args).await,
        RunCmd::List {
            status,
            series,
            limit,
        } => {
            let list: RunList = ctx
                .query_pages(
                    QueryName::ListRuns,
                    json!({ "status": status, "series_id": series }),
                    Some(limit),
                )
                .await?;
            let names = ctx.names().await;
            ctx.print(&list, |l| {
                Columns::new()
                    .col("run_id", |r: &RunView| r.provenance.run_id.to_string())
                    .col("series_id", |r| r.provenance.series_id.to_string())
                    .col("version", |r| r.provenance.procedure_version.to_string())
                    .col("status", |r| r.status.to_string())
                    .col("started_by", |r| names.of(&r.started_by_system_id))
                    .col("started_at", |r| time(&r.started_at))
                    .col("approval_rule", |r| {
                        opt(&r.approval.as_ref().map(|a| &a.rule))
                    })
                    .or("no runs")
                    .render(&l.runs)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        RunCmd::Show { run_id } => {
            let detail: RunDetail = ctx
                .query_pages(QueryName::GetRun, json!({ "run_id": run_id }), None)
                .await?;
            let names = ctx.names().await;
            ctx.print(&detail, |d| show(d, names))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn task(ctx: &Ctx, command: TaskCmd) -> Result<ExitCode, Exit> {
    match command {
        TaskCmd::Send(TaskVerbs(v)) => ctx.send(v.name, v.args).await,
        TaskCmd::List {
            assignee,
            status,
            ready,
            limit,
        } => {
            let mut request = json!({ "assignee_system_id": assignee, "status": status });
            if ready {
                request["ready"] = json!(true);
            }
            let list: TaskList = ctx
                .query_pages(QueryName::ListTasks, request, Some(limit))
                .await?;
            let names = ctx.names().await;
            ctx.print(&list, |l| {
                Columns::new()
                    .col("task_id", |t: &TaskView| t.task_id.to_string())
                    .col("run_id", |t| t.provenance.run_id.to_string())
                    .col("position", |t| t.position.to_string())
                    .col("name", |t| t.name.clone())
                    .col("status", |t| t.status.to_string())
                    .col("ready", |t| t.ready.to_string())
                    .col("assignee", |t| names.of(&t.assignee_system_id))
                    .or("no tasks")
                    .render(&l.tasks)
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn initiative(ctx: &Ctx, command: InitiativeCmd) -> Result<ExitCode, Exit> {
    match command {
        InitiativeCmd::Send(InitiativeVerbs(v)) => ctx.send(v.name, v.args).await,
        InitiativeCmd::Trace { initiative_id } => {
            let trace: Trace = ctx
                .query(QueryName::Trace, json!({ "initiative_id": initiative_id }))
                .await?;
            ctx.print(&trace, |t| {
                format!(
                    "initiative {} ← run {} ({}) ← {} {} ({})\nreview: {}",
                    t.initiative_id,
                    t.run.provenance.run_id,
                    t.run.status,
                    t.procedure.name,
                    t.procedure.version,
                    t.procedure.procedure_id,
                    opt(&t.review_id),
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(clap::Subcommand)]
pub enum AuditCmd {
    /// Check a team's event chain in the database and in its events stream, and the two
    /// against each other: names the first event changed, deleted, inserted or reordered.
    /// Exit code 2 when something is.
    Verify {
        /// The team's name.
        #[arg(long)]
        team: String,
        /// Archives (`sop archive create`) holding the team's older events, oldest first:
        /// checked ahead of what the database still holds.
        #[arg(long = "archive")]
        archives: Vec<std::path::PathBuf>,
        #[command(flatten)]
        worker: crate::config::WorkerSettings,
    },
}

/// `sop audit verify --team T`.
pub async fn verify(
    ctx: &Ctx,
    team: &str,
    archives: &[std::path::PathBuf],
) -> Result<ExitCode, Exit> {
    let subjects = crate::wire::subjects::Subjects::new(&ctx.settings.connection.subject_prefix);
    let mut archived = Vec::new();
    for file in archives {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Exit(1, format!("reading {}: {e}", file.display())))?;
        let name = file.display().to_string();
        archived.extend(
            crate::bus::audit::archived_events(&text, &subjects, team, &name)
                .map_err(|e| Exit(1, e))?,
        );
    }
    let db = crate::app::connect_db(&ctx.settings).await?;
    let nats = crate::app::connect_nats(&ctx.settings).await?;
    let js = async_nats::jetstream::new(nats);
    let verified = crate::bus::audit::verify(&db, &js, &subjects, team, archived)
        .await
        .map_err(|e| match e {
            crate::bus::audit::VerifyError::NoTeam(_) => {
                Exit(super::ctx::EXIT_NOT_FOUND, e.to_string())
            }
            e => Exit(1, e.to_string()),
        })?;
    ctx.print(&verified, super::render::verification)?;
    Ok(if verified.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::ctx::EXIT_REJECTED)
    })
}

pub async fn audit(ctx: &Ctx, args: AuditArgs) -> Result<ExitCode, Exit> {
    // `limit` bounds what is shown; pages never ask for more than that either.
    let page = args.limit.min(AUDIT_PAGE.max);
    let trail: Audit = ctx
        .query_pages(
            QueryName::Audit,
            json!({ "series_id": args.series, "run_id": args.run, "limit": page }),
            Some(usize::try_from(args.limit).unwrap_or(usize::MAX)),
        )
        .await?;
    let names = ctx.names().await;
    ctx.print(&trail, |a| {
        Columns::new()
            .col("seq", |e: &AuditEntry| e.seq.to_string())
            .col("occurred_at", |e| time(&e.occurred_at))
            .col("type", |e| e.kind.clone())
            .col("actor", |e| names.opt(&e.actor))
            .col("causation", |e| opt(&e.causation_id))
            .render(&a.entries)
    })?;
    Ok(ExitCode::SUCCESS)
}

fn show(d: &RunDetail, names: &Names) -> String {
    let r = &d.run;
    let run = fields(&[
        ("run_id", r.provenance.run_id.to_string()),
        ("status", r.status.to_string()),
        ("procedure_id", r.provenance.procedure_id.to_string()),
        (
            "procedure_version",
            r.provenance.procedure_version.to_string(),
        ),
        ("initiative_id", r.provenance.initiative_id.to_string()),
        ("started_by", names.of(&r.started_by_system_id)),
        ("started_at", time(&r.started_at)),
        ("completed_at", opt_time(&r.completed_at)),
        ("reason", opt(&r.reason)),
        ("approval_rule", opt(&r.approval.as_ref().map(|a| &a.rule))),
        (
            "approval",
            opt(&r.approval.as_ref().and_then(|a| {
                let by = names.opt(&a.decided_by_system_id);
                a.verdict.map(|v| match v {
                    Verdict::Approve => format!("approved by {by}"),
                    Verdict::Reject => format!("rejected by {by}"),
                })
            })),
        ),
        (
            "approval_note",
            opt(&r.approval.as_ref().and_then(|a| a.note.as_ref())),
        ),
    ]);
    let tasks = Columns::new()
        .col("position", |t: &TaskView| t.position.to_string())
        .col("task_id", |t| t.task_id.to_string())
        .col("name", |t| t.name.clone())
        .col("status", |t| t.status.to_string())
        .col("ready", |t| t.ready.to_string())
        .col("assignee", |t| names.of(&t.assignee_system_id))
        .render(&d.tasks);
    let review = match &d.review {
        None => "no post-run review yet".to_owned(),
        Some(r) => format!("review: {} — {}", r.outcome, r.summary),
    };
    format!("{run}\n\n{tasks}\n\n{review}")
}

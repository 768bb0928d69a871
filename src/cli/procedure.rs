//! `sop procedure`: draft, approve, execute and the rest of the lifecycle; show, list, history,
//! diff, preview and graph.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use super::ctx::{Ctx, EXIT_NOT_FOUND, Exit};
use super::render::{self, Columns, GraphFormat, Names, fields, list, opt, opt_time};
use super::send::{ProcedureVerbs, SendArgs};
use crate::domain::event::ProcedureView;
use crate::domain::system::SystemKind;
use crate::wire::answer::{
    History, Preview, PreviewTask, ProcedureDetail, ProcedureList, VersionDiff,
};
use crate::wire::command::CommandName as N;
use crate::wire::query::QueryName;

#[derive(Subcommand)]
pub enum ProcedureCmd {
    /// Draft, revise, edit, discard, approve, reject, retire, execute: the commands.
    #[command(flatten)]
    Send(ProcedureVerbs),
    /// A version with its task templates.
    Show {
        /// The version's id.
        procedure_id: Uuid,
    },
    /// The team's procedures.
    List {
        /// Only versions in this status: `draft`, `approved` or `retired`.
        #[arg(long)]
        status: Option<String>,
        /// Only procedures whose name contains this (in any case).
        #[arg(long)]
        name: Option<String>,
    },
    /// Every version of a series, with who did what and when.
    History {
        /// The series' id (its first version's id).
        series_id: Uuid,
    },
    /// What changed between two versions.
    Diff {
        /// The older version's id.
        from: Uuid,
        /// The newer version's id.
        to: Uuid,
    },
    /// What executing a version would create, and who would work each task.
    Preview {
        /// The version's id.
        procedure_id: Uuid,
    },
    /// The task dependency graph.
    Graph {
        /// The version's id.
        procedure_id: Uuid,
        /// Mermaid (for Markdown) or DOT (for Graphviz).
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
}

pub async fn run(ctx: &Ctx, command: ProcedureCmd) -> Result<ExitCode, Exit> {
    match command {
        ProcedureCmd::Send(ProcedureVerbs(v)) if v.name == N::ExecuteProcedure => {
            return execute(ctx, v.args).await;
        }
        ProcedureCmd::Send(ProcedureVerbs(v)) => return ctx.send(v.name, v.args).await,
        ProcedureCmd::Show { procedure_id } => {
            let detail: ProcedureDetail = ctx
                .query(
                    QueryName::GetProcedure,
                    json!({ "procedure_id": procedure_id }),
                )
                .await?;
            let names = ctx.names().await;
            ctx.print(&detail, |d| show(d, names))?;
        }
        ProcedureCmd::List { status, name } => {
            let found: ProcedureList = ctx
                .query_pages(
                    QueryName::ListProcedures,
                    json!({ "status": status, "name": name }),
                    None,
                )
                .await?;
            ctx.print(&found, |l| {
                Columns::new()
                    .col("procedure_id", |p: &ProcedureView| {
                        p.procedure_id.to_string()
                    })
                    .col("series_id", |p| p.series_id.to_string())
                    .col("version", |p| p.version.to_string())
                    .col("status", |p| p.status.to_string())
                    .col("risk", |p| p.risk_level.as_str().to_owned())
                    .col("impact", |p| p.impact.as_str().to_owned())
                    .col("name", |p| p.name.clone())
                    .or("no procedures")
                    .render(&l.procedures)
            })?;
        }
        ProcedureCmd::History { series_id } => {
            let history: History = ctx
                .query_pages(QueryName::History, json!({ "series_id": series_id }), None)
                .await?;
            let names = ctx.names().await;
            ctx.print(&history, |h| {
                Columns::new()
                    .col("version", |p: &ProcedureView| p.version.to_string())
                    .col("status", |p| p.status.to_string())
                    .col("procedure_id", |p| p.procedure_id.to_string())
                    .col("digest", |p| short_digest(&p.digest))
                    .col("drafted_by", |p| names.of(&p.created_by_system_id))
                    .col("approved_by", |p| names.opt(&p.approved_by_system_id))
                    .col("approved_at", |p| opt_time(&p.approved_at))
                    .col("retired_at", |p| opt_time(&p.retired_at))
                    .col("retired_reason", |p| opt(&p.retired_reason))
                    .render(&h.versions)
            })?;
        }
        ProcedureCmd::Diff { from, to } => {
            let diff: VersionDiff = ctx
                .query(QueryName::Diff, json!({ "from": from, "to": to }))
                .await?;
            ctx.print(&diff, changes)?;
        }
        ProcedureCmd::Preview { procedure_id } => {
            let preview: Preview = ctx
                .query(QueryName::Preview, json!({ "procedure_id": procedure_id }))
                .await?;
            ctx.print(&preview, |p| {
                let head = fields(&[
                    ("initiative_name", p.initiative_name.clone()),
                    ("digest", p.procedure.digest.clone()),
                    ("executable", p.executable.to_string()),
                    ("blocked_by", opt(&p.blocked_by)),
                ]);
                let tasks = Columns::new()
                    .col("position", |t: &PreviewTask| t.position.to_string())
                    .col("name", |t| t.name.clone())
                    .col("depends_on", |t| list(&t.depends_on))
                    .col("ready_at_start", |t| t.ready_at_start.to_string())
                    .col("assignee_type", |t| t.assignee_type.as_str().to_owned())
                    .col("assignee", |t| opt(&t.assignee_name))
                    .render(&p.tasks);
                format!("{head}\n\n{tasks}")
            })?;
        }
        ProcedureCmd::Graph {
            procedure_id,
            format,
        } => {
            let d: ProcedureDetail = ctx
                .query(
                    QueryName::GetProcedure,
                    json!({ "procedure_id": procedure_id }),
                )
                .await?;
            let p = &d.procedure;
            println!("{}", render::graph(&p.name, p.version.0, &d.tasks, format));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `procedure execute` by a series id or by any of its versions' ids: a positional id that
/// `procedure.get` knows is a version and stands for its series. The worker keeps taking
/// only series ids, so `series_id` means one thing on the wire.
async fn execute(ctx: &Ctx, mut args: SendArgs) -> Result<ExitCode, Exit> {
    let given = args
        .args
        .first()
        .filter(|a| !a.contains('='))
        .and_then(|a| Uuid::parse_str(a.trim()).ok());
    let mut a_version = false;
    if let Some(id) = given {
        match ctx
            .query::<ProcedureDetail>(QueryName::GetProcedure, json!({ "procedure_id": id }))
            .await
        {
            Ok(d) => {
                args.args[0] = d.procedure.series_id.to_string();
                a_version = true;
            }
            Err(Exit(EXIT_NOT_FOUND, _)) => {}
            Err(e) => return Err(e),
        }
    }
    let Some(outcome) = ctx.outcome_of(N::ExecuteProcedure, &args).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    // People get what the id should have been; scripts (`--json`) get the outcome.
    if let (Some(id), false, Some("not_found"), false) =
        (given, a_version, outcome.error_code(), ctx.json)
    {
        return Err(Exit(
            EXIT_NOT_FOUND,
            format!(
                "{id} is neither a procedure series nor a version of one in your team: \
                 give a series_id or any version's procedure_id (`sop procedure list` \
                 shows both)"
            ),
        ));
    }
    ctx.print_outcome(&outcome)
}

/// Enough of a digest to tell versions apart in a table (`show` prints it whole).
fn short_digest(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

fn show(d: &ProcedureDetail, names: &Names) -> String {
    let p = &d.procedure;
    let head = fields(&[
        ("procedure_id", p.procedure_id.to_string()),
        ("series_id", p.series_id.to_string()),
        ("version", p.version.to_string()),
        ("status", p.status.to_string()),
        ("digest", p.digest.clone()),
        ("name", p.name.clone()),
        ("description", p.description.clone()),
        ("risk_level", p.risk_level.as_str().to_owned()),
        ("impact", p.impact.as_str().to_owned()),
        ("rollback_plan", p.rollback_plan.clone()),
        ("drafted_by", names.of(&p.created_by_system_id)),
        ("approved_by", names.opt(&p.approved_by_system_id)),
        ("approved_at", opt_time(&p.approved_at)),
        ("retired_reason", opt(&p.retired_reason)),
        ("rejected_reason", opt(&p.rejected_reason)),
    ]);
    let tasks = Columns::new()
        .col("position", |t: &crate::domain::template::TaskTemplate| {
            t.position.to_string()
        })
        .col("name", |t| t.name.clone())
        .col("depends_on", |t| list(&t.depends_on))
        // A template without a type is worked by a System1, as `procedure preview` says.
        .col("assignee_type", |t| {
            t.default_assignee_type
                .unwrap_or(SystemKind::System1)
                .as_str()
                .to_owned()
        })
        .col("skills", |t| list(&t.required_skills))
        .render(&d.tasks);
    format!("{head}\n\n{tasks}")
}

fn changes(d: &VersionDiff) -> String {
    let mut out = vec![format!(
        "{} {} → {}",
        d.to.name, d.from.version, d.to.version
    )];
    let diff = &d.diff;
    for f in &diff.fields {
        out.push(format!("~ {}: {} → {}", f.field, f.from, f.to));
    }
    for t in &diff.tasks_added {
        out.push(format!("+ task {}: {}", t.position, t.name));
    }
    for t in &diff.tasks_removed {
        out.push(format!("- task {}: {}", t.position, t.name));
    }
    for t in &diff.tasks_changed {
        for c in &t.changes {
            out.push(format!(
                "~ task {} {}: {} → {}",
                t.position, c.field, c.from, c.to
            ));
        }
    }
    if out.len() == 1 {
        out.push("(no changes)".into());
    }
    out.join("\n")
}

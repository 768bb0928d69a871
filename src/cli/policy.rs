//! `sop policy`: the team's execution policy, set whole by System5 and shown to anyone.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::ctx::{Ctx, Exit};
use super::render::{Columns, fields, list, opt, opt_time};
use super::send::PolicyVerbs;
use crate::domain::policy::{FreezeDocument, RuleDocument};
use crate::wire::answer::PolicyAnswer;
use crate::wire::query::QueryName;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Set: the command (`--file policy.yaml`, System5).
    #[command(flatten)]
    Send(PolicyVerbs),
    /// The team's policy in force, with its version.
    Show,
}

pub async fn run(ctx: &Ctx, command: PolicyCmd) -> Result<ExitCode, Exit> {
    match command {
        PolicyCmd::Send(PolicyVerbs(v)) => ctx.send(v.name, v.args).await,
        PolicyCmd::Show => {
            let answer: PolicyAnswer = ctx.query(QueryName::GetPolicy, json!({})).await?;
            let names = ctx.names().await;
            ctx.print(&answer, |a| show(a, names))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(a: &PolicyAnswer, names: &super::render::Names) -> String {
    if a.version == 0 {
        return "no policy: every approved procedure may be executed at any time".into();
    }
    let head = fields(&[
        ("version", a.version.to_string()),
        ("set_by", names.opt(&a.set_by_system_id)),
        ("set_at", opt_time(&a.set_at)),
    ]);
    let rules = Columns::new()
        .col("rule", |r: &RuleDocument| opt(&r.name))
        .col("min_risk", |r| r.min_risk.clone().unwrap_or("low".into()))
        .col("series", |r| r.series.as_ref().map_or("all".into(), list))
        .col("max_open_runs", |r| opt(&r.max_open_runs))
        .col("max_runs", |r| {
            opt(&r
                .max_runs
                .as_ref()
                .map(|m| format!("{} per {}", m.count, m.per)))
        })
        .col("min_interval", |r| opt(&r.min_interval))
        .col("run_approval", |r| {
            if r.run_approval { "yes" } else { "-" }.into()
        })
        .col("freeze", |r| {
            r.freeze.iter().map(window).collect::<Vec<_>>().join("; ")
        })
        .or("no rules")
        .render(&a.policy.rules);
    format!("{head}\n{rules}")
}

fn window(f: &FreezeDocument) -> String {
    match (&f.from, &f.to, &f.weekly) {
        (_, _, Some(w)) => format!("{} {}–{} {}", w.days.join(","), w.from, w.to, w.time_zone),
        (from, to, None) => format!("{} to {}", opt(from), opt(to)),
    }
}

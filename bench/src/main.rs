//! `sop-bench`: the whole path (client → JetStream → worker → database → events) measured on
//! this machine, with baselines measured in the same run so the ratios hold on a noisy
//! machine: (a) the same rows written by plain transactions at the same concurrency (the
//! database's own ceiling for this work), (b) a bare JetStream publish-and-ack round trip,
//! (c) the disk's own durable writes at the paced run's rate (what it gives a commit then).
//!
//! The worker under test is a child process (`sop worker`, the binary built beside this one),
//! so its peak resident memory can be read from `/proc`. Each database gets a fresh one: a
//! temporary SQLite file, or a new Postgres database created from an admin URL and dropped
//! afterwards.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod baselines;
mod figures;
mod history;
mod probe;
mod subject;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde_json::json;
use vsm_sop::config::{ConnectionSettings, Settings, WorkerSettings};

use crate::baselines::*;
use crate::figures::*;
use crate::subject::*;
use crate::workloads::*;

#[derive(Parser)]
#[command(
    name = "sop-bench",
    about = "Measure vsm-sop's whole path against plain SQL and bare JetStream baselines"
)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionSettings,
    #[command(flatten)]
    args: BenchArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let settings = match Settings::resolve(cli.connection, Some(cli.args.worker.clone()), &matches)
    {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match run(&settings, &cli.args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Databases to run on: `sqlite`, `postgres`, or both (comma separated).
    #[arg(long, default_value = "sqlite,postgres")]
    pub databases: String,
    /// Postgres URL of a database from which fresh benchmark databases are created.
    #[arg(
        long,
        env = "SOP_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_admin_url: String,
    /// Executes of the 10-task template in the execute-heavy workload (enough for several
    /// seconds at full speed: a sustained rate, not a burst).
    #[arg(long, default_value_t = 10_000)]
    pub executes: usize,
    /// Full lifecycles (draft → approve → execute → every task worked and reviewed).
    #[arg(long, default_value_t = 100)]
    pub lifecycles: usize,
    /// Executes of each large template (200 and 1,000 tasks), one at a time.
    #[arg(long, default_value_t = 10)]
    pub large: usize,
    /// Commands in flight at once (the client keeps this many outstanding). The worker runs
    /// with its own settings (`--concurrency`, `--batch-max`, or their environment variables).
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// After the other workloads, keep executing at half of the measured peak for this many
    /// seconds, sampling the worker's resident memory (0: no soak).
    #[arg(long, default_value_t = 0)]
    pub soak_secs: u64,
    /// Instead of the other workloads, grow one team's history to this many runs, measuring
    /// at 1,000, 10,000, … runs and at the end (0: no history workload).
    #[arg(long, default_value_t = 0)]
    pub history: usize,
    /// Leave each benchmark database in place afterwards (its URL or path is printed), to
    /// inspect its plans and sizes.
    #[arg(long)]
    pub keep_database: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// The worker's own settings, passed to the child (`--concurrency`, `--batch-max`, …).
    #[command(flatten)]
    pub worker: WorkerSettings,
}

impl BenchArgs {
    /// The databases to run on, as `--databases` names them.
    fn databases(&self) -> impl Iterator<Item = &str> {
        self.databases
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
    }
}

pub(crate) fn table(rows: &[Figures]) -> String {
    let mut out = vec![format!(
        "{:<46} {:<9} {:>6} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "workload", "database", "ops", "ops/s", "p50 ms", "p95 ms", "p99 ms", "events/s", "RSS MiB"
    )];
    for f in rows {
        let opt = |v: Option<f64>, w: usize| {
            v.map(|v| format!("{v:>w$.0}"))
                .unwrap_or_else(|| format!("{:>w$}", "-"))
        };
        out.push(format!(
            "{:<46} {:<9} {:>6} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {} {}",
            f.workload,
            f.database,
            f.operations,
            f.per_second,
            f.p50_ms,
            f.p95_ms,
            f.p99_ms,
            opt(f.events_per_second, 9),
            opt(f.worker_peak_rss_mib, 8)
        ));
    }
    out.join("\n")
}

/// The history workload on each database: its checkpoints, and each figure at the first and
/// the last side by side.
async fn run_history(settings: &Settings, args: &BenchArgs) -> anyhow::Result<()> {
    let mut all = Vec::new();
    let mut comparisons = Vec::new();
    for database in args.databases() {
        let subject = Subject::start(database, settings, args).await?;
        let result = history::history(&subject, args, database).await;
        subject.stop().await;
        let checkpoints = result?;
        comparisons.push(history::comparison(&checkpoints));
        all.extend(checkpoints);
    }
    println!("{}", comparisons.join("\n\n"));
    if let Some(path) = &args.json_out {
        let report = json!({ "args": { "history": args.history, "in_flight": args.in_flight },
            "history": all });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

pub async fn run(settings: &Settings, args: &BenchArgs) -> anyhow::Result<()> {
    if args.history > 0 {
        return run_history(settings, args).await;
    }
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let mut soaks = Vec::new();
    let nats = vsm_sop::app::connect_nats(settings).await?;
    let raw = jetstream_baseline(&nats, args).await?;
    eprintln!("{}", table(std::slice::from_ref(&raw)));
    for database in args.databases() {
        let subject = Subject::start(database, settings, args).await?;
        let result: anyhow::Result<()> = async {
            let heavy = execute_heavy(&subject, args, database).await?;
            let baseline = sql_baseline(&subject, args, database).await?;
            let paced = half_peak(&subject, args, database, heavy.per_second).await?;
            // As many durable writes as the paced run sent commands, at its rate.
            let disk =
                durable_write_baseline(database, heavy.per_second / 2.0, paced.operations).await?;
            ratios.push(json!({
                "database": database,
                "throughput_vs_plain_sql": heavy.per_second / baseline.per_second,
                "throughput_vs_jetstream": heavy.per_second / raw.per_second,
                "p99_ms_at_half_peak": paced.p99_ms,
                "durable_write_p99_ms_at_half_peak": disk.p99_ms,
            }));
            let peak = heavy.per_second;
            let mut more = vec![heavy, baseline, paced, disk];
            more.push(lifecycle(&subject, args, database).await?);
            more.extend(large(&subject, args, database, 200).await?);
            more.extend(large(&subject, args, database, 1000).await?);
            if args.soak_secs > 0 {
                let (figures, samples) = soak(&subject, args, database, peak).await?;
                let mib: Vec<f64> = samples.iter().map(|(_, m)| *m).collect();
                eprintln!(
                    "{database} soak: resident memory every 10 s (MiB): {}",
                    mib.iter()
                        .map(|m| format!("{m:.0}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                soaks.push(json!({ "database": database, "rss_mib_every_10s": mib,
                    "first_mib": mib.first(), "last_mib": mib.last(),
                    "max_mib": mib.iter().copied().fold(f64::NAN, f64::max) }));
                more.push(figures);
            }
            eprintln!("{}", table(&more));
            rows.extend(more);
            Ok(())
        }
        .await;
        subject.stop().await;
        result?;
    }
    rows.insert(0, raw);
    println!("{}", table(&rows));
    for r in &ratios {
        println!(
            "{}: execute throughput = {:.0}% of plain SQL transactions, {:.0}% of bare JetStream publish+ack; p99 at half of peak {:.1} ms (the disk's own durable writes at that rate: {:.1} ms)",
            r["database"].as_str().unwrap_or(""),
            r["throughput_vs_plain_sql"].as_f64().unwrap_or(0.0) * 100.0,
            r["throughput_vs_jetstream"].as_f64().unwrap_or(0.0) * 100.0,
            r["p99_ms_at_half_peak"].as_f64().unwrap_or(0.0),
            r["durable_write_p99_ms_at_half_peak"]
                .as_f64()
                .unwrap_or(0.0)
        );
    }
    let report = json!({ "args": {
            "executes": args.executes, "lifecycles": args.lifecycles, "large": args.large, "in_flight": args.in_flight, "worker_concurrency": settings.worker.concurrency, "batch_max": settings.worker.batch_max },
        "results": rows, "ratios": ratios, "soaks": soaks });
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

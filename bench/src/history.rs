//! The history workload: one team's history grown run by run to `--history` runs (a fifth of
//! them in a series a counting policy rule names), the service measured at 1,000, 10,000, …
//! runs and at the end: executes at `--in-flight` (32) and one at a time, the policy series'
//! execute, every query's p50/p99, the worker's memory and the bytes each run takes.
//!
//! Runs are ended (canceled) as they are made, so the team's open work, and the System1
//! backlog `task.list` reads, stays the same size while its history grows: what a year looks
//! like to a team whose work is done.

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use vsm_sop::wire::command::CommandName;
use vsm_sop::wire::query::QueryName;

use crate::figures::*;
use crate::subject::*;
use crate::workloads::concurrently;

/// Commands in flight while the history grows.
const FILL_IN_FLIGHT: usize = 32;
/// Runs made and ended per step of the fill.
const STEP: usize = 1_000;
/// Of every `STEP`, the runs of the series the counting rule names.
const POLICY_SHARE: usize = 200;
/// Runs left open throughout: the team's current work, a System1's backlog.
const OPEN: usize = 50;
/// Executes at `--in-flight` at each checkpoint.
const BURST: usize = 1_000;
/// Executes one at a time at each checkpoint (of each series), as many as `ASKS`.
const SINGLE: usize = 1_000;
/// Asks of each query at each checkpoint: enough that a p99 is the tenth-worst ask, not the
/// second-worst, which one stall of the machine decides.
const ASKS: usize = 1_000;
/// Times the burst and the queries are measured at each checkpoint, each figure told as the
/// median of its values: a p99 of 1,000 on a shared machine moves by half from one measurement
/// to the next. (The executes one at a time are measured once: each adds 2,000 runs.)
const MEASUREMENTS: usize = 3;

/// The figures at one size of the history.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub database: String,
    /// Runs in the team's history when the measurement began.
    pub runs: usize,
    pub figures: Vec<Figures>,
    /// The database's size over what it held before the first run, per run.
    pub bytes_per_run: f64,
    /// The largest tables with their indexes, bytes per run (where the bytes go).
    pub tables: Vec<(String, f64)>,
    /// The worker's resident memory after the measurement, MiB.
    pub worker_rss_mib: Option<f64>,
}

/// The sizes at which the history is measured: each power of ten from 1,000 up to `total`,
/// and `total` itself.
pub fn checkpoints(total: usize) -> Vec<usize> {
    let mut at: Vec<usize> = std::iter::successors(Some(1_000usize), |n| n.checked_mul(10))
        .take_while(|n| *n < total)
        .collect();
    at.push(total);
    at
}

struct Team<'a> {
    s: &'a Subject,
    plain: Uuid,
    policy: Uuid,
    runs: usize,
    /// An early run (its initiative, and the command that made it), read at every checkpoint.
    first: Option<(Uuid, Uuid, Uuid)>,
    /// Time spent in [`autovacuum`] while growing.
    vacuumed: std::time::Duration,
}

impl Team<'_> {
    /// Executes `n` runs of `series`, `in_flight` at a time, and ends them; the latencies of
    /// the executes.
    async fn runs(
        &mut self,
        series: Uuid,
        n: usize,
        in_flight: usize,
    ) -> anyhow::Result<(Vec<f64>, std::time::Duration)> {
        let made = std::sync::Mutex::new(Vec::with_capacity(n));
        let s = self.s;
        let (lat, elapsed) = concurrently(n, in_flight, |_| {
            let made = &made;
            async move {
                let (outcome, ms) = s
                    .send(
                        CommandName::ExecuteProcedure,
                        s.s3,
                        json!({ "series_id": series }),
                    )
                    .await?;
                let value = serde_json::to_value(&outcome)?;
                anyhow::ensure!(outcome.is_accepted(), "execute refused: {}", value["error"]);
                let run: Uuid = serde_json::from_value(value["result"]["run_id"].clone())?;
                let initiative: Uuid =
                    serde_json::from_value(value["result"]["initiative_id"].clone())?;
                made.lock()
                    .expect("not poisoned")
                    .push((run, initiative, outcome.command_id));
                Ok(ms)
            }
        })
        .await?;
        let made = made.into_inner().expect("not poisoned");
        self.first = self.first.or(made.first().copied());
        concurrently(made.len(), FILL_IN_FLIGHT, |i| {
            let run = made[i].0;
            async move {
                let (_, ms) = s
                    .ok(
                        CommandName::CancelRun,
                        s.s3,
                        json!({ "run_id": run, "reason": "history" }),
                    )
                    .await?;
                Ok(ms)
            }
        })
        .await?;
        self.runs += n;
        Ok((lat, elapsed))
    }

    /// Grows the history to `target` runs.
    async fn fill(&mut self, target: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        let from = self.runs;
        while self.runs < target {
            let n = STEP.min(target - self.runs);
            let policy = n * POLICY_SHARE / STEP;
            self.runs(self.policy, policy, FILL_IN_FLIGHT).await?;
            self.runs(self.plain, n - policy, FILL_IN_FLIGHT).await?;
            self.vacuumed += autovacuum(self.s).await?;
        }
        eprintln!(
            "history: {from} → {} runs in {:.0} s ({:.1} s of it vacuuming)",
            self.runs,
            started.elapsed().as_secs_f64(),
            self.vacuumed.as_secs_f64()
        );
        self.vacuumed = Default::default();
        Ok(())
    }

    async fn measure(&mut self, database: &str, in_flight: usize) -> anyhow::Result<Vec<Figures>> {
        let s = self.s;
        let at = |what: &str| format!("history: {what}");
        let mut out = Vec::new();
        // The burst's p99 is the tenth-worst of well under a second of executes: measured
        // `MEASUREMENTS` times too, its median told.
        let mut bursts = Vec::with_capacity(MEASUREMENTS);
        for _ in 0..MEASUREMENTS {
            let before = s.events.load(Ordering::Relaxed);
            let (lat, elapsed) = self.runs(self.plain, BURST, in_flight).await?;
            let at = at(&format!("execute, {in_flight} in flight"));
            bursts.push(s.measured(figures(&at, database, lat, elapsed), before));
        }
        out.extend(median(&bursts));
        let (lat, elapsed) = self.runs(self.plain, SINGLE, 1).await?;
        out.push(figures(
            &at("execute, one at a time"),
            database,
            lat,
            elapsed,
        ));
        let (lat, elapsed) = self.runs(self.policy, SINGLE, 1).await?;
        out.push(figures(
            &at("execute of the policy series"),
            database,
            lat,
            elapsed,
        ));
        autovacuum(s).await?;
        let (run, initiative, command) = self.first.context("no run made")?;
        let (s3, s1) = (s.s3, s.s1[0]);
        let queries = [
            ("run.get", QueryName::GetRun, json!({ "run_id": run })),
            ("run.list", QueryName::ListRuns, json!({})),
            (
                "run.list of started runs",
                QueryName::ListRuns,
                json!({ "status": "started" }),
            ),
            (
                "run.list of the policy series",
                QueryName::ListRuns,
                json!({ "series_id": self.policy }),
            ),
            (
                "task.list of a System1",
                QueryName::ListTasks,
                json!({ "assignee_system_id": s1 }),
            ),
            (
                "task.list ready",
                QueryName::ListTasks,
                json!({ "assignee_system_id": s1, "ready": true }),
            ),
            (
                "initiative.trace",
                QueryName::Trace,
                json!({ "initiative_id": initiative }),
            ),
            (
                "command.outcome",
                QueryName::Outcome,
                json!({ "command_id": command }),
            ),
            (
                "audit.get of a run",
                QueryName::Audit,
                json!({ "run_id": run }),
            ),
            (
                "audit.get of the policy series",
                QueryName::Audit,
                json!({ "series_id": self.policy }),
            ),
            ("procedure.list", QueryName::ListProcedures, json!({})),
            (
                "procedure.history",
                QueryName::History,
                json!({ "series_id": self.policy }),
            ),
        ];
        let queries = queries.map(|(what, name, mut request)| {
            request["actor"] = json!(if name == QueryName::ListTasks { s1 } else { s3 });
            (what, name, request)
        });
        // `ASKS` rounds, each asking every query once: a stall of the machine falls on
        // whichever query was being asked, not on a thousand asks of one, so the queries'
        // tails (and the two checkpoints') compare as their costs. All of it `MEASUREMENTS`
        // times, each figure told as the median of its values.
        let mut measured = vec![Vec::with_capacity(MEASUREMENTS); queries.len()];
        for _ in 0..MEASUREMENTS {
            let mut lat = vec![Vec::with_capacity(ASKS); queries.len()];
            for _ in 0..ASKS {
                for ((_, name, request), lat) in queries.iter().zip(&mut lat) {
                    let started = Instant::now();
                    s.client
                        .query::<_, Value>(*name, request)
                        .await
                        .with_context(|| format!("{name} {request}"))?;
                    lat.push(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
            let this: Vec<Figures> = queries
                .iter()
                .zip(lat)
                .map(|((what, ..), lat)| {
                    let asking =
                        std::time::Duration::from_secs_f64(lat.iter().sum::<f64>() / 1000.0);
                    figures(&at(what), database, lat, asking)
                })
                .collect();
            eprintln!("{}", crate::table(&this));
            for (f, measured) in this.into_iter().zip(&mut measured) {
                measured.push(f);
            }
        }
        out.extend(measured.iter().filter_map(|m| median(m)));
        Ok(out)
    }
}

/// On a Postgres server with autovacuum off, what autovacuum would do between two steps of
/// the fill and between a measurement's writes and its reads: `VACUUM (ANALYZE)` each table
/// whose dead rows pass its threshold (the table's own settings, else the server's: 50 + 20 %
/// of its rows by default), so the tables grow and read as they would with autovacuum on.
/// The time it took.
async fn autovacuum(s: &Subject) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    if s.db.get_database_backend() != DbBackend::Postgres {
        return Ok(Default::default());
    }
    // Each setting as the table has it, else as the server has it.
    let setting = |name: &str| {
        format!(
            "coalesce((SELECT split_part(o, '=', 2)::float8 FROM unnest(c.reloptions) o \
             WHERE o LIKE '{name}=%'), current_setting('{name}')::float8)"
        )
    };
    let due =
        s.db.query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT s.relname::text AS name FROM pg_stat_user_tables s \
                 JOIN pg_class c ON c.oid = s.relid \
                 WHERE current_setting('autovacuum') = 'off' \
                 AND s.n_dead_tup > {} + {} * greatest(c.reltuples, 0)",
                setting("autovacuum_vacuum_threshold"),
                setting("autovacuum_vacuum_scale_factor"),
            ),
        ))
        .await?;
    for row in due {
        let table: String = row.try_get("", "name")?;
        s.db.execute_unprepared(&format!("VACUUM (ANALYZE) \"{table}\""))
            .await?;
    }
    Ok(started.elapsed())
}

/// Over the months a history stands for, Postgres' autovacuum keeps the tables vacuumed and
/// their statistics current, and both databases write back what a burst dirtied; grown in
/// minutes, the history outruns both (and finds autovacuum off, as on a test server). The
/// same work is done here before each measurement, and its time told, so that a measurement
/// shows the history's cost rather than the catching up after 90,000 runs in minutes.
async fn maintain(s: &Subject) -> anyhow::Result<()> {
    let started = Instant::now();
    let backend = s.db.get_database_backend();
    let work = match backend {
        DbBackend::Postgres => ["VACUUM (ANALYZE)", "CHECKPOINT"].as_slice(),
        _ => ["PRAGMA wal_checkpoint(TRUNCATE)"].as_slice(),
    };
    for statement in work {
        s.db.execute_unprepared(statement).await?;
    }
    eprintln!(
        "history: {} in {:.1} s",
        work.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The bytes the database holds now, and its largest tables (with their indexes).
async fn sizes(s: &Subject) -> anyhow::Result<(f64, Vec<(String, f64)>)> {
    let db = &s.db;
    let one = |sql: &str| Statement::from_string(db.get_database_backend(), sql.to_owned());
    let number = |row: Option<sea_orm::QueryResult>, column: &str| -> anyhow::Result<f64> {
        Ok(row.context("no row")?.try_get::<i64>("", column)? as f64)
    };
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            let pages = number(
                db.query_one_raw(one("PRAGMA page_count")).await?,
                "page_count",
            )?;
            let free = number(
                db.query_one_raw(one("PRAGMA freelist_count")).await?,
                "freelist_count",
            )?;
            let size = number(
                db.query_one_raw(one("PRAGMA page_size")).await?,
                "page_size",
            )?;
            // Per table where the build has the `dbstat` table; the total either way.
            let tables = match db
                .query_all_raw(one(
                    "SELECT coalesce(m.tbl_name, d.name) AS name, SUM(d.pgsize) AS bytes \
                     FROM dbstat d LEFT JOIN sqlite_schema m ON m.name = d.name \
                     GROUP BY 1 ORDER BY 2 DESC LIMIT 8",
                ))
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<String>("", "name")?,
                            r.try_get::<i64>("", "bytes")? as f64,
                        ))
                    })
                    .collect::<anyhow::Result<_>>()?,
                Err(_) => vec![],
            };
            Ok(((pages - free) * size, tables))
        }
        _ => {
            let total = number(
                db.query_one_raw(one(
                    "SELECT pg_database_size(current_database())::bigint AS bytes",
                ))
                .await?,
                "bytes",
            )?;
            let tables = db
                .query_all_raw(one(
                    "SELECT relname::text AS name, pg_total_relation_size(oid)::bigint AS bytes \
                     FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace \
                     ORDER BY 2 DESC LIMIT 8",
                ))
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<String>("", "name")?,
                        r.try_get::<i64>("", "bytes")? as f64,
                    ))
                })
                .collect::<anyhow::Result<_>>()?;
            Ok((total, tables))
        }
    }
}

/// Grows the bench team's history to `total` runs, measuring at each of [`checkpoints`].
pub(crate) async fn history(
    s: &Subject,
    args: &crate::BenchArgs,
    database: &str,
) -> anyhow::Result<Vec<Checkpoint>> {
    let (empty, _) = sizes(s).await?;
    let plain = s.approved(10).await?;
    let policy = s.approved(10).await?;
    let rules = json!({ "rules": [
        { "name": "open", "max_open_runs": 1_000, "series": [policy] },
        { "name": "rate", "max_runs": { "count": 100_000, "per": "1s" }, "series": [policy] },
    ] });
    s.ok(CommandName::SetPolicy, s.s5, rules).await?;
    for _ in 0..OPEN {
        s.execute(plain).await?;
    }
    let mut team = Team {
        s,
        plain,
        policy,
        runs: OPEN,
        first: None,
        vacuumed: Default::default(),
    };
    let mut out = Vec::new();
    for at in checkpoints(args.history) {
        team.fill(at).await?;
        maintain(s).await?;
        let runs = team.runs;
        let figures = team.measure(database, args.in_flight).await?;
        let (bytes, tables) = sizes(s).await?;
        let per_run = |b: f64| b / team.runs as f64;
        let checkpoint = Checkpoint {
            database: database.to_owned(),
            runs,
            figures,
            bytes_per_run: per_run(bytes - empty),
            tables: tables.into_iter().map(|(t, b)| (t, per_run(b))).collect(),
            worker_rss_mib: s.child.id().and_then(|pid| memory_mib(pid, "VmRSS")),
        };
        eprintln!("{}", crate::table(&checkpoint.figures));
        eprintln!(
            "history at {runs} runs on {database}: {:.0} bytes per run ({})",
            checkpoint.bytes_per_run,
            checkpoint
                .tables
                .iter()
                .map(|(t, b)| format!("{t} {b:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        out.push(checkpoint);
    }
    Ok(out)
}

/// Each figure at the first checkpoint and the last, side by side with their ratio: p50 and
/// p99 for latencies, operations per second for the burst.
pub(crate) fn comparison(checkpoints: &[Checkpoint]) -> String {
    let (Some(first), Some(last)) = (checkpoints.first(), checkpoints.last()) else {
        return String::new();
    };
    let mut out = vec![format!(
        "{:<46} {:<9} {:>18} {:>18} {:>12}",
        "figure",
        "database",
        format!("at {} runs", first.runs),
        format!("at {} runs", last.runs),
        "ratio"
    )];
    let row = |what: String, a: f64, b: f64| {
        format!(
            "{what:<46} {:<9} {a:>18.2} {b:>18.2} {:>11.2}×",
            first.database,
            b / a.max(1e-9)
        )
    };
    for (a, b) in first.figures.iter().zip(&last.figures) {
        if a.workload.contains(" in flight") {
            out.push(row(
                format!("{} ops/s", a.workload),
                a.per_second,
                b.per_second,
            ));
        }
        out.push(row(format!("{} p50 ms", a.workload), a.p50_ms, b.p50_ms));
        out.push(row(format!("{} p99 ms", a.workload), a.p99_ms, b.p99_ms));
    }
    if let (Some(a), Some(b)) = (first.worker_rss_mib, last.worker_rss_mib) {
        out.push(row("worker resident memory MiB".into(), a, b));
    }
    out.push(row(
        "bytes per run".into(),
        first.bytes_per_run,
        last.bytes_per_run,
    ));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_powers_of_ten_then_the_total() {
        assert_eq!(checkpoints(100_000), vec![1_000, 10_000, 100_000]);
        assert_eq!(checkpoints(25_000), vec![1_000, 10_000, 25_000]);
        assert_eq!(checkpoints(500), vec![500]);
    }
}

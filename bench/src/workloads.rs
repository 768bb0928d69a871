//! The service's workloads: execute-heavy, paced at half of peak, full lifecycles, large
//! templates, the soak.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use vsm_sop::wire::command::CommandName;
use vsm_sop::wire::subjects::Subjects;

use crate::BenchArgs;
use crate::figures::*;
use crate::probe::Probe;
use crate::subject::*;

/// Runs the operations `ops` yields, at most `in_flight` at once; each returns its latency in
/// ms. Returns the latencies and the time all took.
pub(crate) async fn run_all<S>(ops: S, in_flight: usize) -> anyhow::Result<(Vec<f64>, Duration)>
where
    S: futures::Stream,
    S::Item: std::future::Future<Output = anyhow::Result<f64>>,
{
    let started = Instant::now();
    let results: Vec<anyhow::Result<f64>> = ops.buffer_unordered(in_flight.max(1)).collect().await;
    let elapsed = started.elapsed();
    Ok((results.into_iter().collect::<anyhow::Result<_>>()?, elapsed))
}

/// Runs `n` operations with at most `concurrency` in flight.
pub(crate) async fn concurrently<F, Fut>(
    n: usize,
    concurrency: usize,
    op: F,
) -> anyhow::Result<(Vec<f64>, Duration)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    run_all(futures::stream::iter((0..n).map(op)), concurrency).await
}

/// `n` executes of `series`, `concurrency` at a time: their latencies and the time taken.
pub(crate) async fn executes(
    s: &Subject,
    series: Uuid,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    concurrently(n, concurrency, execute_op(s, series)).await
}

/// When operation `i` of an open-loop run at `rate` per second is due, after its start.
pub(crate) fn due_after(i: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate.max(1e-3))
}

/// Runs `n` operations open-loop at `rate` per second: operation `i` starts at `i / rate`
/// seconds whatever the others are doing, so latency includes any queueing at the service.
pub(crate) async fn paced<F, Fut>(
    n: usize,
    rate: f64,
    op: F,
) -> anyhow::Result<(Vec<f64>, Duration)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let started = tokio::time::Instant::now();
    // Each operation is created when it is due, so a long soak holds only those in flight.
    let due = futures::stream::iter(0..n).then(|i| async move {
        tokio::time::sleep_until(started + due_after(i, rate)).await;
        i
    });
    run_all(due.map(&op), usize::MAX).await
}

pub(crate) fn execute_op<'a>(s: &'a Subject, series: Uuid) -> impl Fn(usize) -> BoxedLatency<'a> {
    move |_| Box::pin(async move { Ok(s.execute(series).await?.1) })
}

pub(crate) type BoxedLatency<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<f64>> + Send + 'a>>;

/// The p99 target of an execute at half of peak: what the paced run's stalls are measured
/// against.
const TAIL_TARGET_MS: f64 = 25.0;

/// Executes paced at half of the peak `execute_heavy` measured: the latency a service
/// running at half its capacity gives.
pub(crate) async fn half_peak(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
    peak: f64,
) -> anyhow::Result<Figures> {
    let series = s.approved(10).await?;
    let before = s.events.load(Ordering::Relaxed);
    let rate = peak / 2.0;
    let timed = std::sync::Mutex::new(Vec::with_capacity(args.executes / 2));
    let op = |i: usize| {
        let timed = &timed;
        Box::pin(async move {
            let ms = s.execute(series).await?.1;
            timed
                .lock()
                .expect("not poisoned")
                .push((i as f64 / rate, ms));
            Ok(ms)
        }) as BoxedLatency<'_>
    };
    let probe = Probe::start(s).await?;
    let (lat, elapsed) = paced(args.executes / 2, rate, op).await?;
    let probed = probe.stop().await;
    let mut timed = timed.into_inner().expect("not poisoned");
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let found = stalls(&timed, TAIL_TARGET_MS, 50.0);
    let slow: usize = found.iter().map(|st| st.operations).sum();
    let mut worst = found.clone();
    worst.sort_by(|a, b| b.worst_ms.total_cmp(&a.worst_ms));
    let shown: Vec<String> = worst
        .iter()
        .take(6)
        .map(|st| {
            let (from, to) = (st.at_s - 0.2, st.at_s + st.span_ms / 1000.0);
            let (rtt, stored, late, grew, writeback) = probed.worst_within(from, to);
            let database = match probed.postgres_within(from, to) {
                Some((vacuums, written, waits)) => format!(
                    "{vacuums} autovacuum workers, {written} buffers written by a checkpoint, sessions waiting on [{waits}]"
                ),
                None => format!("the SQLite file +{grew:.1} MiB"),
            };
            format!(
                "at {:.1} s for {:.0} ms (worst {:.0} ms, {} executes; meanwhile a NATS round trip up to {rtt:.1} ms, a JetStream publish up to {stored:.1} ms, the bench's timers up to {late:.0} ms late, up to {writeback:.1} MiB in writeback, {database})",
                st.at_s, st.span_ms, st.worst_ms, st.operations
            )
        })
        .collect();
    eprintln!(
        "{database} paced: {slow} of {} executes over {TAIL_TARGET_MS} ms, in {} stalls (at most {:.1} MiB in writeback over the run); the longest: {}",
        timed.len(),
        found.len(),
        probed.writeback_peak(),
        shown.join("; ")
    );
    Ok(s.measured(
        figures(
            &format!("execute 10-task, paced at half of peak ({rate:.0}/s)"),
            database,
            lat,
            elapsed,
        ),
        before,
    ))
}

/// Executes at half of the peak for `args.soak_secs`, sampling the worker's resident memory
/// every 10 s; returns the samples (seconds since start, MiB) with the latency figures.
pub(crate) async fn soak(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
    peak: f64,
) -> anyhow::Result<(Figures, Vec<(u64, f64)>)> {
    let series = s.approved(10).await?;
    let before = s.events.load(Ordering::Relaxed);
    let rate = peak / 2.0;
    let n = (rate * args.soak_secs as f64) as usize;
    let pid = s.child.id().context("worker pid")?;
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = tokio::spawn({
        let samples = samples.clone();
        async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let (Some(mib), Ok(mut samples)) = (memory_mib(pid, "VmRSS"), samples.lock()) {
                    samples.push((started.elapsed().as_secs(), mib));
                }
            }
        }
    });
    let result = paced(n, rate, execute_op(s, series)).await;
    sampler.abort();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let (lat, elapsed) = result?;
    let title = format!(
        "soak: execute 10-task at {rate:.0}/s for {} s",
        args.soak_secs
    );
    Ok((
        s.measured(figures(&title, database, lat, elapsed), before),
        samples,
    ))
}

pub(crate) async fn execute_heavy(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
) -> anyhow::Result<Figures> {
    let series = s.approved(10).await?;
    let before = s.events.load(Ordering::Relaxed);
    let (lat, elapsed) = executes(s, series, args.executes, args.in_flight).await?;
    Ok(s.measured(
        figures("execute 10-task template", database, lat, elapsed),
        before,
    ))
}

pub(crate) async fn lifecycle(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
) -> anyhow::Result<Figures> {
    let before = s.events.load(Ordering::Relaxed);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (_, elapsed) = concurrently(args.lifecycles, args.in_flight, |_| {
        let latencies = latencies.clone();
        async move {
            let mut mine = Vec::new();
            let (draft, ms) = s
                .ok(CommandName::DraftProcedure, s.s4, template(10))
                .await?;
            mine.push(ms);
            let id: Uuid = serde_json::from_value(draft["procedure_id"].clone())?;
            let approval = json!({ "procedure_id": id, "digest": draft["digest"] });
            mine.push(s.ok(CommandName::ApproveProcedure, s.s5, approval).await?.1);
            let (run, ms) = s.execute(id).await?;
            mine.push(ms);
            let run_id = run["run_id"].clone();
            let tasks: Vec<Value> = run["task_ids"].as_array().cloned().unwrap_or_default();
            let detail: vsm_sop::wire::answer::RunDetail = s
                .client
                .query_pages(
                    vsm_sop::wire::query::QueryName::GetRun,
                    &json!({ "actor": s.s3, "run_id": run_id }),
                    None,
                )
                .await?;
            for (task, shown) in tasks.iter().zip(&detail.tasks) {
                let assignee = shown.assignee_system_id.0;
                mine.push(
                    s.ok(CommandName::StartTask, assignee, json!({ "task_id": task }))
                        .await?
                        .1,
                );
                mine.push(
                    s.ok(
                        CommandName::CompleteTask,
                        assignee,
                        json!({ "task_id": task, "result": "done" }),
                    )
                    .await?
                    .1,
                );
                mine.push(
                    s.ok(
                        CommandName::ReviewTask,
                        s.s3,
                        json!({ "task_id": task, "verdict": "approve" }),
                    )
                    .await?
                    .1,
                );
            }
            latencies
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .extend(mine);
            Ok(0.0)
        }
    })
    .await?;
    let lat = std::mem::take(&mut *latencies.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(s.measured(
        figures("full lifecycle (commands)", database, lat, elapsed),
        before,
    ))
}

/// Executes of a large template, one at a time, each sent once the one before has reached a
/// listener whole (a command arriving at a quiet service, not behind the relay of the last
/// one's events). Two figures: publish → outcome, and publish → its last event delivered:
/// with the bench's chain template, the first task's `task.ready`, which follows the run's
/// `task.created` events in commit order.
pub(crate) async fn large(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
    tasks: usize,
) -> anyhow::Result<[Figures; 2]> {
    let series = s.approved(tasks).await?;
    let nats = s.client_nats();
    let subjects = Subjects::new(&s.settings.connection.subject_prefix);
    let mut ready = nats
        .subscribe(subjects.event_filter(Some("task.ready"), Some("bench")))
        .await?;
    nats.flush().await?;
    let before = s.events.load(Ordering::Relaxed);
    let started = Instant::now();
    let (mut outcomes, mut delivered) = (vec![], vec![]);
    for _ in 0..args.large {
        let sent = Instant::now();
        let (result, ms) = s.execute(series).await?;
        outcomes.push(ms);
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), ready.next())
                .await
                .context("no task.ready within 60 s of a large execute")?
                .context("the task.ready subscription ended")?;
            let event: Value = serde_json::from_slice(&event.payload)?;
            if event["data"]["run_id"] == result["run_id"] {
                break;
            }
        }
        delivered.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed();
    let name = format!("execute {tasks}-task template");
    Ok([
        s.measured(figures(&name, database, outcomes, elapsed), before),
        s.measured(
            figures(
                &format!("{name}, to last event"),
                database,
                delivered,
                elapsed,
            ),
            before,
        ),
    ])
}

//! The baselines measured in the same run: (a) the same rows by plain transactions, (b) a bare
//! JetStream publish, (c) the disk's own durable writes.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use vsm_sop::store;

use crate::BenchArgs;
use crate::figures::*;
use crate::subject::*;
use crate::workloads::*;

/// A digest as long as a real one: the baseline writes rows of the same size.
const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Baseline (a): the rows one 10-task execute writes (run, initiative, tasks, inbox row, the
/// outbox record of its outcome and events), in one plain transaction each, at the same
/// concurrency.
pub(crate) async fn sql_baseline(
    s: &Subject,
    args: &BenchArgs,
    database: &str,
) -> anyhow::Result<Figures> {
    use entity::*;
    let series = s.approved(10).await?;
    let team = store::teams::actor(&s.db, s.s3)
        .await?
        .context("bench team")?
        .0
        .team_id
        .0;
    // Rows as large as the service's: the execute-heavy workload, run just before on this
    // database, left an execute's outbox record (its outcome and events) to copy.
    let execute = command_inbox::Entity::find()
        .filter(command_inbox::Column::Command.eq("procedure.execute"))
        .one(&s.db)
        .await?
        .context("an execute to size the baseline by")?
        .command_id;
    let record = outbox::Entity::find()
        .filter(outbox::Column::CausationId.eq(execute))
        .one(&s.db)
        .await?
        .context("an execute's outbox record to size the baseline by")?;
    let (body, messages) = (&record.body, record.messages);
    let pool = store::connect(
        &s.settings.worker.database_url,
        s.settings.worker.db_max_connections,
    )
    .await?;
    let pool = &pool;
    let (lat, elapsed) = concurrently(args.executes, args.in_flight, |_| async move {
        let started = Instant::now();
        let now = chrono::Utc::now();
        let txn = store::begin(pool).await?;
        let (run, ini) = (Uuid::now_v7(), Uuid::now_v7());
        procedure_run::Entity::insert(procedure_run::ActiveModel {
            id: Set(run),
            procedure_id: Set(series),
            series_id: Set(series),
            procedure_version: Set(1),
            procedure_digest: Set(DIGEST.into()),
            team_id: Set(team),
            initiative_id: Set(ini),
            status: Set("started".into()),
            started_by_system_id: Set(s.s3),
            started_at: Set(now),
            completed_at: Set(None),
            reason: Set(None),
            approval_rule: Set(None),
            approval_verdict: Set(None),
            approval_by_system_id: Set(None),
            approval_at: Set(None),
            approval_note: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
        initiative::Entity::insert(initiative::ActiveModel {
            id: Set(ini),
            team_id: Set(team),
            strategy_id: Set(None),
            status: Set("pending".into()),
            name: Set("Bench 10".into()),
            description: Set(String::new()),
            result: Set(None),
            procedure_id: Set(Some(series)),
            procedure_version: Set(Some(1)),
            procedure_digest: Set(DIGEST.into()),
            run_id: Set(Some(run)),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        let tasks: Vec<task::ActiveModel> = (0..10)
            .map(|i| task::ActiveModel {
                id: Set(Uuid::now_v7()),
                team_id: Set(team),
                initiative_id: Set(ini),
                procedure_task_id: Set(None),
                seq: Set(i),
                position: Set(i + 1),
                status: Set("pending".into()),
                ready: Set(i == 0),
                assignee_system_id: Set(s.s1[0]),
                assignee_type: Set("system1".into()),
                name: Set(format!("Step {}", i + 1)),
                content: Set("Do the step.".into()),
                result: Set(None),
                reasoning: Set(None),
                review_verdict: Set(None),
                review_reasoning: Set(None),
                depends_on: Set(json!([])),
                default_assignee_system_type: Set(None),
                required_skills: Set(json!([])),
                replaces_task_id: Set(None),
                follow_up_task_id: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .collect();
        task::Entity::insert_many(tasks)
            .exec_without_returning(&txn)
            .await?;
        let command = Uuid::now_v7();
        command_inbox::Entity::insert(command_inbox::ActiveModel {
            command_id: Set(command),
            command: Set("procedure.execute".into()),
            actor_system_id: Set(Some(s.s3)),
            status: Set(enums::CommandStatus::Accepted),
            processed_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        // Not listed in outbox_pending: the worker's relay leaves this record alone.
        outbox::Entity::insert(outbox::ActiveModel {
            team_id: Set(Some(team)),
            causation_id: Set(command),
            series_id: Set(Some(series)),
            run_id: Set(Some(run)),
            messages: Set(messages),
            body: Set(body.clone()),
            created_at: Set(now),
            ..Default::default()
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    })
    .await?;
    Ok(figures(
        "baseline (a): same rows, plain transactions",
        database,
        lat,
        elapsed,
    ))
}

/// Baseline (b): a bare JetStream publish awaited for its PubAck, at the same concurrency.
pub(crate) async fn jetstream_baseline(
    nats: &async_nats::Client,
    args: &BenchArgs,
) -> anyhow::Result<Figures> {
    let js = jetstream::new(nats.clone());
    let name = format!("SOP_BENCH_{}", Uuid::new_v4().simple());
    let subject = format!("{}.x", name.to_lowercase());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(vec![b'x'; 600]);
    let (js, subject, payload) = (&js, &subject, &payload);
    let result = concurrently(args.executes, args.in_flight, |_| async move {
        let started = Instant::now();
        js.publish(subject.clone(), payload.clone()).await?.await?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    })
    .await;
    js.delete_stream(&name).await?;
    let (lat, elapsed) = result?;
    Ok(figures(
        "baseline (b): JetStream publish + ack",
        "-",
        lat,
        elapsed,
    ))
}

/// Baseline (c): the disk's own latency for durable writes at the paced run's rate. `n`
/// writes of 4 KiB, each followed by `fdatasync`, into a file in the temporary directory
/// (where the SQLite benchmark database lives), filled beforehand and rewritten in a cycle as
/// a WAL is. Open loop like the paced run: write `i` is due at `i / rate` seconds and its
/// latency counts from then, so a flush that stalls delays every write due meanwhile, as it
/// delays every commit queued behind it. A command is acknowledged only after its commit's
/// flush, so where the database shares this disk, a p99 at half of peak over the target with
/// this one over it too is the disk's. Measured alone, right after the paced run, with one
/// flush per write where group commit makes fewer: the disk at the time, not a strict floor.
pub(crate) fn durable_writes(n: usize, rate: f64) -> std::io::Result<(Vec<f64>, Duration)> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    const BLOCKS: usize = 1024;
    let path = std::env::temp_dir().join(format!("sop-bench-{}.fsync", Uuid::new_v4().simple()));
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all_at(&vec![0u8; BLOCK * BLOCKS], 0)?;
        file.sync_all()?;
        let block = vec![b'x'; BLOCK];
        let mut latencies = Vec::with_capacity(n);
        let started = Instant::now();
        for i in 0..n {
            let due = started + due_after(i, rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            file.write_all_at(&block, ((i % BLOCKS) * BLOCK) as u64)?;
            file.sync_data()?;
            latencies.push(due.elapsed().as_secs_f64() * 1000.0);
        }
        Ok((latencies, started.elapsed()))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Baseline (c): `n` durable writes at `rate` ([`durable_writes`]).
pub(crate) async fn durable_write_baseline(
    database: &str,
    rate: f64,
    n: usize,
) -> anyhow::Result<Figures> {
    let (lat, elapsed) = tokio::task::spawn_blocking(move || durable_writes(n, rate)).await??;
    Ok(figures(
        &format!("baseline (c): 4 KiB write + fdatasync ({rate:.0}/s)"),
        database,
        lat,
        elapsed,
    ))
}

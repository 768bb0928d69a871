//! What else is slow while a paced run runs: probes sampled beside it, so that a stall of the
//! service can be told from one of NATS, the machine's CPU or its disk.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait as _;

use crate::subject::Subject;

/// What else is slow while the paced run runs, sampled every 10 ms: a NATS round trip
/// (PING/PONG on a connection of its own), a JetStream publish to a stream of its own (the
/// server's storage) and how late the bench's own timers fire (the machine's CPU). A stall
/// they share is not the worker's or the database's.
pub(crate) struct Probe {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Probed>,
}

#[derive(Default)]
pub(crate) struct Probed {
    /// (seconds since the start, NATS round trip ms, JetStream publish ms, timer lateness ms,
    /// SQLite database file MiB, the machine's dirty pages being written back MiB)
    samples: Vec<(f64, f64, f64, f64, f64, f64)>,
    /// (seconds since the start, autovacuum workers, buffers written by checkpoints so far,
    /// what the database's busy sessions wait on)
    postgres: Vec<(f64, i64, i64, String)>,
}

impl Probe {
    pub(crate) async fn start(s: &Subject) -> anyhow::Result<Probe> {
        let nats = vsm_sop::app::connect_nats(&s.settings).await?;
        let js = async_nats::jetstream::new(nats.clone());
        let subject = format!("{}.probe", s.settings.connection.subject_prefix);
        let stream = format!(
            "{}_PROBE",
            s.settings.connection.subject_prefix.to_uppercase()
        );
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            max_messages: 10_000,
            ..Default::default()
        })
        .await?;
        // SQLite's database file grows when a checkpoint moves the WAL's pages into it.
        let file = s
            .settings
            .worker
            .database_url
            .strip_prefix("sqlite://")
            .and_then(|p| p.split('?').next())
            .map(std::path::PathBuf::from);
        // Postgres' own background work: autovacuum workers running, buffers a checkpoint wrote.
        let postgres =
            (s.db.get_database_backend() == sea_orm::DbBackend::Postgres).then(|| s.db.clone());
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut probed = Probed::default();
            let every = Duration::from_millis(10);
            while !*stopped.borrow() {
                let asleep = Instant::now();
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => break,
                }
                let late = asleep.elapsed().saturating_sub(every);
                let sent = Instant::now();
                if nats.flush().await.is_err() {
                    break;
                }
                let rtt = sent.elapsed();
                let sent = Instant::now();
                let stored = match js.publish(subject.clone(), "probe".into()).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if !stored {
                    break;
                }
                if let Some(db) = &postgres
                    && probed.samples.len() % 10 == 0
                {
                    let row = db
                        .query_one_raw(sea_orm::Statement::from_string(
                            sea_orm::DbBackend::Postgres,
                            "SELECT (SELECT count(*) FROM pg_stat_activity \
                             WHERE backend_type = 'autovacuum worker') AS vacuums, \
                             (SELECT buffers_checkpoint FROM pg_stat_bgwriter) AS written, \
                             (SELECT string_agg(wait_event_type || ':' || wait_event, ',') \
                              FROM pg_stat_activity WHERE datname = current_database() \
                              AND state <> 'idle' AND pid <> pg_backend_pid() \
                              AND wait_event IS NOT NULL) AS waits",
                        ))
                        .await;
                    if let Ok(Some(row)) = row {
                        let vacuums: i64 = row.try_get("", "vacuums").unwrap_or(0);
                        let written: i64 = row.try_get("", "written").unwrap_or(0);
                        let waits: Option<String> = row.try_get("", "waits").unwrap_or(None);
                        probed.postgres.push((
                            started.elapsed().as_secs_f64(),
                            vacuums,
                            written,
                            waits.unwrap_or_default(),
                        ));
                    }
                }
                let size = file
                    .as_ref()
                    .and_then(|f| std::fs::metadata(f).ok())
                    .map_or(0.0, |m| m.len() as f64 / 1_048_576.0);
                probed.samples.push((
                    started.elapsed().as_secs_f64(),
                    rtt.as_secs_f64() * 1000.0,
                    sent.elapsed().as_secs_f64() * 1000.0,
                    late.as_secs_f64() * 1000.0,
                    size,
                    writeback_mib(),
                ));
            }
            let _ = js.delete_stream(&stream).await;
            probed
        });
        Ok(Probe { stop, task })
    }

    pub(crate) async fn stop(self) -> Probed {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

impl Probed {
    /// The worst round trip, JetStream publish and lateness, the SQLite file's growth and the
    /// most pages in writeback, sampled between `from` and `to` seconds.
    pub(crate) fn worst_within(&self, from: f64, to: f64) -> (f64, f64, f64, f64, f64) {
        let within: Vec<_> = self
            .samples
            .iter()
            .filter(|(at, ..)| (from..=to).contains(at))
            .collect();
        let (r, p, l, w) = within.iter().fold(
            (0.0_f64, 0.0_f64, 0.0_f64, 0.0_f64),
            |(r, p, l, w), (_, rtt, stored, late, _, writeback)| {
                (r.max(*rtt), p.max(*stored), l.max(*late), w.max(*writeback))
            },
        );
        let grew = match (within.first(), within.last()) {
            (Some(first), Some(last)) => last.4 - first.4,
            _ => 0.0,
        };
        (r, p, l, grew, w)
    }

    /// The most dirty pages the kernel had in writeback at once over the whole run, MiB.
    pub(crate) fn writeback_peak(&self) -> f64 {
        self.samples.iter().map(|s| s.5).fold(0.0, f64::max)
    }

    /// On Postgres: the most autovacuum workers seen and the buffers checkpoints wrote between
    /// `from` and `to` seconds.
    pub(crate) fn postgres_within(&self, from: f64, to: f64) -> Option<(i64, i64, String)> {
        let within: Vec<_> = self
            .postgres
            .iter()
            .filter(|(at, ..)| (from..=to).contains(at))
            .collect();
        let vacuums = within.iter().map(|(_, v, ..)| *v).max()?;
        let written = within.last()?.2 - within.first()?.2;
        let mut waits: std::collections::BTreeMap<&str, usize> = Default::default();
        for (.., seen) in &within {
            for wait in seen.split(',').filter(|w| !w.is_empty()) {
                *waits.entry(wait).or_default() += 1;
            }
        }
        let mut waits: Vec<_> = waits.into_iter().collect();
        waits.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let waits: Vec<String> = waits
            .iter()
            .take(4)
            .map(|(w, n)| format!("{w} ×{n}"))
            .collect();
        Some((vacuums, written, waits.join(" ")))
    }
}

/// The machine's dirty pages the kernel is writing back now (`Writeback` in /proc/meminfo),
/// MiB: a durable flush waits behind them.
fn writeback_mib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Writeback:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

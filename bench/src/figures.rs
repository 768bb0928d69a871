//! What each workload measured: latency percentiles and rates, as a table row.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub workload: String,
    pub database: String,
    pub operations: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Events a listener received per second during the workload (service runs only).
    pub events_per_second: Option<f64>,
    /// The worker's peak resident memory so far, MiB (service runs only).
    pub worker_peak_rss_mib: Option<f64>,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn figures(
    workload: &str,
    database: &str,
    mut latencies_ms: Vec<f64>,
    elapsed: Duration,
) -> Figures {
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let seconds = elapsed.as_secs_f64();
    Figures {
        workload: workload.into(),
        database: database.into(),
        operations: latencies_ms.len(),
        seconds,
        per_second: latencies_ms.len() as f64 / seconds.max(1e-9),
        p50_ms: percentile(&latencies_ms, 50.0),
        p95_ms: percentile(&latencies_ms, 95.0),
        p99_ms: percentile(&latencies_ms, 99.0),
        events_per_second: None,
        worker_peak_rss_mib: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::durable_writes;

    #[test]
    fn percentiles_pick_ranked_samples() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn durable_writes_time_every_write_and_leave_no_file() {
        let probes = || {
            std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".fsync"))
                .count()
        };
        let before = probes();
        let (latencies, _) = durable_writes(20, 2000.0).unwrap();
        assert_eq!(latencies.len(), 20);
        assert!(latencies.iter().all(|ms| ms.is_finite() && *ms >= 0.0));
        assert!(probes() <= before, "the probe's file is removed");
    }
}

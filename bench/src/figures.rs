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

/// One workload measured several times in a row, as its median measurement: each figure the
/// median of its values, so that one measurement a stall of the machine fell on does not
/// decide a tail. `None` for no measurement.
pub(crate) fn median(measurements: &[Figures]) -> Option<Figures> {
    let first = measurements.first()?;
    // The median of the values a figure has (an optional one may have none).
    let mid = |value: &dyn Fn(&Figures) -> Option<f64>| {
        let mut values: Vec<f64> = measurements.iter().filter_map(value).collect();
        values.sort_by(|a, b| a.total_cmp(b));
        (!values.is_empty()).then(|| percentile(&values, 50.0))
    };
    let always = |value: fn(&Figures) -> f64| mid(&|f| Some(value(f))).unwrap_or_default();
    Some(Figures {
        workload: first.workload.clone(),
        database: first.database.clone(),
        operations: first.operations,
        seconds: always(|f| f.seconds),
        per_second: always(|f| f.per_second),
        p50_ms: always(|f| f.p50_ms),
        p95_ms: always(|f| f.p95_ms),
        p99_ms: always(|f| f.p99_ms),
        events_per_second: mid(&|f| f.events_per_second),
        worker_peak_rss_mib: mid(&|f| f.worker_peak_rss_mib),
    })
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

/// A stretch of an open-loop run whose operations were all slow: the service stopped for a
/// while (a stall), and every operation due meanwhile waited for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stall {
    /// When the first slow operation was due, seconds into the run.
    pub at_s: f64,
    /// From the first slow operation's due time to the last one's.
    pub span_ms: f64,
    pub worst_ms: f64,
    pub operations: usize,
}

/// The stalls of an open-loop run: its operations `(due s, latency ms)` in due order, the
/// slow ones (over `over_ms`) grouped into stretches no more than `gap_ms` of due time apart.
/// A tail made of a few stalls is the service stopping now and then; slow operations spread
/// thinly over the run are the load itself.
pub(crate) fn stalls(ops: &[(f64, f64)], over_ms: f64, gap_ms: f64) -> Vec<Stall> {
    let mut found: Vec<Stall> = Vec::new();
    let mut last_due = f64::NEG_INFINITY;
    for &(due, ms) in ops.iter().filter(|(_, ms)| *ms > over_ms) {
        match found.last_mut() {
            Some(stall) if (due - last_due) * 1000.0 <= gap_ms => {
                stall.span_ms = (due - stall.at_s) * 1000.0;
                stall.worst_ms = stall.worst_ms.max(ms);
                stall.operations += 1;
            }
            _ => found.push(Stall {
                at_s: due,
                span_ms: 0.0,
                worst_ms: ms,
                operations: 1,
            }),
        }
        last_due = due;
    }
    found
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
    fn a_median_measurement_takes_each_figure_apart() {
        let measured = |p50: f64, p99: f64| Figures {
            p50_ms: p50,
            p99_ms: p99,
            ..figures("w", "sqlite", vec![1.0], Duration::from_secs(1))
        };
        let m = median(&[measured(1.0, 30.0), measured(3.0, 5.0), measured(2.0, 4.0)]).unwrap();
        assert_eq!((m.p50_ms, m.p99_ms), (2.0, 5.0));
        assert!(median(&[]).is_none());
    }

    #[test]
    fn slow_operations_close_in_due_time_make_one_stall() {
        let ops = [
            (0.000, 5.0),
            (0.010, 80.0),
            (0.020, 70.0),
            (0.030, 60.0),
            (0.040, 4.0),
            (0.060, 30.0),
            (2.000, 40.0),
            (2.001, 6.0),
        ];
        let found = stalls(&ops, 25.0, 50.0);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].operations, found[0].worst_ms), (4, 80.0));
        assert!((found[0].span_ms - 50.0).abs() < 1e-6);
        assert_eq!((found[1].at_s, found[1].operations), (2.0, 1));
        assert!(stalls(&ops, 100.0, 50.0).is_empty());
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

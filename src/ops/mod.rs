//! Operations: Prometheus metrics, health and readiness, served over a small HTTP endpoint.
//! Nothing here takes part in processing commands; it observes and reports.

pub mod http;
pub mod metrics;

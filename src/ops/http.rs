//! Three GET endpoints on axum: `/metrics` (Prometheus text), `/healthz` (the process is up)
//! and `/readyz` (200 only when the worker can do its job). Anything else is 404; another
//! method on these paths, 405.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use super::metrics::{Readiness, handle};

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ready): State<Readiness>) -> (StatusCode, &'static str) {
    if ready.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: NATS or the database is unreachable, or migrations are pending\n",
        )
    }
}

fn router(ready: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(ready)
}

/// Binds `addr` and serves until shutdown. Returns the bound address (port 0 picks one).
pub async fn start(
    addr: &str,
    ready: Readiness,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(%bound, "serving /metrics, /healthz, /readyz");
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, router(ready))
            .with_graceful_shutdown(stopped)
            .await
        {
            warn!(error = %e, "the operations endpoints stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(method: &str, path: &str, ready: &Readiness) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("a request");
        router(ready.clone())
            .oneshot(request)
            .await
            .expect("an answer")
            .status()
    }

    #[tokio::test]
    async fn routes_answer_by_path_and_readiness() {
        let ready = Readiness::default();
        assert_eq!(status("GET", "/healthz", &ready).await, StatusCode::OK);
        assert_eq!(
            status("GET", "/readyz", &ready).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status("GET", "/metrics", &ready).await, StatusCode::OK);
        assert_eq!(status("GET", "/nope", &ready).await, StatusCode::NOT_FOUND);
        assert_eq!(
            status("POST", "/healthz", &ready).await,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}

//! A deliberately small HTTP/1.1 server for three GET endpoints: `/metrics` (Prometheus text),
//! `/healthz` (the process is up) and `/readyz` (200 only when the worker can do its job).
//! One request per connection; anything else is 404 or 405.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::metrics::{Readiness, handle};

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn route(request_line: &str, ready: &Readiness) -> String {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return response("405 Method Not Allowed", "text/plain", "GET only\n");
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => response("200 OK", "text/plain; version=0.0.4", &handle().render()),
        "/healthz" => response("200 OK", "text/plain", "ok\n"),
        "/readyz" if ready.is_ready() => response("200 OK", "text/plain", "ready\n"),
        "/readyz" => response(
            "503 Service Unavailable",
            "text/plain",
            "not ready: NATS or the database is unreachable, or migrations are pending\n",
        ),
        _ => response("404 Not Found", "text/plain", "not found\n"),
    }
}

async fn serve(mut stream: TcpStream, ready: Readiness) {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Read until the end of the request head (or a full buffer: enough for a request line).
    while len < buf.len() {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let reply = route(head.lines().next().unwrap_or(""), &ready);
    if let Err(e) = stream.write_all(reply.as_bytes()).await {
        debug!(error = %e, "http client went away");
    }
    let _ = stream.shutdown().await;
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
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(stream, ready.clone()));
                    }
                    Err(e) => warn!(error = %e, "http accept failed"),
                },
                _ = shutdown.changed() => break,
            }
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_by_path_and_readiness() {
        let ready = Readiness::default();
        assert!(route("GET /healthz HTTP/1.1", &ready).starts_with("HTTP/1.1 200"));
        assert!(route("GET /readyz HTTP/1.1", &ready).starts_with("HTTP/1.1 503"));
        assert!(route("GET /metrics HTTP/1.1", &ready).starts_with("HTTP/1.1 200"));
        assert!(route("GET /nope HTTP/1.1", &ready).starts_with("HTTP/1.1 404"));
        assert!(route("POST /healthz HTTP/1.1", &ready).starts_with("HTTP/1.1 405"));
    }
}

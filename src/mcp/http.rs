//! `sop mcp --http`: Streamable HTTP on `/mcp`, for one system bound at start (loopback only),
//! or for any number of systems, each request carrying a bearer token an operator issued for
//! one (`sop token issue`). A request without a valid token is answered 401 with the
//! `WWW-Authenticate` challenge and protected resource metadata (RFC 9728) that the MCP
//! authorization specification asks for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::server::{Bound, SopServer};
use crate::bus::client::ClientError;
use crate::wire::query::QueryName;
use anyhow::{Context as _, anyhow};

/// How long a checked token is taken as valid without asking the worker again. The worker
/// checks every command and query it signs anyway, so a revocation holds at once for them.
const TOKEN_CACHE: Duration = Duration::from_secs(30);

/// Where the protected resource metadata of `/mcp` is (RFC 9728, path inserted).
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";

/// Tokens checked lately, by their SHA-256 (the tokens themselves are not kept).
type Checked = HashMap<[u8; 32], (Arc<Bound>, Instant)>;

#[derive(Clone)]
struct Tokens {
    server: SopServer,
    checked: Arc<Mutex<Checked>>,
}

/// Why a request is not let through.
enum Denied {
    /// No token, or one that no system has (revoked, expired, never issued, malformed).
    Unauthorized(Option<&'static str>),
    /// The worker did not answer: the token could not be checked.
    Unavailable(String),
}

impl Tokens {
    /// The system `token` acts as: checked by a signed read, which the worker refuses unless
    /// the token's key is an active token of the system it names.
    async fn check(&self, token: &str) -> Result<Arc<Bound>, Denied> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((bound, at)) = self.checked_lock().get(&key)
            && at.elapsed() < TOKEN_CACHE
        {
            return Ok(bound.clone());
        }
        let (system, seed) =
            crate::wire::token::parse(token).ok_or(Denied::Unauthorized(Some("invalid_token")))?;
        let client = self
            .server
            .client()
            .clone()
            .with_token_seed(seed)
            .map_err(|_| Denied::Unauthorized(Some("invalid_token")))?;
        let denied = |e: ClientError| match e {
            ClientError::Refused(_) => Denied::Unauthorized(Some("invalid_token")),
            other => Denied::Unavailable(other.to_string()),
        };
        client
            .query::<_, serde_json::Value>(QueryName::GetPolicy, &json!({ "actor": system }))
            .await
            .map_err(denied)?;
        let bound = Arc::new(
            Bound::resolve(client, system, self.server.options())
                .await
                .map_err(denied)?,
        );
        let mut checked = self.checked_lock();
        checked.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE);
        checked.insert(key, (bound.clone(), Instant::now()));
        Ok(bound)
    }

    fn checked_lock(&self) -> std::sync::MutexGuard<'_, Checked> {
        self.checked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The scheme and authority the client reached this server by, for the metadata's URLs.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn unauthorized(headers: &HeaderMap, error: Option<&str>) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}{METADATA_PATH}\"",
        origin(headers)
    );
    if let Some(error) = error {
        challenge.push_str(&format!(", error=\"{error}\""));
    }
    let body = json!({
        "error": error.unwrap_or("unauthorized"),
        "error_description": "send `Authorization: Bearer <token>` with a token an operator issued for one system (sop token issue)",
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Lets a request through with the system its token names, or answers 401 / 503. The token
/// leaves the request here, so nothing after this sees it.
async fn authenticate(State(tokens): State<Tokens>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers_mut()
        .remove(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok().map(str::to_owned));
    let token = token.as_deref().and_then(|v| {
        v.split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned())
    });
    let Some(token) = token else {
        return unauthorized(request.headers(), None);
    };
    match tokens.check(&token).await {
        Ok(bound) => {
            request.extensions_mut().insert(bound);
            next.run(request).await
        }
        Err(Denied::Unauthorized(error)) => unauthorized(request.headers(), error),
        Err(Denied::Unavailable(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(json!({ "error": "unavailable", "error_description": format!("the token could not be checked: {why}") })),
        )
            .into_response(),
    }
}

/// RFC 9728 protected resource metadata: what `/mcp` is and how a token is presented. No
/// authorization server issues these tokens: an operator does.
async fn metadata(headers: HeaderMap) -> Response {
    axum::Json(json!({
        "resource": format!("{}/mcp", origin(&headers)),
        "resource_name": "vsm-sop",
        "bearer_methods_supported": ["header"],
        "authorization_servers": [],
    }))
    .into_response()
}

/// Whether `addr` is a loopback address: the only kind a server bound to one system may use.
pub fn loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Serves until Ctrl-C or SIGTERM. With `tokens`, every request must carry one.
pub async fn serve(
    server: SopServer,
    addr: &str,
    tokens: bool,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("bind {addr}"))?;
    if !tokens && !loopback(&bound) {
        return Err(anyhow!(
            "{bound} is not a loopback address: a server bound to one system (--actor) would \
             let anyone who reaches it act as that system. Bind 127.0.0.1, or leave out \
             --actor so that every request must carry a token (sop token issue)"
        ));
    }
    // Behind a token, a rebinding page cannot act: the Host check guards unauthenticated
    // loopback servers only.
    let config = if tokens {
        StreamableHttpServerConfig::default().disable_allowed_hosts()
    } else {
        StreamableHttpServerConfig::default()
    };
    let factory = server.clone();
    let service = StreamableHttpService::new(
        move || Ok(factory.clone()),
        LocalSessionManager::default().into(),
        config,
    );
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if tokens {
        let state = Tokens {
            server,
            checked: Arc::default(),
        };
        router = router
            .layer(axum::middleware::from_fn_with_state(state, authenticate))
            .route(METADATA_PATH, get(metadata))
            .route("/.well-known/oauth-protected-resource", get(metadata));
    }
    // Without it, Nagle's algorithm holds each small response until the client's delayed
    // acknowledgement, some 40 ms a call on a kept-alive connection.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // Printed, so that a script that asked for port 0 learns which one it got.
    eprintln!("serving MCP on http://{bound}/mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(stopped)
        .await
        .context("MCP over HTTP")
}

//! Composition root: validate settings, connect, migrate, ensure streams, spawn the consumer,
//! the relay, the query service, the monitor and the HTTP endpoints. `sop worker` and the
//! integration tests start the service through [`start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::application::command::Signing;
use crate::bus::{client::Client, queries, relay, streams, worker};
use crate::config::Settings;
use crate::ops::{http, metrics};
use crate::store;
use crate::wire::subjects::Subjects;

/// Connects with the configured credentials; `nats_url` may list several servers.
pub async fn connect_nats(settings: &Settings) -> anyhow::Result<async_nats::Client> {
    let (options, servers) = nats_options(settings).await?;
    options
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {}", settings.connection.nats_url))
}

/// As [`connect_nats`], but returns at once and keeps trying in the background while no
/// server answers: for a process that must serve before NATS is up (`sop mcp` under a host).
pub async fn connect_nats_in_background(settings: &Settings) -> anyhow::Result<async_nats::Client> {
    let (options, servers) = nats_options(settings).await?;
    options
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {}", settings.connection.nats_url))
}

async fn nats_options(
    settings: &Settings,
) -> anyhow::Result<(async_nats::ConnectOptions, Vec<async_nats::ServerAddr>)> {
    let mut options = async_nats::ConnectOptions::new().name("sop");
    if let Some(creds) = &settings.connection.nats_creds {
        options = async_nats::ConnectOptions::with_credentials_file(creds)
            .await
            .with_context(|| format!("reading NATS credentials {}", creds.display()))?
            .name("sop");
    }
    if let (Some(user), Some(password)) = (
        &settings.connection.nats_user,
        &settings.connection.nats_password,
    ) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(seed) = &settings.connection.nats_nkey {
        let user = crate::wire::signature::signer(seed)
            .context("SOP_NATS_NKEY is not a NATS user seed (SU…)")?
            .public_key();
        options = options
            .nkey(seed.trim().to_owned())
            .custom_inbox_prefix(crate::bus::roles::inbox_prefix(&user));
    }
    let servers = settings
        .connection
        .nats_url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the NATS URL {}", settings.connection.nats_url))?;
    Ok((options, servers))
}

/// Refuses options the connected server would silently ignore (a 2.9 server accepts unknown
/// stream fields without applying them).
pub fn check_server(settings: &Settings, info: &async_nats::ServerInfo) -> anyhow::Result<()> {
    let mut parts = info
        .version
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if settings.worker.stream_compression && version < (2, 10) {
        anyhow::bail!(
            "stream_compression needs nats-server 2.10 or newer; the server is {} and would ignore it",
            info.version
        );
    }
    if !info.jetstream {
        anyhow::bail!(
            "nats-server {} runs without JetStream: start it with -js",
            info.version
        );
    }
    Ok(())
}

pub async fn connect_db(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = &settings.worker.database_url;
    store::connect(url, settings.worker.db_max_connections)
        .await
        .map_err(|e| {
            // The error's own text once (its source repeats it), then what to do about it.
            let error = e.to_string();
            let hint = database_hint(url, &error);
            anyhow::anyhow!(
                "connecting to the database at {}: {error}{hint}",
                redact(url)
            )
        })
}

/// What to do about the usual first failures to reach a database, said once with the error.
fn database_hint(url: &str, error: &str) -> String {
    let hint = if url.starts_with("sqlite:") {
        if error.contains("unable to open database file") || error.contains("code: 14") {
            "; does its folder exist and may this user write there? A new file needs `?mode=rwc` \
             on the URL (sqlite://path/to/sop.db?mode=rwc)"
        } else {
            ""
        }
    } else if error.contains("Connection refused") || error.contains("pool timed out") {
        "; is PostgreSQL running and listening on that host and port?"
    } else if error.contains("does not exist") {
        "; create the database first (createdb NAME), or name one that exists"
    } else if error.contains("password authentication failed") {
        "; check the user and password in the URL"
    } else {
        ""
    };
    hint.to_owned()
}

/// Hides a password in a database URL for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A running worker. Dropping it does not stop it: call [`Running::stop`].
pub struct Running {
    pub db: DatabaseConnection,
    /// Creates the events stream of a team registered through the database directly.
    pub team_streams: streams::TeamStreams,
    pub nats: async_nats::Client,
    pub subjects: Subjects,
    /// Where /metrics, /healthz and /readyz are served, when enabled.
    pub http: Option<SocketAddr>,
    pub readiness: metrics::Readiness,
    shutdown: watch::Sender<bool>,
    queries: Option<async_nats::service::Service>,
    consumer: JoinHandle<()>,
    relay: JoinHandle<()>,
    deadline: Duration,
    halted: bool,
}

impl Running {
    pub fn client(&self) -> Client {
        Client::new(self.nats.clone(), self.subjects.clone())
    }

    /// Stops pulling, lets in-flight commands finish, flushes the outbox, and returns within
    /// the shutdown deadline. Whatever is still unacknowledged then is redelivered to another
    /// worker later (and answered from the inbox if it had committed): nothing is lost.
    /// The connections stay open (tests keep using them); [`Running::stop`] also closes.
    pub async fn halt(&mut self) {
        self.halt_by(tokio::time::Instant::now() + self.deadline)
            .await;
    }

    async fn halt_by(&mut self, until: tokio::time::Instant) {
        if self.halted {
            return;
        }
        self.halted = true;
        if let Some(queries) = self.queries.take() {
            // Stopping the service writes to the server: during an outage it would wait for ever.
            let _ = tokio::time::timeout_at(until, queries.stop()).await;
        }
        let _ = self.shutdown.send(true);
        let (consumer, relay) = (&mut self.consumer, &mut self.relay);
        let drained = tokio::time::timeout_at(until, async {
            let _ = consumer.await;
            let _ = relay.await;
        })
        .await;
        if drained.is_err() {
            warn!(deadline = ?self.deadline, "shutdown deadline reached; leaving the rest to redelivery");
        }
    }

    /// As [`Running::halt`], then flushes what the connection still holds, all within the
    /// deadline whatever NATS does (a flush waits for the server, which an outage never brings).
    pub async fn stop(mut self) {
        let until = tokio::time::Instant::now() + self.deadline;
        self.halt_by(until).await;
        if tokio::time::timeout_at(until, self.nats.flush())
            .await
            .is_err()
        {
            warn!("NATS did not answer the last flush; stopping without it");
        }
        info!("worker stopped");
    }
}

pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    settings.validate()?;
    let db = connect_db(settings).await?;
    start_on(settings, db).await
}

/// The streams and the worker's consumer, created as the settings say where missing.
pub async fn ensure_streams(
    settings: &Settings,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<async_nats::jetstream::consumer::PullConsumer> {
    streams::ensure(
        js,
        &Subjects::new(&settings.connection.subject_prefix),
        &stream_options(settings),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating JetStream streams: {e}"))
}

/// The stream options the worker settings choose.
pub fn stream_options(settings: &Settings) -> streams::StreamOptions {
    streams::StreamOptions {
        replicas: settings.worker.stream_replicas,
        compression: settings.worker.stream_compression,
        ack_wait: Some(Duration::from_secs(settings.worker.ack_wait_secs)),
    }
}

/// As [`start`], on a database connection the caller opened from the same settings (e.g. one
/// whose statements a test observes).
pub async fn start_on(settings: &Settings, db: DatabaseConnection) -> anyhow::Result<Running> {
    store::migrate(&db).await.context("running migrations")?;
    let nats = connect_nats(settings).await?;
    check_server(settings, &nats.server_info())?;
    let js = async_nats::jetstream::new(nats.clone());
    let subjects = Subjects::new(&settings.connection.subject_prefix);
    let consumer = ensure_streams(settings, &js).await?;
    let team_streams =
        streams::TeamStreams::new(js.clone(), subjects.clone(), stream_options(settings));
    for team in store::teams::names(&db)
        .await
        .context("listing the teams")?
    {
        team_streams
            .ensure(&team)
            .await
            .map_err(|e| anyhow::anyhow!("creating the events stream of team {team}: {e}"))?;
    }
    let signing = Signing::required(settings.worker.require_signatures);
    let queries = queries::start(&nats, db.clone(), &subjects, signing, team_streams.clone())
        .await
        .map_err(|e| anyhow::anyhow!("starting the query service: {e}"))?;
    let (shutdown, stop) = watch::channel(false);
    let readiness = metrics::Readiness::default();
    metrics::handle();
    tokio::spawn(metrics::monitor(
        db.clone(),
        nats.clone(),
        consumer.clone(),
        readiness.clone(),
        Duration::from_secs(2),
        stop.clone(),
    ));
    if let Some(seed) = &settings.worker.audit_seed {
        let key = crate::wire::signature::signer(seed).context("SOP_AUDIT_SEED")?;
        tokio::spawn(crate::bus::audit::checkpoints(
            db.clone(),
            js.clone(),
            subjects.clone(),
            key,
            Duration::from_secs(settings.worker.checkpoint_secs),
            stop.clone(),
        ));
    }
    let http = match settings.worker.http_addr.as_str() {
        "" => None,
        addr => Some(
            http::start(addr, readiness.clone(), stop.clone())
                .await
                .with_context(|| format!("serving HTTP on {addr}"))?,
        ),
    };
    let handoff = Arc::new(relay::Handoff::default());
    let ctx = Arc::new(worker::WorkerContext {
        pipeline: crate::application::Pipeline::new(db.clone(), subjects.clone(), signing),
        nats: nats.clone(),
        relay: handoff.clone(),
    });
    let consumer = tokio::spawn(worker::run(
        ctx,
        consumer,
        // A transaction without a connection would only wait for one: fewer, larger groups.
        settings.worker.concurrency.min(store::pool_size(
            &settings.worker.database_url,
            settings.worker.db_max_connections,
        ) as usize),
        settings.worker.batch_max,
        stop.clone(),
    ));
    let relay = tokio::spawn(relay::run(
        db.clone(),
        js,
        nats.clone(),
        handoff,
        stop,
        settings.shutdown_timeout(),
    ));
    info!(
        commands = %subjects.commands_stream(),
        events = %format!("{}<team>", subjects.team_events_streams()),
        outcomes = %subjects.outcomes_stream(),
        prefix = subjects.prefix(),
        nats = %settings.connection.nats_url,
        database = %redact(&settings.worker.database_url),
        "worker started"
    );
    Ok(Running {
        db,
        team_streams,
        nats,
        subjects,
        http,
        readiness,
        shutdown,
        queries: Some(queries),
        consumer,
        relay,
        deadline: settings.shutdown_timeout(),
        halted: false,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn options_a_2_9_server_would_ignore_are_refused() {
        let mut settings = crate::config::Settings::local();
        settings.worker.stream_compression = true;
        let server = |version: &str| async_nats::ServerInfo {
            version: version.into(),
            jetstream: true,
            ..Default::default()
        };
        assert!(super::check_server(&settings, &server("2.9.10")).is_err());
        assert!(super::check_server(&settings, &server("2.10.3")).is_ok());
        settings.worker.stream_compression = false;
        assert!(super::check_server(&settings, &server("2.9.10")).is_ok());
        let plain = async_nats::ServerInfo {
            version: "2.9.10".into(),
            ..Default::default()
        };
        assert!(super::check_server(&settings, &plain).is_err());
    }

    #[tokio::test]
    async fn a_database_that_cannot_be_opened_is_said_with_what_to_do() {
        let mut settings = crate::config::Settings::local();
        settings.worker.database_url = "sqlite:///no/such/folder/sop.db?mode=rwc".into();
        let e = super::connect_db(&settings).await.unwrap_err().to_string();
        assert!(e.contains("unable to open database file"), "{e}");
        assert!(e.contains("does its folder exist"), "{e}");
        assert_eq!(e.matches("unable to open").count(), 1, "said once: {e}");
        assert!(
            super::database_hint("postgres://h/db", "database \"db\" does not exist")
                .contains("createdb")
        );
        assert!(super::database_hint("postgres://h/db", "pool timed out").contains("running"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://sop.db"), "sqlite://sop.db");
    }
}

//! Composition root: connect, migrate, ensure streams, spawn the consumer and the relay.
//! `sop worker` and the integration tests start the service through [`start`].

use std::sync::Arc;

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::bus::{client::Client, queries, relay, streams, worker};
use crate::config::Settings;
use crate::store;
use crate::wire::subjects::Subjects;

pub async fn connect_nats(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("sop")
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

pub async fn connect_db(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    store::connect(&settings.database_url, settings.db_max_connections)
        .await
        .with_context(|| {
            format!(
                "connecting to the database at {}",
                redact(&settings.database_url)
            )
        })
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
    pub nats: async_nats::Client,
    pub subjects: Subjects,
    shutdown: watch::Sender<bool>,
    queries: async_nats::service::Service,
    consumer: JoinHandle<()>,
    relay: JoinHandle<()>,
}

impl Running {
    pub fn client(&self) -> Client {
        Client::new(self.nats.clone(), self.subjects.clone())
    }

    /// Stops pulling, lets in-flight commands finish, flushes the outbox, and returns.
    pub async fn stop(self) {
        let _ = self.queries.stop().await;
        let _ = self.shutdown.send(true);
        let _ = self.consumer.await;
        let _ = self.relay.await;
        let _ = self.nats.flush().await;
    }
}

pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let db = connect_db(settings).await?;
    store::migrate(&db).await.context("running migrations")?;
    let nats = connect_nats(&settings.nats_url).await?;
    let js = async_nats::jetstream::new(nats.clone());
    let subjects = Subjects::new(&settings.subject_prefix);
    let consumer = streams::ensure(&js, &subjects).await.map_err(|e| {
        anyhow::anyhow!("creating JetStream streams (is the server started with -js?): {e}")
    })?;
    let queries = queries::start(&nats, db.clone(), &subjects)
        .await
        .map_err(|e| anyhow::anyhow!("starting the query service: {e}"))?;
    let (shutdown, stop) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let ctx = Arc::new(worker::WorkerContext {
        db: db.clone(),
        nats: nats.clone(),
        subjects: subjects.clone(),
        relay: wake.clone(),
    });
    let consumer = tokio::spawn(worker::run(
        ctx,
        consumer,
        settings.concurrency.max(1),
        stop.clone(),
    ));
    let relay = tokio::spawn(relay::run(
        db.clone(),
        js,
        nats.clone(),
        wake,
        stop,
        settings.shutdown_grace(),
    ));
    info!(streams = %subjects.commands_stream(), prefix = subjects.prefix(), "worker started");
    Ok(Running {
        db,
        nats,
        subjects,
        shutdown,
        queries,
        consumer,
        relay,
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
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://sop.db"), "sqlite://sop.db");
    }
}

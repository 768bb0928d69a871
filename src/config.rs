//! Settings, read once: flags override environment variables, which override defaults that
//! work on a developer machine (NATS on localhost, an SQLite file in the working directory).

use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// NATS server URL.
    #[arg(
        long,
        env = "SOP_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,

    /// Database URL: `sqlite://path?mode=rwc` (embedded default) or `postgres://user@host/db`.
    #[arg(
        long,
        env = "SOP_DATABASE_URL",
        default_value = "sqlite://sop.db?mode=rwc",
        global = true
    )]
    pub database_url: String,

    /// Prefix for every subject and stream (namespaces a shared bus), e.g. `acme`.
    #[arg(long, env = "SOP_SUBJECT_PREFIX", default_value = "", global = true)]
    pub subject_prefix: String,

    /// Commands processed at once by this worker.
    #[arg(long, env = "SOP_CONCURRENCY", default_value_t = 16, global = true)]
    pub concurrency: usize,

    /// Database pool size (SQLite always uses one connection).
    #[arg(
        long,
        env = "SOP_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,

    /// On shutdown, how long the relay may keep publishing what is committed.
    #[arg(
        long,
        env = "SOP_SHUTDOWN_GRACE_SECS",
        default_value_t = 10,
        global = true
    )]
    pub shutdown_grace_secs: u64,
}

impl Settings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// Settings with the defaults above (used by tests, which override fields).
    pub fn local() -> Settings {
        Settings {
            nats_url: "nats://127.0.0.1:4222".into(),
            database_url: "sqlite://sop.db?mode=rwc".into(),
            subject_prefix: String::new(),
            concurrency: 16,
            db_max_connections: 16,
            shutdown_grace_secs: 10,
        }
    }
}

//! Settings, read once into one typed struct. Precedence, lowest first: built-in defaults
//! (they work on a developer machine: NATS on localhost, an SQLite file in the working
//! directory), an optional YAML/JSON file (`--config` / `SOP_CONFIG`), environment variables,
//! flags. [`Settings::validate`] refuses a configuration that cannot work, naming the setting.
//!
//! Each setting is declared once, as a clap flag with its environment variable and default:
//! clap lays defaults, environment and flags and tells which gave each value; the file is laid
//! under the last two by name. A layering crate (figment) would read the environment a second
//! time, beside clap, and the flags would still have to be declared for clap.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};

/// The settings every subcommand needs to reach the bus, so they are global flags.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionSettings {
    /// YAML or JSON file with any of the settings, worker settings included (snake_case keys).
    #[arg(help_heading = "Connection", long, env = "SOP_CONFIG", global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// NATS server URL(s), comma separated for a cluster.
    #[arg(
        help_heading = "Connection",
        long,
        env = "SOP_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,

    /// NATS credentials file (JWT + nkey seed).
    #[arg(
        help_heading = "Connection",
        long,
        env = "SOP_NATS_CREDS",
        global = true
    )]
    pub nats_creds: Option<PathBuf>,

    /// NATS user (with --nats-password).
    #[arg(
        help_heading = "Connection",
        long,
        env = "SOP_NATS_USER",
        global = true
    )]
    pub nats_user: Option<String>,

    /// NATS password.
    #[arg(
        help_heading = "Connection",
        long,
        env = "SOP_NATS_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub nats_password: Option<String>,

    /// NATS nkey seed (`SU…`) to sign in as the system's own NATS user (its `nats_key`, in a
    /// deployment whose teams are isolated on the bus); the inbox prefix becomes
    /// `_INBOX.<its public key>`, the one that user may read.
    #[arg(
        help_heading = "Connection",
        long,
        env = "SOP_NATS_NKEY",
        global = true,
        hide_env_values = true
    )]
    pub nats_nkey: Option<String>,

    /// Prefix for every subject and stream (namespaces a shared bus), e.g. `acme`.
    #[arg(
        help_heading = "Connection",
        long,
        env = "SOP_SUBJECT_PREFIX",
        default_value = "",
        global = true
    )]
    pub subject_prefix: String,
}

/// The settings only a worker reads: flags of the subcommands that run, migrate, measure or
/// show one (`worker`, `up`, `migrate`, `config`, and `sop-bench`), so the others' help stays short.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSettings {
    /// Database URL: `sqlite://path?mode=rwc` (embedded default) or `postgres://user@host/db`.
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_DATABASE_URL",
        default_value = "sqlite://sop.db?mode=rwc",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Command transactions in flight at once in this worker (at most the database pool size:
    /// with SQLite, one). Few are enough: each commits every command waiting when it begins,
    /// and fewer, larger groups cost the database less per command than many small ones.
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,

    /// Most commands committed together in one transaction (group commit): waiting commands
    /// share one commit, so throughput is no longer bounded by the commit rate. 1 turns it off.
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_BATCH_MAX",
        default_value_t = 32
    )]
    pub batch_max: usize,

    /// Database pool size (SQLite always uses one connection).
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub db_max_connections: u32,

    /// Replicas of the streams the worker creates (3 on a 3-node JetStream cluster).
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_STREAM_REPLICAS",
        default_value_t = 1
    )]
    pub stream_replicas: usize,

    /// Compress the events and outcomes streams with S2 (needs nats-server 2.10 or newer).
    #[arg(help_heading = "Worker settings", long, env = "SOP_STREAM_COMPRESSION")]
    pub stream_compression: bool,

    /// Seconds a pulled command may stay unacknowledged before JetStream redelivers it: after
    /// a worker crash, its commands wait this long. Applies when the consumer is created.
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_ACK_WAIT_SECS",
        default_value_t = 30
    )]
    pub ack_wait_secs: u64,

    /// Address of the HTTP endpoints (/metrics, /healthz, /readyz); empty disables them.
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_HTTP_ADDR",
        default_value = "127.0.0.1:9464"
    )]
    pub http_addr: String,

    /// On SIGTERM/SIGINT: the deadline to finish in-flight commands and flush the outbox.
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub shutdown_timeout_secs: u64,

    /// Refuse every command and query that its system has not signed, and every team whose
    /// systems do not all register a key: no agent acts as another system, in any team.
    #[arg(help_heading = "Worker settings", long, env = "SOP_REQUIRE_SIGNATURES")]
    pub require_signatures: bool,

    /// NATS nkey seed (`SU…`, from `sop nkey-generate`) the worker signs each team's chain
    /// checkpoints with, published on `sop.checkpoint.<team>` (stream SOP_CHECKPOINTS): a copy
    /// kept elsewhere proves that history was not rewritten later. None: no checkpoints.
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_AUDIT_SEED",
        hide_env_values = true
    )]
    pub audit_seed: Option<String>,

    /// Seconds between checkpoints of the chains that moved.
    #[arg(
        help_heading = "Worker settings",
        long,
        env = "SOP_CHECKPOINT_SECS",
        default_value_t = 60
    )]
    pub checkpoint_secs: u64,
}

impl WorkerSettings {
    /// The worker settings from the environment and the built-in defaults alone, for a
    /// subcommand that takes none as flags; with the matches that tell where each came from.
    fn from_environment() -> Result<(WorkerSettings, clap::ArgMatches), ConfigError> {
        use clap::{Args, FromArgMatches};
        WorkerSettings::augment_args(clap::Command::new("sop"))
            .try_get_matches_from(["sop"])
            .and_then(|m| Ok((WorkerSettings::from_arg_matches(&m)?, m)))
            .map_err(|e| {
                let shown = e.render().to_string();
                let first = shown.lines().next().unwrap_or_default();
                ConfigError::Environment(first.trim_start_matches("error: ").to_owned())
            })
    }
}

/// Every setting, connection and worker alike, in one value: what the rest of the code reads.
/// Each setting is declared once, as its flag: the flags, the environment and the file are
/// laid into this by name ([`Settings::resolve`]).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    #[serde(flatten)]
    pub connection: ConnectionSettings,
    #[serde(flatten)]
    pub worker: WorkerSettings,

    /// Where each setting's value came from (`sop config` shows it): `sop up` picks local
    /// values for the defaulted ones (its own data folder, a bus it can start), never for
    /// chosen ones.
    #[serde(skip)]
    pub sources: BTreeMap<String, Source>,
}

/// Where a setting's value came from, weakest first: each overrides those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Source {
    Default,
    File,
    Environment,
    Flag,
}

impl Source {
    fn of(given: Option<ValueSource>) -> Source {
        match given {
            Some(ValueSource::EnvVariable) => Source::Environment,
            Some(ValueSource::CommandLine) => Source::Flag,
            _ => Source::Default,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Every setting's name, as clap, the file and [`Settings::is_default`] spell it: the ids of
/// the connection and worker flags (`config` names the file, not a setting).
fn names() -> Vec<String> {
    use clap::Args;
    let flags =
        WorkerSettings::augment_args(ConnectionSettings::augment_args(clap::Command::new("sop")));
    flags
        .get_arguments()
        .map(|arg| arg.get_id().as_str().to_owned())
        .filter(|id| id != "config")
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {message}")]
    File { path: String, message: String },
    #[error("setting {setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
    /// A worker setting's environment variable that does not parse, met by a subcommand
    /// without worker flags (clap reports it itself where the flags exist).
    #[error("{0}")]
    Environment(String),
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// The settings a file gives, by name: a name that is not a setting is refused.
fn read_file(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let given: Option<serde_json::Map<String, serde_json::Value>> =
        serde_yaml_ng::from_str(&text).map_err(|e| err(e.to_string()))?;
    let given = given.unwrap_or_default();
    let known = names();
    if let Some(unknown) = given.keys().find(|k| !known.contains(k)) {
        return Err(err(format!(
            "unknown setting `{unknown}`, expected one of {}",
            known.join(", ")
        )));
    }
    Ok(given)
}

impl Settings {
    /// Assembles the settings from the parsed flags: the connection settings, and the worker
    /// settings of the subcommand, or, for a subcommand without them, those of the environment
    /// and the defaults. Then lays the config file (if any) under environment and flags: a
    /// value from the file is used only where the setting still has its built-in default.
    pub fn resolve(
        connection: ConnectionSettings,
        worker: Option<WorkerSettings>,
        matches: &clap::ArgMatches,
    ) -> Result<Settings, ConfigError> {
        let (worker, environment) = match worker {
            Some(worker) => (worker, None),
            None => {
                let (worker, matches) = WorkerSettings::from_environment()?;
                (worker, Some(matches))
            }
        };
        let mut sources: BTreeMap<String, Source> = names()
            .into_iter()
            .map(|id| {
                let given = source(matches, &id)
                    .or_else(|| environment.as_ref().and_then(|m| source(m, &id)));
                (id, Source::of(given))
            })
            .collect();
        let mut values = by_name(&connection, &worker);
        let path = connection.config.clone();
        if let Some(path) = &path {
            // The file fills only what no flag or environment variable gave.
            for (name, value) in read_file(path)? {
                if let Some(from) = sources.get_mut(&name)
                    && *from == Source::Default
                {
                    *from = Source::File;
                    values[name.as_str()] = value;
                }
            }
        }
        let fault = |e: serde_path_to_error::Error<serde_json::Error>| ConfigError::File {
            path: path
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
                .to_string(),
            message: format!("{}: {}", e.path(), e.inner()),
        };
        // Each part read apart, so that a value of the wrong type is named by its setting.
        let mut connection: ConnectionSettings =
            serde_path_to_error::deserialize(&values).map_err(fault)?;
        let worker: WorkerSettings = serde_path_to_error::deserialize(&values).map_err(fault)?;
        connection.config = path;
        let settings = Settings {
            connection,
            worker,
            sources,
        };
        Ok(settings)
    }

    /// Refuses settings that cannot work, naming the setting at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for url in self.connection.nats_url.split(',') {
            let url = url.trim();
            let ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|s| url.starts_with(s))
                || (!url.contains("://") && !url.is_empty());
            if !ok {
                return Err(invalid(
                    "nats_url",
                    format!("`{url}` is not a NATS URL (nats://host:port)"),
                ));
            }
        }
        if !(self.worker.database_url.starts_with("sqlite:")
            || self.worker.database_url.starts_with("postgres://")
            || self.worker.database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite: or postgres://",
            ));
        }
        if self.worker.concurrency == 0 || self.worker.concurrency > 1024 {
            return Err(invalid("concurrency", "must be between 1 and 1024"));
        }
        if self.worker.batch_max == 0 || self.worker.batch_max > crate::bus::worker::MAX_PULL {
            return Err(invalid(
                "batch_max",
                format!("must be between 1 and {}", crate::bus::worker::MAX_PULL),
            ));
        }
        if self.worker.db_max_connections == 0 {
            return Err(invalid("db_max_connections", "must be at least 1"));
        }
        if !(1..=5).contains(&self.worker.stream_replicas) {
            return Err(invalid("stream_replicas", "must be between 1 and 5"));
        }
        if self.worker.ack_wait_secs == 0 {
            return Err(invalid("ack_wait_secs", "must be at least 1"));
        }
        if !self.worker.http_addr.is_empty() && self.worker.http_addr.parse::<SocketAddr>().is_err()
        {
            return Err(invalid(
                "http_addr",
                format!(
                    "`{}` is not host:port (e.g. 0.0.0.0:9464)",
                    self.worker.http_addr
                ),
            ));
        }
        if self.connection.nats_user.is_some() != self.connection.nats_password.is_some() {
            return Err(invalid(
                "nats_user",
                "nats_user and nats_password go together",
            ));
        }
        let ways = [
            self.connection.nats_creds.is_some(),
            self.connection.nats_user.is_some(),
            self.connection.nats_nkey.is_some(),
        ];
        if ways.iter().filter(|&&w| w).count() > 1 {
            return Err(invalid(
                "nats_creds",
                "sign in to NATS one way: a credentials file, a user, or an nkey",
            ));
        }
        if let Some(seed) = &self.worker.audit_seed
            && crate::wire::signature::signer(seed).is_err()
        {
            return Err(invalid(
                "audit_seed",
                "is not a NATS user seed (SU…): make one with `sop nkey-generate`",
            ));
        }
        if self.worker.checkpoint_secs == 0 {
            return Err(invalid("checkpoint_secs", "must be at least 1"));
        }
        if let Some(seed) = &self.connection.nats_nkey
            && crate::wire::signature::signer(seed).is_err()
        {
            return Err(invalid(
                "nats_nkey",
                "is not a NATS user seed (SU…): make one with `sop nkey-generate`",
            ));
        }
        if let Some(creds) = &self.connection.nats_creds
            && !creds.exists()
        {
            return Err(invalid(
                "nats_creds",
                format!("{} does not exist", creds.display()),
            ));
        }
        let prefix_ok = self
            .connection
            .subject_prefix
            .trim_end_matches('.')
            .split('.')
            .all(|t| {
                !t.contains(['*', '>', ' '])
                    && (self.connection.subject_prefix.is_empty() || !t.is_empty())
            });
        if !prefix_ok {
            return Err(invalid(
                "subject_prefix",
                "must be dot-separated tokens without spaces or wildcards",
            ));
        }
        Ok(())
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.worker.shutdown_timeout_secs)
    }

    /// Whether `setting` kept its built-in default (see [`Settings::sources`]).
    pub fn is_default(&self, setting: &str) -> bool {
        self.sources
            .get(setting)
            .is_none_or(|from| *from == Source::Default)
    }

    pub fn is_sqlite(&self) -> bool {
        self.worker.database_url.starts_with("sqlite:")
    }

    /// The effective settings with secrets hidden, and where each came from (`sop config`).
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["database_url"] = crate::app::redact(&self.worker.database_url).into();
        if self.connection.nats_password.is_some() {
            v["nats_password"] = "***".into();
        }
        if self.connection.nats_nkey.is_some() {
            v["nats_nkey"] = "***".into();
        }
        if self.worker.audit_seed.is_some() {
            v["audit_seed"] = "***".into();
        }
        v["nats_url"] = self
            .connection
            .nats_url
            .split(',')
            .map(crate::app::redact)
            .collect::<Vec<_>>()
            .join(",")
            .into();
        v["sources"] = serde_json::to_value(&self.sources).unwrap_or_default();
        v
    }

    /// The flags' defaults, whatever the environment says (tests override fields).
    pub fn local() -> Settings {
        use clap::{Args, FromArgMatches};
        let flags = WorkerSettings::augment_args(ConnectionSettings::augment_args(
            clap::Command::new("sop"),
        ))
        .mut_args(|arg| arg.env(None));
        let parts = flags.try_get_matches_from(["sop"]).and_then(|matches| {
            let connection = ConnectionSettings::from_arg_matches(&matches)?;
            Ok((connection, WorkerSettings::from_arg_matches(&matches)?))
        });
        let (connection, worker) = parts.unwrap_or_else(|e| unreachable!("defaults parse: {e}"));
        Settings {
            connection,
            worker,
            sources: names().into_iter().map(|n| (n, Source::Default)).collect(),
        }
    }
}

/// The flags' values as one object, by setting name.
fn by_name(connection: &ConnectionSettings, worker: &WorkerSettings) -> serde_json::Value {
    let mut values = serde_json::to_value(connection).unwrap_or_default();
    if let (Some(all), serde_json::Value::Object(more)) = (
        values.as_object_mut(),
        serde_json::to_value(worker).unwrap_or_default(),
    ) {
        all.extend(more);
    }
    values
}

/// Where a setting's value came from, looked up from the deepest subcommand up: clap records
/// global arguments there, and the worker's in the subcommand that takes them.
fn source(matches: &clap::ArgMatches, id: &str) -> Option<ValueSource> {
    let mut chain = vec![matches];
    while let Some((_, sub)) = chain[chain.len() - 1].subcommand() {
        chain.push(sub);
    }
    // Asking a level that does not define `id` would panic in debug builds.
    chain
        .into_iter()
        .rev()
        .filter(|m| m.ids().any(|known| known == id))
        .find_map(|m| m.value_source(id))
}

#[cfg(test)]
mod tests;

//! The `sop` command line: the worker, migrations, team registration, every command, every
//! query, and the event stream, for people (tables) and scripts (`--json`, exit codes).
//!
//! Exit codes: 0 done; 1 usage or local error; 2 rejected / refused; 3 NATS unreachable or no
//! answer in time; 4 not found.

mod admin;
mod archive;
mod ctx;
mod events;
mod policy;
mod procedure;
mod render;
mod run;
mod send;
mod team;
mod token;
mod up;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::app;
use crate::bus::contract;
use crate::config::{ConnectionSettings, Settings, WorkerSettings};
use crate::store;
use crate::wire::command::CommandName;
use ctx::EXIT_NOT_FOUND;
pub(crate) use ctx::{Ctx, Exit};
use render::fields;

#[derive(Parser)]
#[command(
    name = "sop",
    version,
    about = "Standard Operating Procedures for VSM agents, over NATS"
)]
pub struct Cli {
    #[command(flatten)]
    connection: ConnectionSettings,
    /// Every setting, assembled by [`Cli::load`] with the subcommand's worker settings.
    #[arg(skip = Settings::local())]
    pub settings: Settings,
    /// The acting system, for commands and queries: its id, or its name within `--team`
    /// (`System1/alpha`; `System3`, `System4`, `System5` when the team has one of that type).
    #[arg(long, env = "SOP_ACTOR", global = true, help_heading = "Acting system")]
    actor: Option<String>,
    /// The acting system's team, when `--actor` is a name; also the team `events` follows.
    #[arg(long, env = "SOP_TEAM", global = true, help_heading = "Acting system")]
    team: Option<String>,
    /// The acting system's NATS user seed (`SU…`): commands are signed with it.
    #[arg(
        long,
        env = "SOP_NKEY_SEED",
        global = true,
        hide_env_values = true,
        help_heading = "Acting system"
    )]
    nkey_seed: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,
    /// Seconds to wait for an outcome or an answer.
    #[arg(long, default_value_t = 30, global = true, help_heading = "Output")]
    timeout: u64,
    /// Log as JSON lines.
    #[arg(long, env = "SOP_LOG_JSON", global = true, help_heading = "Output")]
    pub log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the worker: consume commands, apply them, publish events, answer queries.
    Worker(WorkerSettings),
    /// Try the service on this machine: data in ./.sop, a JetStream server found or started
    /// (nats-server from PATH), the next commands printed; then serve as `worker` does.
    Up(up::UpArgs),
    /// Apply database migrations and exit.
    Migrate(WorkerSettings),
    /// Register teams and show their systems (operators; `sop.admin.team.apply`, `sop.query.team.get`).
    Team {
        #[command(subcommand)]
        command: team::TeamCmd,
    },
    /// Bearer tokens for `sop mcp --http`: issue one for a system, revoke, list (operators;
    /// `sop.admin.token.*`).
    Token {
        #[command(subcommand)]
        command: token::TokenCmd,
    },
    /// The team's execution policy: show it, or set it (System5).
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCmd,
    },
    /// Procedure commands and queries.
    Procedure {
        #[command(subcommand)]
        command: procedure::ProcedureCmd,
    },
    /// Task commands, and a system's work list.
    Task {
        #[command(subcommand)]
        command: run::TaskCmd,
    },
    /// Run commands and queries.
    Run {
        #[command(subcommand)]
        command: run::RunCmd,
    },
    /// Initiative commands and queries.
    Initiative {
        #[command(subcommand)]
        command: run::InitiativeCmd,
    },
    /// The audit trail of a series or a run: every event, actor and time (`audit verify`: a
    /// team's event chain checked in the database and its stream).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Audit {
        #[command(subcommand)]
        command: Option<run::AuditCmd>,
        #[command(flatten)]
        trail: run::AuditArgs,
    },
    /// The outcome of a command, by its id.
    Outcome {
        /// The id the command was sent with (`--command-id`, or the one printed on a timeout).
        command_id: Uuid,
    },
    /// Messages given up on, newest first (operators; `sop.admin.dead_letter.list`).
    DeadLetters {
        /// At most this many (the newest).
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Outbox messages the relay parked because the server refused them for good
    /// (operators; `sop.admin.outbox.parked`, `sop.admin.outbox.republish`), and stored
    /// messages listed again to rebuild a stream (`relist`, on the database).
    Outbox {
        #[command(subcommand)]
        command: admin::OutboxCmd,
    },
    /// Retention: archive history older than a horizon and remove it from the database, or
    /// replay an archive into rebuilt streams (operators; on the database and the bus).
    Archive {
        #[command(subcommand)]
        command: archive::ArchiveCmd,
    },
    /// Send any command with a JSON/YAML payload (the generic form of the commands above).
    Send {
        /// Command name, e.g. `procedure.draft`.
        command: String,
        #[command(flatten)]
        args: send::SendArgs,
    },
    /// Follow or replay events.
    Events {
        #[command(subcommand)]
        command: events::EventsCmd,
    },
    /// Make a NATS user key pair for a system: register the public key with `team apply`,
    /// give the seed to the agent (SOP_NKEY_SEED) to sign its commands.
    NkeyGenerate,
    /// Serve the acting system's commands and queries as MCP tools for an LLM agent (stdio, or
    /// Streamable HTTP with --http): bound to `--actor` (and `--team`), signed with its seed.
    Mcp(crate::mcp::McpArgs),
    /// Print the AsyncAPI contract (docs/asyncapi.yaml).
    Contract,
    /// Print the NATS users of a deployment whose teams are isolated on the bus, for the
    /// configured subject prefix (deploy/nats/roles.conf is the demo team's): one per system of
    /// the team files given, signed in with its nats_key.
    Roles {
        /// Team files (JSON, as `team apply` takes), each system with a `nats_key`.
        files: Vec<std::path::PathBuf>,
    },
    /// Print the effective configuration (file, environment, flags), secrets redacted.
    Config(WorkerSettings),
}

impl Cli {
    /// Parses the command line, then lays the config file (if any) under it.
    pub fn load() -> Result<Cli, String> {
        use clap::{CommandFactory, FromArgMatches};
        let matches = match with_payload_help(Cli::command()).try_get_matches() {
            Ok(matches) => matches,
            // Help and version: printed, exit 0.
            Err(e) if !e.use_stderr() => e.exit(),
            // A usage error exits 1, as the README says: clap's own 2 means "rejected" here.
            Err(e) => {
                let _ = e.print();
                std::process::exit(1);
            }
        };
        let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        let worker = match &cli.command {
            Cmd::Worker(w) | Cmd::Migrate(w) | Cmd::Config(w) => Some(w.clone()),
            Cmd::Outbox {
                command: admin::OutboxCmd::Relist { worker, .. },
            } => Some(worker.clone()),
            Cmd::Archive { command } => Some(command.worker().clone()),
            Cmd::Audit {
                command: Some(run::AuditCmd::Verify { worker, .. }),
                ..
            } => Some(worker.clone()),
            Cmd::Up(args) => Some(args.worker.clone()),
            _ => None,
        };
        cli.settings = Settings::resolve(cli.connection.clone(), worker, &matches)
            .map_err(|e| e.to_string())?;
        Ok(cli)
    }

    /// The worker logs its work; one-shot commands log only warnings unless RUST_LOG says more.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Cmd::Worker(_) => "info,sqlx=warn",
            // A person trying the service reads the next steps, not each migration.
            Cmd::Up(_) => "info,sqlx=warn,sea_orm_migration=warn",
            _ => "warn",
        }
    }
}

/// Each command's help ends with the payload fields it takes, from the contract; only when
/// help is asked for (generating the contract takes a moment).
fn with_payload_help(cli: clap::Command) -> clap::Command {
    let asks_help = std::env::args().any(|a| a == "-h" || a == "--help" || a == "help");
    if !asks_help {
        return cli;
    }
    let doc = contract::asyncapi();
    CommandName::ALL.iter().fold(cli, |cli, &name| {
        let Some((family, verb)) = name.as_str().split_once('.') else {
            return cli;
        };
        let fields = contract::payload_fields(&doc, name);
        let lines: Vec<String> = fields
            .iter()
            .map(|(field, kind, required, about)| {
                let need = if *required { "required" } else { "optional" };
                format!("  {field:<22} {kind:<14} {need:<9} {about}")
                    .trim_end()
                    .to_owned()
            })
            .collect();
        let help = format!("Payload fields ({name}):\n{}", lines.join("\n"));
        cli.mut_subcommand(family, |f| f.mut_subcommand(verb, |c| c.after_help(help)))
    })
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Exit> {
    let ctx = Ctx {
        settings: cli.settings,
        actor: cli.actor,
        team: cli.team,
        nkey_seed: cli.nkey_seed,
        json: cli.json,
        timeout: Duration::from_secs(cli.timeout),
        client: OnceCell::new(),
        actor_id: OnceCell::new(),
        names: OnceCell::new(),
    };
    match cli.command {
        Cmd::Worker(_) => {
            let running = app::start(&ctx.settings).await?;
            app::wait_for_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
        }
        Cmd::Up(args) => return up::run(&ctx.settings, args).await,
        Cmd::Migrate(_) => {
            let db = app::connect_db(&ctx.settings).await?;
            store::migrate(&db).await.context("running migrations")?;
            println!("migrations applied");
        }
        Cmd::Team { command } => return team::run(&ctx, command).await,
        Cmd::Token { command } => return token::run(&ctx, command).await,
        Cmd::Procedure { command } => return procedure::run(&ctx, command).await,
        Cmd::Policy { command } => return policy::run(&ctx, command).await,
        Cmd::Task { command } => return run::task(&ctx, command).await,
        Cmd::Run { command } => return run::run(&ctx, command).await,
        Cmd::Initiative { command } => return run::initiative(&ctx, command).await,
        Cmd::Audit {
            command: Some(run::AuditCmd::Verify { team, archives, .. }),
            ..
        } => return run::verify(&ctx, &team, &archives).await,
        Cmd::Audit {
            command: None,
            trail,
        } => return run::audit(&ctx, trail).await,
        Cmd::Mcp(args) => {
            // A host may start its servers before NATS too: the connection comes when it can.
            let client = ctx.client_in_background().await?;
            crate::mcp::run(client, ctx.actor.clone(), ctx.team.clone(), args).await?;
        }
        Cmd::Outcome { command_id } => {
            let outcome = ctx
                .client()
                .await?
                .outcome(command_id)
                .await?
                .ok_or_else(|| {
                    Exit(EXIT_NOT_FOUND, format!("no outcome for {command_id} (yet)"))
                })?;
            ctx.print(&outcome, render::outcome)?;
        }
        Cmd::DeadLetters { limit } => return admin::dead_letters(&ctx, limit).await,
        Cmd::Outbox { command } => return admin::outbox(&ctx, command).await,
        Cmd::Archive { command } => return archive::run(&ctx, command).await,
        Cmd::Send { command, args } => return send::run(&ctx, &command, args).await,
        Cmd::Events { command } => return events::run(&ctx, command).await,
        Cmd::Contract => print!("{}", contract::asyncapi_yaml()),
        Cmd::Roles { files } => print!("{}", team::roles(&ctx, &files)?),
        Cmd::NkeyGenerate => return team::nkey_generate(&ctx),
        Cmd::Config(_) => {
            let problem = ctx.settings.validate().err();
            let value = ctx.settings.redacted();
            ctx.print(&value, |v| {
                let pairs: Vec<(&str, String)> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| *k != "sources")
                    .map(|(k, value)| {
                        let shown = match value {
                            serde_json::Value::Null => "-".to_owned(),
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        let from = v["sources"][k].as_str().unwrap_or("default");
                        (k.as_str(), format!("{shown}  ({from})"))
                    })
                    .collect();
                fields(&pairs)
            })?;
            if let Some(problem) = problem {
                return Err(Exit(1, problem.to_string()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the parsed command line and maps failures to exit codes.
pub async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match dispatch(cli).await {
        Ok(code) => code,
        // A script that asked for JSON gets its errors as JSON too, on stderr.
        Err(Exit(code, message)) if json => {
            let error = json!({ "error": { "exit_code": code, "message": message } });
            eprintln!("{error}");
            ExitCode::from(code)
        }
        Err(Exit(code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument of every subcommand says what it is, in its own help.
    #[test]
    fn every_argument_is_described() {
        fn undescribed(command: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if !arg.is_hide_set() && arg.get_help().is_none() {
                    out.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                undescribed(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut missing = Vec::new();
        undescribed(&Cli::command(), "sop", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}

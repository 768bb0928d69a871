//! `sop mcp`: the Model Context Protocol server that lets an LLM agent use the SOPs as tools,
//! bound to one system of one team when it starts. Over stdio by default (a host starts it as
//! a child process), or Streamable HTTP (`--http ADDR`, path `/mcp`).

mod http;
pub mod schema;
mod server;
pub mod tools;

use std::time::Duration;

use clap::Args;
use rmcp::ServiceExt;

pub use server::{Given, Identity, NEXT_STEPS, SopServer, next_step};

use anyhow::{Context as _, anyhow};

use crate::bus::client::Client;
use schema::Dialect;
use tools::Options;

#[derive(Args, Debug, Clone)]
pub struct McpArgs {
    /// Serve Streamable HTTP on this address (`127.0.0.1:8765`, path `/mcp`) instead of stdio:
    /// for the system `--actor` names (loopback addresses only), or, without `--actor`, for
    /// any system whose bearer token a request carries (`sop token issue`).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Seconds one tool call may take at most, below the host's own timeout: a command with no
    /// outcome by then answers its `command_id` to look up later.
    #[arg(long, env = "SOP_MCP_CALL_BUDGET", value_name = "SECS", default_value_t = tools::DEFAULT_BUDGET.as_secs(),
          value_parser = clap::value_parser!(u64).range(3..=600))]
    call_budget: u64,
    /// The JSON Schema dialect of the tools' input schemas: `portable` (OpenAI, Anthropic,
    /// Gemini), or `openai-strict` for a host that declares its functions strict.
    #[arg(long, env = "SOP_MCP_SCHEMA_DIALECT", value_enum, default_value_t = Dialect::Portable)]
    schema_dialect: Dialect,
}

/// How long start-up waits for a worker to say who the system is, before serving anyway.
const BIND_AT_START: Duration = Duration::from_secs(3);

/// Serves the MCP tools on `client`: of the system `actor` names (an id, or a name within
/// `team`), or, over HTTP without one, of the system each request's token names.
pub async fn run(
    client: Client,
    actor: Option<String>,
    team: Option<String>,
    args: McpArgs,
) -> anyhow::Result<()> {
    let options = Options {
        dialect: args.schema_dialect,
        budget: Duration::from_secs(args.call_budget),
    };
    let Some(actor) = actor else {
        return match args.http {
            Some(addr) => {
                tracing::info!("serving MCP for the systems of the bearer tokens requests carry");
                http::serve(
                    SopServer::for_tokens(client, options),
                    &addr,
                    true,
                    stopped(),
                )
                .await
            }
            None => Err(anyhow!(
                "give the system to act as: --actor <system id>, or --team <team> --actor \
                 <name> (or SOP_ACTOR, SOP_TEAM); over --http, leave it out to serve every \
                 system by bearer token"
            )),
        };
    };
    let given = server::Given { actor, team };
    let server = SopServer::new(client, given, options);
    // A host may start its servers before the worker: then serve anyway, and each call
    // answers `unavailable` until a worker says who the system is.
    match tokio::time::timeout(BIND_AT_START, server.identity()).await {
        Ok(Ok(me)) => tracing::info!(system = %me.name, kind = me.kind.as_str(),
            team = %me.team, "serving MCP"),
        Ok(Err((code, why))) if code != "unavailable" => return Err(anyhow!(why)),
        _ => tracing::warn!(
            "no SOP worker answers yet: serving MCP, each call answers `unavailable` until one does"
        ),
    }
    match args.http {
        None => {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("MCP over stdio")?;
            tokio::select! {
                ended = running.waiting() => {
                    ended.context("MCP over stdio")?;
                }
                () = stopped() => {}
            }
        }
        Some(addr) => http::serve(server, &addr, false, stopped()).await?,
    }
    Ok(())
}

/// Ctrl-C or SIGTERM: how a host or an orchestrator asks the server to stop.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

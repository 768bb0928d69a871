//! `sop mcp`: the Model Context Protocol server that lets an LLM agent use the SOPs as tools,
//! bound to one system of one team when it starts. Over stdio by default (a host starts it as
//! a child process), or Streamable HTTP (`--http ADDR`, path `/mcp`).

mod server;
pub mod tools;

use std::process::ExitCode;

use clap::Args;
use rmcp::ServiceExt;
use serde_json::json;

pub use server::{Identity, SopServer};

use crate::cli::{Ctx, Exit};
use crate::wire::answer::TeamIdentity;
use crate::wire::query::QueryName;

#[derive(Args, Debug, Clone)]
pub struct McpArgs {
    /// Serve Streamable HTTP on this address (`127.0.0.1:8765`, path `/mcp`) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

/// The bound system: `--actor` (an id, or a name within `--team`), with its type and team.
async fn identity(ctx: &Ctx) -> Result<Identity, Exit> {
    let id = ctx.actor().await?;
    let team: TeamIdentity = ctx
        .client()
        .await?
        .query(QueryName::GetTeam, &json!({ "system_id": id }))
        .await?;
    let me = team
        .systems
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Exit(1, format!("system {id} is not in team {}", team.name)))?;
    Ok(Identity {
        id,
        name: me.name.clone(),
        kind: me.kind,
        team: team.name.clone(),
    })
}

pub async fn run(ctx: &Ctx, args: McpArgs) -> Result<ExitCode, Exit> {
    let me = identity(ctx).await?;
    let server = SopServer::new(ctx.client().await?.clone(), me.clone());
    tracing::info!(system = %me.name, kind = me.kind.as_str(), team = %me.team,
        tools = server.tools().len(), "serving MCP");
    match args.http {
        None => {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .map_err(|e| Exit(1, format!("MCP over stdio: {e}")))?;
            running
                .waiting()
                .await
                .map_err(|e| Exit(1, format!("MCP over stdio: {e}")))?;
        }
        Some(addr) => serve_http(server, &addr).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve_http(server: SopServer, addr: &str) -> Result<(), Exit> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Exit(1, format!("bind {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Exit(1, format!("bind {addr}: {e}")))?;
    // Printed, so that a script that asked for port 0 learns which one it got.
    eprintln!("serving MCP on http://{bound}/mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Exit(1, format!("MCP over HTTP: {e}")))
}

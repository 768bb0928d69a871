//! `sop token`: bearer tokens that let an agent reach `sop mcp --http` as one system. The seed
//! is made here and shown once; the service keeps only its public key (operators;
//! `sop.admin.token.*`).

use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;
use uuid::Uuid;

use super::ctx::{Ctx, Exit};
use super::render::{Columns, fields, time};
use crate::wire::admin::{AdminName, IssueToken, ListTokens, RevokeToken, TokenInfo, TokenList};

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Issue a token for the system `--actor` names (with `--team` for a name); prints it once.
    Issue {
        /// When it stops working: a duration from now (`90d`, `12h`) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// What it is for (`autogen on host-3`), shown by `sop token list`.
        #[arg(long)]
        label: Option<String>,
    },
    /// End a token now: every call made with it from then on is refused.
    Revoke {
        /// The token's id, as `sop token list` shows it.
        token_id: Uuid,
    },
    /// The tokens issued (revoked and expired ones too), of `--actor` or of every system.
    List,
}

/// A token as issued: the only time the token itself is shown.
#[derive(Serialize)]
struct Issued {
    token: String,
    #[serde(flatten)]
    info: TokenInfo,
}

fn expiry(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, Exit> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    crate::domain::policy::duration("--expires", raw)
        .map(|d| chrono::Utc::now() + d)
        .map_err(|e| Exit(1, format!("{e}, or an RFC 3339 time")))
}

fn info_fields(t: &TokenInfo) -> Vec<(&'static str, String)> {
    let or = |v: Option<String>, none: &str| v.unwrap_or_else(|| none.to_owned());
    vec![
        ("token_id", t.token_id.to_string()),
        (
            "system",
            format!("{} ({}) of team {}", t.system, t.system_id, t.team),
        ),
        ("label", or(t.label.clone(), "-")),
        ("issued_at", time(&t.issued_at)),
        ("expires_at", or(t.expires_at.as_ref().map(time), "never")),
        ("revoked_at", or(t.revoked_at.as_ref().map(time), "-")),
    ]
}

pub async fn run(ctx: &Ctx, command: TokenCmd) -> Result<ExitCode, Exit> {
    let client = ctx.client().await?;
    match command {
        TokenCmd::Issue { expires, label } => {
            let system_id = ctx.actor().await?;
            let expires_at = expires.as_deref().map(expiry).transpose()?;
            let pair = nkeys::KeyPair::new_user();
            let seed = pair.seed().map_err(|e| Exit(1, e.to_string()))?;
            let request = IssueToken {
                system_id,
                public_key: pair.public_key(),
                label,
                expires_at,
            };
            let info: TokenInfo = client.admin(AdminName::IssueToken, &request).await?;
            let issued = Issued {
                token: crate::wire::token::compose(system_id, &seed),
                info,
            };
            ctx.print(&issued, |i| {
                let mut shown = vec![("token", i.token.clone())];
                shown.extend(info_fields(&i.info));
                format!(
                    "{}\n\nThe token is shown this once: give it to the agent's host as \
                     `Authorization: Bearer <token>`.",
                    fields(&shown)
                )
            })?;
        }
        TokenCmd::Revoke { token_id } => {
            let info: TokenInfo = client
                .admin(AdminName::RevokeToken, &RevokeToken { token_id })
                .await?;
            ctx.print(&info, |t| fields(&info_fields(t)))?;
        }
        TokenCmd::List => {
            let system_id = match ctx.actor.is_some() {
                true => Some(ctx.actor().await?),
                false => None,
            };
            let list: TokenList = client
                .admin(AdminName::ListTokens, &ListTokens { system_id })
                .await?;
            ctx.print(&list.tokens, |tokens| {
                Columns::new()
                    .col("token_id", |t: &TokenInfo| t.token_id.to_string())
                    .col("team", |t| t.team.clone())
                    .col("system", |t| t.system.clone())
                    .col("label", |t| t.label.clone().unwrap_or_default())
                    .col("issued_at", |t| time(&t.issued_at))
                    .col("expires_at", |t| {
                        t.expires_at.as_ref().map(time).unwrap_or_default()
                    })
                    .col("revoked_at", |t| {
                        t.revoked_at.as_ref().map(time).unwrap_or_default()
                    })
                    .or("no tokens")
                    .render(tokens)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

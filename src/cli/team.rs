//! `sop team` and `sop nkey-generate`: who is who, registered by operators, asked by anyone.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;

use super::ctx::{Ctx, Exit};
use super::render::{self, fields};
use super::send::read_document;
use crate::wire::admin::{AdminName, TeamSpec};
use crate::wire::answer::TeamIdentity;

#[derive(Subcommand)]
pub enum TeamCmd {
    /// Create or update a team and its systems from a JSON or YAML file; prints the ids.
    Apply {
        /// The team file (`deploy/team.example.json` shows its shape).
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Show a team and its systems' ids (anyone may ask: no --actor).
    Show {
        /// The team's name, e.g. `discovery`.
        name: String,
    },
}

pub async fn run(ctx: &Ctx, command: TeamCmd) -> Result<ExitCode, Exit> {
    let team: TeamIdentity = match command {
        TeamCmd::Apply { file } => {
            // Parsed here too, so a malformed file is told before anything is sent.
            let spec: TeamSpec =
                serde_json::from_value(read_document(&file)?).context("not a team file")?;
            ctx.client()
                .await?
                .admin(AdminName::ApplyTeam, &spec)
                .await?
        }
        TeamCmd::Show { name } => ctx.team(&name).await?,
    };
    ctx.print(&team, |t| {
        format!(
            "team {} ({})\n\n{}",
            t.name,
            t.id,
            render::systems(&t.systems)
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A NATS user key pair for a system.
#[derive(Serialize)]
struct KeyPair {
    public_key: String,
    seed: String,
}

/// `sop roles`: the NATS users of the teams in `files`.
pub fn roles(ctx: &Ctx, files: &[std::path::PathBuf]) -> Result<String, Exit> {
    let mut teams = Vec::with_capacity(files.len());
    for file in files {
        let spec: TeamSpec = serde_json::from_value(read_document(file)?)
            .with_context(|| format!("{} is not a team file", file.display()))?;
        teams.push(spec);
    }
    let subjects = crate::wire::subjects::Subjects::new(&ctx.settings.connection.subject_prefix);
    crate::bus::roles::roles_conf(&subjects, &teams)
        .map_err(|e| Exit(super::ctx::EXIT_REJECTED, e.to_string()))
}

pub fn nkey_generate(ctx: &Ctx) -> Result<ExitCode, Exit> {
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().map_err(|e| Exit(1, e.to_string()))?;
    let keys = KeyPair {
        public_key: pair.public_key(),
        seed,
    };
    ctx.print(&keys, |k| {
        fields(&[
            ("public_key", k.public_key.clone()),
            ("seed", k.seed.clone()),
        ])
    })?;
    Ok(ExitCode::SUCCESS)
}

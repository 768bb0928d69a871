//! Commands as the CLI takes them: the id they act on, FIELD=VALUE pairs, a payload file;
//! and `sop send`, the generic form.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::ctx::{Ctx, Exit};
use crate::wire::command::{CommandName, PayloadVisitor, visit_payloads};

/// What every command takes: the entity it acts on, payload fields, or a payload file.
#[derive(Args, Clone)]
pub struct SendArgs {
    /// The id the command acts on (procedure, series, task, run or initiative), then payload
    /// fields as FIELD=VALUE (a VALUE that is JSON — number, list, object — is taken as JSON).
    #[arg(value_name = "ID | FIELD=VALUE")]
    pub args: Vec<String>,
    /// Payload file, JSON or YAML (`-` reads standard input); inline fields override it.
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    /// Shortcut for reason=REASON.
    #[arg(long)]
    pub reason: Option<String>,
    /// Command id (default: a new one). Re-sending an id is safe: one effect, same outcome;
    /// use it to retry a command whose outcome did not come in time.
    #[arg(long = "command-id", alias = "id", value_name = "UUID")]
    pub id: Option<Uuid>,
    /// Send even when no worker answers (the command waits in the commands stream), and
    /// return once it is stored, without waiting for its outcome (`sop outcome <id>`).
    #[arg(long)]
    pub queue: bool,
}

/// `sop send <command>`: any command by its name.
pub async fn run(ctx: &Ctx, command: &str, args: SendArgs) -> Result<ExitCode, Exit> {
    let name = CommandName::parse(command).ok_or_else(|| {
        let known: Vec<&str> = CommandName::ALL.iter().map(|c| c.as_str()).collect();
        Exit(
            1,
            format!("unknown command `{command}`; one of: {}", known.join(", ")),
        )
    })?;
    ctx.send(name, args).await
}

/// The payload field the positional id fills: the one required field of the command's
/// payload named `…_id` (`task_id`, `series_id`), read from the payload's schema.
fn id_field(name: CommandName) -> Option<String> {
    struct Find(CommandName, Option<String>);
    impl PayloadVisitor for Find {
        fn visit<P: schemars::JsonSchema + serde::de::DeserializeOwned>(
            &mut self,
            name: CommandName,
        ) {
            if name != self.0 {
                return;
            }
            let schema = schemars::schema_for!(P);
            self.1 = schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|field| field.ends_with("_id"))
                .map(str::to_owned);
        }
    }
    let mut find = Find(name, None);
    visit_payloads(&mut find);
    find.1
}

/// Reads a JSON or YAML file (`-`: standard input) into a JSON value.
pub fn read_document(path: &Path) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    match serde_json::from_str(&text) {
        Ok(v) => Ok(v),
        Err(_) => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is neither JSON nor YAML", path.display())),
    }
}

/// File, then positional id, then FIELD=VALUE pairs, then --reason.
pub fn payload(name: CommandName, args: &SendArgs) -> Result<Value, Exit> {
    let mut payload = match &args.file {
        Some(path) => read_document(path)?,
        None => Value::Object(Map::new()),
    };
    let Some(object) = payload.as_object_mut() else {
        return Err(Exit(1, "the payload file must hold an object".into()));
    };
    for (i, arg) in args.args.iter().enumerate() {
        match arg.split_once('=') {
            Some((key, value)) => {
                let value =
                    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
                object.insert(key.to_owned(), value);
            }
            None if i == 0 => {
                let field = id_field(name)
                    .ok_or_else(|| Exit(1, format!("{name} takes no id; give FIELD=VALUE")))?;
                object.insert(field, Value::String(arg.clone()));
            }
            None => return Err(Exit(1, format!("`{arg}` is not FIELD=VALUE"))),
        }
    }
    if let Some(reason) = &args.reason {
        object.insert("reason".into(), Value::String(reason.clone()));
    }
    Ok(payload)
}

/// One command verb as given: `sop task block …` is `task.block` with its arguments.
pub struct Verb {
    pub name: CommandName,
    pub args: SendArgs,
}

/// `cmd` with a verb for every command named `<family>.<verb>`, from the one table of
/// commands ([`crate::wire::command`]): a new command has its verb without a line here.
fn family_verbs(family: &str, cmd: clap::Command) -> clap::Command {
    CommandName::ALL
        .iter()
        .filter_map(|&name| {
            let (of, verb) = name.as_str().split_once('.')?;
            (of == family).then_some((name, verb))
        })
        .fold(cmd, |cmd, (name, verb)| {
            let about = format!("{} Sent by {}.", name.summary(), name.sender_text());
            cmd.subcommand(SendArgs::augment_args(clap::Command::new(verb)).about(about))
        })
}

fn verb_of(family: &str, matches: &mut clap::ArgMatches) -> Result<Verb, clap::Error> {
    use clap::error::ErrorKind;
    let Some((verb, mut args)) = matches.remove_subcommand() else {
        return Err(clap::Error::new(ErrorKind::MissingSubcommand));
    };
    let name = CommandName::parse(&format!("{family}.{verb}"))
        .ok_or_else(|| clap::Error::new(ErrorKind::InvalidSubcommand))?;
    let args = <SendArgs as clap::FromArgMatches>::from_arg_matches_mut(&mut args)?;
    Ok(Verb { name, args })
}

/// The command verbs of a `sop` family, flattened into its subcommands.
macro_rules! family_verbs {
    ($($ty:ident = $family:literal),* $(,)?) => {$(
        #[doc = concat!("The command verbs of `sop ", $family, "`.")]
        pub struct $ty(pub Verb);

        impl clap::FromArgMatches for $ty {
            fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
                Self::from_arg_matches_mut(&mut matches.clone())
            }

            fn from_arg_matches_mut(matches: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
                verb_of($family, matches).map($ty)
            }

            fn update_from_arg_matches(
                &mut self,
                matches: &clap::ArgMatches,
            ) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(matches)?;
                Ok(())
            }
        }

        impl clap::Subcommand for $ty {
            fn augment_subcommands(cmd: clap::Command) -> clap::Command {
                family_verbs($family, cmd)
            }

            fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
                family_verbs($family, cmd)
            }

            fn has_subcommand(verb: &str) -> bool {
                CommandName::parse(&format!("{}.{verb}", $family)).is_some()
            }
        }
    )*};
}

family_verbs!(
    ProcedureVerbs = "procedure",
    TaskVerbs = "task",
    RunVerbs = "run",
    InitiativeVerbs = "initiative",
    PolicyVerbs = "policy",
);

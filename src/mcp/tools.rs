//! The tools a bound system is offered: one per command its role may send and one per query,
//! plus waiting for work. Names, descriptions and input schemas come from the same tables and
//! wire types as the contract, so a tool cannot drift from the message it sends.

use std::time::Duration;

use schemars::JsonSchema;
use serde_json::{Map, Value};

use super::schema::{Dialect, tool_schema};
use crate::domain::system::SystemKind;
use crate::wire::command::{self as cmd, CommandName};
use crate::wire::query::{self as query, QueryName};

/// How long one tool call may take by default: below the hosts' own timeouts (AutoGen's
/// documented 30 s, the MCP SDKs' 60 s), so a call always ends with an answer the model sees.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(20);

/// Seconds kept from the budget for the answer's way back.
const REPLY_MARGIN_SECS: u64 = 2;

/// `task_wait_ready`'s wait when none is asked for, at most.
const DEFAULT_WAIT_SECS: u64 = 15;

/// How the tools are offered: the schema dialect and the time one call may take.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub dialect: Dialect,
    pub budget: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            dialect: Dialect::Portable,
            budget: DEFAULT_BUDGET,
        }
    }
}

impl Options {
    /// How long the server waits for an outcome or an answer: the budget less the margin.
    pub fn answer_within(&self) -> Duration {
        self.budget
            .saturating_sub(Duration::from_secs(REPLY_MARGIN_SECS))
            .max(Duration::from_secs(1))
    }

    /// The longest `task_wait_ready` waits, whatever it is asked.
    pub fn max_wait_secs(&self) -> u64 {
        self.answer_within().as_secs().max(1)
    }

    pub fn default_wait_secs(&self) -> u64 {
        DEFAULT_WAIT_SECS.min(self.max_wait_secs())
    }
}

/// What calling a tool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Command(CommandName),
    Query(QueryName),
    /// Waits a bounded time for a task assigned to the bound system to become ready.
    WaitReady,
}

#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: String,
    pub target: Target,
    pub description: String,
    pub input_schema: Map<String, Value>,
    pub read_only: bool,
}

/// A tool's name: the subject with `_` for `.` (`procedure.draft` → `procedure_draft`), as
/// hosts accept only letters, digits, `_` and `-`.
pub fn tool_name(subject: &str) -> String {
    subject.replace('.', "_")
}

/// The roles that may send `name`, for telling a model whom to ask.
pub fn senders(name: CommandName) -> Vec<SystemKind> {
    SystemKind::ALL
        .iter()
        .copied()
        .filter(|&kind| name.may_send(kind))
        .collect()
}

/// A query's request schema without `actor`: the server asks as the bound system.
pub fn without_actor(mut schema: Value) -> Value {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.remove("actor");
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|r| r != "actor");
    }
    schema
}

struct Collect<'a> {
    kind: SystemKind,
    dialect: Dialect,
    tools: &'a mut Vec<ToolSpec>,
}

impl cmd::PayloadVisitor for Collect<'_> {
    fn visit<P: JsonSchema + serde::de::DeserializeOwned>(&mut self, name: CommandName) {
        if !name.may_send(self.kind) {
            return;
        }
        self.tools.push(ToolSpec {
            name: tool_name(name.as_str()),
            target: Target::Command(name),
            description: format!(
                "{} {} Sent by {}. Returns the outcome (the ids made or changed, their status); \
                 a refusal is an error result with `code`, `message` and `field`.",
                name.summary(),
                name.guide(),
                name.sender_text()
            ),
            input_schema: tool_schema(&schemars::schema_for!(P).to_value(), self.dialect),
            read_only: false,
        });
    }
}

impl query::QueryVisitor for Collect<'_> {
    fn visit<R: JsonSchema + serde::de::DeserializeOwned, A: JsonSchema>(
        &mut self,
        name: QueryName,
    ) {
        self.tools.push(ToolSpec {
            name: tool_name(name.as_str()),
            target: Target::Query(name),
            description: format!("{} Read-only.", name.doc()),
            input_schema: tool_schema(
                &without_actor(schemars::schema_for!(R).to_value()),
                self.dialect,
            ),
            read_only: true,
        });
    }
}

/// Input of `task_wait_ready`.
#[derive(Debug, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitReady {
    /// How long to wait for a task to become ready, in seconds (a longer wait is shortened to
    /// the server's limit, which the tool's description gives).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub timeout_seconds: Option<u64>,
}

/// Every tool a system of `kind` is offered, commands first, in the contract's order.
pub fn catalogue(kind: SystemKind, options: &Options) -> Vec<ToolSpec> {
    let mut tools = Vec::new();
    let mut collect = Collect {
        kind,
        dialect: options.dialect,
        tools: &mut tools,
    };
    cmd::visit_payloads(&mut collect);
    query::visit_queries(&mut collect);
    tools.push(ToolSpec {
        name: WAIT_READY.into(),
        target: Target::WaitReady,
        description: format!(
            "Waits until a task assigned to you is ready to start, at most `timeout_seconds` \
             (default {}, at most {}), and returns the ready tasks (already ready ones at \
             once); an empty list when none became ready in time: call it again to keep \
             waiting. Read-only.",
            options.default_wait_secs(),
            options.max_wait_secs()
        ),
        input_schema: tool_schema(
            &schemars::schema_for!(WaitReady).to_value(),
            options.dialect,
        ),
        read_only: true,
    });
    tools
}

/// The tool that waits for work.
pub const WAIT_READY: &str = "task_wait_ready";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::contract::asyncapi;
    use crate::bus::golden::resolved as inline;

    fn names(kind: SystemKind) -> Vec<String> {
        catalogue(kind, &Options::default())
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    #[test]
    fn each_role_is_offered_its_own_commands_and_every_query() {
        let s4 = names(SystemKind::System4);
        assert!(s4.contains(&"procedure_draft".to_owned()));
        assert!(
            !s4.contains(&"procedure_approve".to_owned()),
            "System4 never approves"
        );
        assert!(!s4.contains(&"procedure_execute".to_owned()));
        let s5 = names(SystemKind::System5);
        for n in [
            "procedure_approve",
            "run_approve",
            "run_reject",
            "policy_set",
        ] {
            assert!(s5.contains(&n.to_owned()), "{n}");
        }
        assert!(!s5.contains(&"procedure_draft".to_owned()));
        let s1 = names(SystemKind::System1);
        for n in [
            "task_start",
            "task_complete",
            "task_list",
            "task_wait_ready",
            "run_get",
        ] {
            assert!(s1.contains(&n.to_owned()), "{n}");
        }
        assert!(!s1.contains(&"task_review".to_owned()));
        for kind in SystemKind::ALL.iter().copied() {
            let all = names(kind);
            for q in QueryName::ALL {
                assert!(all.contains(&tool_name(q.as_str())), "{kind:?} {q}");
            }
            let mut unique = all.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), all.len(), "tool names are unique");
            assert!(all.iter().all(|n| {
                n.len() <= 64
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            }));
        }
    }

    /// One table row per role: its tool count and names, as docs/agents.md lists them.
    pub fn role_rows() -> Vec<String> {
        SystemKind::ALL
            .iter()
            .map(|&kind| {
                let tools = names(kind);
                format!(
                    "| {} | {} | {} |",
                    kind.as_str(),
                    tools.len(),
                    tools.join(", ")
                )
            })
            .collect()
    }

    /// The rows are made from the command table, and kept in the guide as the contract is.
    #[test]
    fn the_agents_guide_lists_each_roles_tools() {
        let guide = include_str!("../../docs/agents.md");
        let mut rows = role_rows().into_iter();
        let made: Vec<String> = guide
            .lines()
            .map(|line| match line.strip_prefix("| system") {
                Some(_) => rows.next().unwrap_or_default(),
                None => line.to_owned(),
            })
            .collect();
        crate::bus::golden::generated_file("docs/agents.md", &(made.join("\n") + "\n"));
    }

    /// The default options in each schema dialect.
    fn dialects() -> [Options; 2] {
        [Dialect::Portable, Dialect::OpenaiStrict].map(|dialect| Options {
            dialect,
            ..Options::default()
        })
    }

    #[test]
    fn input_schemas_are_the_contracts_payloads_and_requests() {
        let doc = asyncapi();
        let message = |channel: &str| {
            let messages = doc["channels"][channel]["messages"]
                .as_object()
                .unwrap_or_else(|| panic!("{channel}"));
            let (_, first) = messages.iter().next().unwrap();
            inline(first, &doc)
        };
        for options in dialects() {
            let dialect = options.dialect;
            for kind in SystemKind::ALL.iter().copied() {
                for tool in catalogue(kind, &options) {
                    let theirs = match tool.target {
                        Target::Command(name) => {
                            message(name.as_str())["payload"]["properties"]["payload"].clone()
                        }
                        Target::Query(name) => without_actor(
                            message(&format!("sop.query.{}", name.as_str()))["payload"].clone(),
                        ),
                        Target::WaitReady => continue,
                    };
                    assert_eq!(
                        tool.input_schema,
                        tool_schema(&theirs, dialect),
                        "{}",
                        tool.name
                    );
                }
            }
        }
    }

    /// Every tool of every role, in each dialect, within the subset the model APIs accept.
    #[test]
    fn every_tool_schema_is_in_the_subset() {
        for options in dialects() {
            let dialect = options.dialect;
            for kind in SystemKind::ALL.iter().copied() {
                for tool in catalogue(kind, &options) {
                    let schema = Value::Object(tool.input_schema.clone());
                    let found = super::super::schema::violations(&schema, dialect);
                    assert!(
                        found.is_empty(),
                        "{kind:?} {} ({dialect:?}):\n{}\n{}",
                        tool.name,
                        found.join("\n"),
                        serde_json::to_string_pretty(&schema).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn closed_sets_are_enums_and_needed_fields_required() {
        let tool = |kind, name: &str| {
            catalogue(kind, &Options::default())
                .into_iter()
                .find(|t| t.name == name)
                .unwrap_or_else(|| panic!("{name}"))
                .input_schema
        };
        let policy = tool(SystemKind::System5, "policy_set");
        assert_eq!(policy["required"], serde_json::json!(["rules"]));
        let list = tool(SystemKind::System4, "procedure_list");
        assert_eq!(
            list["properties"]["status"]["enum"],
            serde_json::json!(["draft", "approved", "retired"])
        );
        let review = tool(SystemKind::System3, "task_review");
        assert!(review["properties"]["verdict"]["enum"].is_array());
    }
}

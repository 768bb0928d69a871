//! The MCP server of one bound system: lists its tools and carries out a call as a command
//! (awaiting its outcome), a query, or a bounded wait for ready work. Every call ends within
//! the budget with a result the model can act on: an answer, or a refusal naming its code,
//! the field at fault and the next step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::tools::{Options, Target, ToolSpec, WaitReady, catalogue, senders, tool_name};
use crate::bus::client::{Client, ClientError, EventStart};
use crate::bus::contract::error_doc;
use crate::domain::error::ErrorCode;
use crate::domain::event::EventKind;
use crate::domain::system::SystemKind;
use crate::wire::answer::{SystemIdentity, TeamIdentity};
use crate::wire::command::{self as cmd, CommandName};
use crate::wire::outcome::Verdict;
use crate::wire::query::{self as query, QueryName};

/// Who the server acts as: fixed when it starts, never chosen by the model.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: Uuid,
    pub name: String,
    pub kind: SystemKind,
    pub team: String,
}

/// The system as given at start: an id, or a name within a team.
#[derive(Debug, Clone)]
pub struct Given {
    pub actor: String,
    pub team: Option<String>,
}

/// The one table of what each refusal means for the model's next step: the server's
/// instructions, every refusal and docs/agents.md say the same.
pub const NEXT_STEPS: &[(&str, &str)] = &[
    (
        "invalid_payload",
        "fix the argument named in `field` to match the tool's input schema, then call again",
    ),
    (
        "validation_failed",
        "fix the field named in `field` as the message says, then call again",
    ),
    (
        "forbidden",
        "this system may not do this: do not retry; ask the role the message names",
    ),
    (
        "not_found",
        "check the id (another team's ids are not found either); list or read to find the right one",
    ),
    (
        "invalid_state",
        "read the current state (procedure_get, run_get) and choose another step",
    ),
    (
        "conflict",
        "read the data again and decide on what it is now",
    ),
    (
        "policy_denied",
        "the team's policy forbids this now: wait until the time in the message, or ask System5",
    ),
    (
        "too_large",
        "send less: shorter texts, fewer items, or a smaller page (`limit`)",
    ),
    (
        "unsupported_schema",
        "this server speaks another contract version: report it, do not retry",
    ),
    (
        "unknown_command",
        "call one of the tools listed for you (the message names them)",
    ),
    (
        "internal",
        "a fault in the service: do not repeat the call in a loop; report it with the message",
    ),
    (
        "timeout",
        "the command was sent and may still be applied: look it up with command_outcome and its `command_id`; never send it again",
    ),
    (
        "unavailable",
        "the SOP service did not answer: with a `command_id`, look it up with command_outcome before anything else; without one nothing was applied: call again in a few seconds",
    ),
];

/// The next step for a refusal's `code`.
pub fn next_step(code: &str) -> &'static str {
    NEXT_STEPS
        .iter()
        .find(|(c, _)| *c == code)
        .or_else(|| NEXT_STEPS.iter().find(|(c, _)| *c == "internal"))
        .map(|(_, step)| *step)
        .unwrap_or_default()
}

/// A system the worker has said who it is, with its tools and the client that acts as it.
pub struct Bound {
    pub me: Identity,
    pub tools: Vec<ToolSpec>,
    client: Client,
}

impl Bound {
    /// Asks the worker who `id` is: `team.get` by the system's id.
    pub async fn resolve(
        client: Client,
        id: Uuid,
        options: &Options,
    ) -> Result<Bound, ClientError> {
        let team: TeamIdentity = client
            .query(QueryName::GetTeam, &json!({ "system_id": id }))
            .await?;
        let member = team.systems.iter().find(|s| s.id == id).ok_or_else(|| {
            ClientError::Refused(crate::wire::outcome::ErrorBody {
                code: "not_found".into(),
                message: format!("system {id} is not in team {}", team.name),
                field: None,
            })
        })?;
        let me = Identity {
            id,
            name: member.name.clone(),
            kind: member.kind,
            team: team.name.clone(),
        };
        Ok(Bound {
            tools: catalogue(me.kind, options),
            me,
            client,
        })
    }
}

/// Whom the server acts as.
#[derive(Clone)]
enum Binding {
    /// One system for the server's life, learnt from the worker once.
    Fixed {
        given: Arc<Given>,
        bound: Arc<OnceCell<Arc<Bound>>>,
    },
    /// The system of each HTTP request's bearer token, which the transport checked.
    Tokens,
}

#[derive(Clone)]
pub struct SopServer {
    client: Client,
    binding: Binding,
    options: Options,
    /// Set when tools were listed before the system was known: the list changes once it is.
    listed_early: Arc<AtomicBool>,
}

/// A refusal as the model sees it.
fn refusal(code: &str, message: String, field: Option<String>, extra: Value) -> CallToolResult {
    let mut body = json!({ "code": code, "message": message, "next_step": next_step(code) });
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    CallToolResult::structured_error(body)
}

fn failed(e: ClientError, command_id: Option<Uuid>) -> CallToolResult {
    let id = json!({ "command_id": command_id });
    let id = if command_id.is_some() {
        id
    } else {
        Value::Null
    };
    match e {
        ClientError::Refused(b) => refusal(&b.code, b.message, b.field, id),
        ClientError::Timeout(id) => refusal(
            "timeout",
            format!(
                "no outcome within the time a call may take; command {id} was sent and may still be applied"
            ),
            None,
            json!({ "command_id": id }),
        ),
        ClientError::TooLarge { size, limit } => refusal(
            "too_large",
            format!("the arguments are {size} bytes of JSON; at most {limit} are accepted"),
            None,
            Value::Null,
        ),
        ClientError::Nats(e) => refusal("unavailable", format!("{e}"), None, id),
        ClientError::Decode(e) => refusal("internal", e, None, Value::Null),
    }
}

/// `value` without its `null` members, at any depth: a host that sends `null` for an argument
/// it leaves out (OpenAI's strict mode does) means the same as leaving it out.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Decodes `value` as `T`, naming the argument at fault as a path (`tasks[1].name`).
fn decode_as<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Box<CallToolResult>> {
    crate::wire::fault::from_value::<T>(value).map_err(|fault| {
        let message = fault.to_string();
        Box::new(refusal("invalid_payload", message, fault.path, Value::Null))
    })
}

/// Checks a tool's arguments against the type of the command or query `name` names (its
/// payload, its request), before anything is sent: the refusal, if any.
struct Check<N> {
    name: N,
    args: Option<Value>,
    refused: Option<CallToolResult>,
}

impl<N> Check<N> {
    fn new(name: N, args: &Value) -> Check<N> {
        Check {
            name,
            args: Some(args.clone()),
            refused: None,
        }
    }

    fn against<T: serde::de::DeserializeOwned>(&mut self) {
        if let Some(args) = self.args.take() {
            self.refused = decode_as::<T>(args).err().map(|r| *r);
        }
    }
}

impl cmd::PayloadVisitor for Check<CommandName> {
    fn visit<P: schemars::JsonSchema + serde::de::DeserializeOwned>(&mut self, name: CommandName) {
        if name == self.name {
            self.against::<P>();
        }
    }
}

impl query::QueryVisitor for Check<QueryName> {
    fn visit<R: schemars::JsonSchema + serde::de::DeserializeOwned, A: schemars::JsonSchema>(
        &mut self,
        name: QueryName,
    ) {
        if name == self.name {
            self.against::<R>();
        }
    }
}

/// The tools offered before the worker has said who the system is: those of every role.
fn common_tools(options: &Options) -> Vec<ToolSpec> {
    let all: Vec<Vec<ToolSpec>> = SystemKind::ALL
        .iter()
        .map(|&k| catalogue(k, options))
        .collect();
    all[0]
        .iter()
        .filter(|t| {
            all.iter()
                .all(|tools| tools.iter().any(|o| o.name == t.name))
        })
        .cloned()
        .collect()
}

impl SopServer {
    /// A server bound to one system for its life.
    pub fn new(client: Client, given: Given, options: Options) -> SopServer {
        SopServer {
            client: client.with_timeout(options.answer_within()),
            binding: Binding::Fixed {
                given: Arc::new(given),
                bound: Arc::new(OnceCell::new()),
            },
            options,
            listed_early: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A server that acts, for each request, as the system its bearer token names.
    pub fn for_tokens(client: Client, options: Options) -> SopServer {
        SopServer {
            client: client.with_timeout(options.answer_within()),
            binding: Binding::Tokens,
            options,
            listed_early: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The system a call acts as: the fixed one, learnt from the worker once (until a worker
    /// answers, each call is refused `unavailable` and the next tries again), or the one the
    /// request's token names.
    async fn bound(
        &self,
        context: Option<&RequestContext<RoleServer>>,
    ) -> Result<Arc<Bound>, CallToolResult> {
        let (given, cell) = match &self.binding {
            Binding::Fixed { given, bound } => (given, bound),
            Binding::Tokens => {
                return context
                    .and_then(|c| c.extensions.get::<axum::http::request::Parts>())
                    .and_then(|parts| parts.extensions.get::<Arc<Bound>>())
                    .cloned()
                    .ok_or_else(|| {
                        refusal(
                            "forbidden",
                            "this request carries no valid bearer token".into(),
                            None,
                            Value::Null,
                        )
                    });
            }
        };
        cell.get_or_try_init(|| async {
            let id = match Uuid::parse_str(given.actor.trim()) {
                Ok(id) => id,
                Err(_) => {
                    let Some(team) = &given.team else {
                        return Err(refusal(
                            "not_found",
                            format!("sop mcp was started with the name `{}` and no team: restart it with --team", given.actor),
                            None,
                            Value::Null,
                        ));
                    };
                    let found: SystemIdentity = self
                        .client
                        .query(QueryName::GetSystem, &json!({ "team": team, "name": given.actor }))
                        .await
                        .map_err(|e| self.unbound(e))?;
                    found.id
                }
            };
            let bound = Bound::resolve(self.client.clone(), id, &self.options)
                .await
                .map_err(|e| self.unbound(e))?;
            tracing::info!(system = %bound.me.name, kind = bound.me.kind.as_str(), team = %bound.me.team, "bound");
            Ok(Arc::new(bound))
        })
        .await
        .cloned()
    }

    fn unbound(&self, e: ClientError) -> CallToolResult {
        let given = match &self.binding {
            Binding::Fixed { given, .. } => given.actor.as_str(),
            Binding::Tokens => "the system",
        };
        match e {
            ClientError::Nats(e) => refusal(
                "unavailable",
                format!(
                    "no SOP worker answers yet, so this server does not know {given} yet ({e}): nothing was sent"
                ),
                None,
                Value::Null,
            ),
            other => failed(other, None),
        }
    }

    /// Who the server is bound to, once known (for start-up); else the refusal's code and
    /// message.
    pub async fn identity(&self) -> Result<Identity, (String, String)> {
        self.bound(None).await.map(|b| b.me.clone()).map_err(|r| {
            let body = r.structured_content.unwrap_or_default();
            let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
            (text("code"), text("message"))
        })
    }

    fn instructions(&self) -> String {
        let who = match &self.binding {
            Binding::Fixed { bound, given } => match bound.get() {
                Some(b) => format!(
                    "You act as {} ({}, id {}) of team `{}`",
                    b.me.name,
                    b.me.kind.as_str(),
                    b.me.id,
                    b.me.team
                ),
                None => format!("You act as the system `{}`", given.actor),
            },
            Binding::Tokens => "You act as the system your bearer token was issued for".into(),
        };
        let codes: Vec<String> = NEXT_STEPS
            .iter()
            .map(|(code, step)| {
                let meaning = ErrorCode::ALL
                    .iter()
                    .find(|c| c.as_str() == *code)
                    .map(|c| format!("{} ", error_doc(*c)))
                    .unwrap_or_default();
                format!("- `{code}`: {meaning}Next: {step}.")
            })
            .collect();
        format!(
            "{who} in a Viable System Model organisation that works through governed Standard \
             Operating Procedures: System4 drafts procedures, System5 approves them and governs \
             runs, System3 executes them and reviews the work, System1 works the tasks. Every \
             tool call is recorded under your identity; you never name an actor. Each call \
             answers within {} s. A refused call returns an error result with `code`, \
             `message`, `field` and `next_step`:\n{}",
            self.options.budget.as_secs(),
            codes.join("\n")
        )
    }

    /// A tool the bound system does not have: whose it is, or which ones exist.
    fn not_offered(&self, me: &Identity, tools: &[ToolSpec], asked: &str) -> CallToolResult {
        let command = CommandName::ALL
            .iter()
            .copied()
            .find(|c| tool_name(c.as_str()) == asked);
        match command {
            Some(c) => {
                let owners: Vec<&str> = senders(c).iter().map(|k| k.as_str()).collect();
                refusal(
                    "forbidden",
                    format!(
                        "{} ({}) cannot use `{asked}`, only {} can ({}): ask {} to do it",
                        me.name,
                        me.kind.as_str(),
                        owners.join(" or "),
                        c.summary().trim_end_matches('.'),
                        owners.join(" or ")
                    ),
                    None,
                    Value::Null,
                )
            }
            None => {
                let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
                refusal(
                    "unknown_command",
                    format!(
                        "there is no tool `{asked}`; yours are: {}",
                        names.join(", ")
                    ),
                    None,
                    Value::Null,
                )
            }
        }
    }

    async fn command(&self, bound: &Bound, name: CommandName, args: Value) -> CallToolResult {
        let me = &bound.me;
        let mut check = Check::new(name, &args);
        cmd::visit_payloads(&mut check);
        if let Some(refused) = check.refused {
            return refused;
        }
        let command_id = Uuid::now_v7();
        match self
            .client
            .send_with_id(command_id, name, me.id, args)
            .await
        {
            Ok(outcome) => match outcome.verdict {
                Verdict::Accepted { result } => CallToolResult::structured(json!({
                    "command_id": outcome.command_id,
                    "status": "accepted",
                    "result": result,
                })),
                Verdict::Rejected { error } => refusal(
                    &error.code,
                    error.message,
                    error.field,
                    json!({ "command_id": outcome.command_id }),
                ),
            },
            Err(e @ ClientError::TooLarge { .. }) => failed(e, None),
            Err(e) => failed(e, Some(command_id)),
        }
    }

    async fn query(
        &self,
        bound: &Bound,
        name: QueryName,
        mut args: Map<String, Value>,
    ) -> CallToolResult {
        let me = &bound.me;
        if !name.is_identity() {
            if args.contains_key("actor") {
                return refusal(
                    "invalid_payload",
                    format!(
                        "`actor` is not an argument of {}: it always asks as you, {}",
                        tool_name(name.as_str()),
                        me.name
                    ),
                    Some("actor".into()),
                    Value::Null,
                );
            }
            args.insert("actor".into(), json!(me.id));
        }
        let request = Value::Object(args);
        let mut check = Check::new(name, &request);
        query::visit_queries(&mut check);
        if let Some(refused) = check.refused {
            return refused;
        }
        match bound.client.query::<_, Value>(name, &request).await {
            Ok(answer) => CallToolResult::structured(answer),
            Err(e) => failed(e, None),
        }
    }

    async fn ready_tasks(bound: &Bound) -> Result<Vec<Value>, ClientError> {
        let request = json!({ "actor": bound.me.id, "ready": true });
        let list: Value = bound.client.query(QueryName::ListTasks, &request).await?;
        Ok(list["tasks"].as_array().cloned().unwrap_or_default())
    }

    /// Ready tasks of the bound system: those ready now, else the first to become ready
    /// within the wait. Listens before it looks, so a task made ready in between is not missed.
    async fn wait_ready(&self, bound: &Bound, args: Value) -> CallToolResult {
        let me = &bound.me;
        let wait: WaitReady = match decode_as(args) {
            Ok(wait) => wait,
            Err(refused) => return *refused,
        };
        let secs = wait
            .timeout_seconds
            .unwrap_or(self.options.default_wait_secs())
            .min(self.options.max_wait_secs());
        let subject = self.client.subjects().event(EventKind::TaskReady, &me.team);
        let events = match self.client.events(&subject, EventStart::New).await {
            Ok(events) => events,
            Err(e) => return failed(e, None),
        };
        match Self::ready_tasks(bound).await {
            Ok(tasks) if !tasks.is_empty() => {
                return CallToolResult::structured(json!({ "tasks": tasks }));
            }
            Ok(_) => {}
            Err(e) => return failed(e, None),
        }
        let mine = me.id.to_string();
        let mut events = std::pin::pin!(events.filter_map(|e| {
            let mine = mine.clone();
            async move {
                e.ok()
                    .filter(|e| e.data["assignee_system_id"] == mine.as_str())
                    .map(|e| e.data)
            }
        }));
        match tokio::time::timeout(Duration::from_secs(secs), events.next()).await {
            Ok(Some(task)) => CallToolResult::structured(json!({ "tasks": [task] })),
            _ => CallToolResult::structured(json!({ "tasks": [] })),
        }
    }

    fn listing(tools: &[ToolSpec]) -> Vec<Tool> {
        tools
            .iter()
            .map(|t| {
                Tool::new(
                    t.name.clone(),
                    t.description.clone(),
                    Arc::new(t.input_schema.clone()),
                )
                .annotate(ToolAnnotations::new().read_only(t.read_only))
            })
            .collect()
    }

    /// Tells the host the tools changed, when it listed them before the system was known.
    async fn announce_bound(&self, context: &RequestContext<RoleServer>) {
        if self.listed_early.swap(false, Ordering::SeqCst) {
            let _ = context.peer.notify_tool_list_changed().await;
        }
    }
}

impl ServerHandler for SopServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("vsm-sop", env!("CARGO_PKG_VERSION")))
        .with_instructions(self.instructions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = match self.bound(Some(&_context)).await {
            Ok(bound) => Self::listing(&bound.tools),
            Err(_) => {
                self.listed_early.store(true, Ordering::SeqCst);
                Self::listing(&common_tools(&self.options))
            }
        };
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let bound = match self.bound(Some(&context)).await {
            Ok(bound) => bound,
            Err(refused) => return Ok(refused.into()),
        };
        self.announce_bound(&context).await;
        let (me, tools) = (&bound.me, &bound.tools);
        let Some(tool) = tools.iter().find(|t| t.name == request.name) else {
            return Ok(self.not_offered(me, tools, &request.name).into());
        };
        let args = without_nulls(Value::Object(request.arguments.unwrap_or_default()));
        let result = match (tool.target, args) {
            (Target::Command(name), args) => self.command(&bound, name, args).await,
            (Target::Query(name), Value::Object(args)) => self.query(&bound, name, args).await,
            (Target::WaitReady, args) => self.wait_ready(&bound, args).await,
            (Target::Query(_), _) => refusal(
                "invalid_payload",
                "the arguments are not an object".into(),
                None,
                Value::Null,
            ),
        };
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_guide_gives_each_codes_next_step_as_the_server_does() {
        let guide = include_str!("../../docs/agents.md");
        for (code, step) in NEXT_STEPS {
            let row = format!("| `{code}` | {step} |");
            assert!(guide.contains(&row), "docs/agents.md lacks the row:\n{row}");
        }
        for code in ErrorCode::ALL.iter().copied() {
            assert!(
                NEXT_STEPS.iter().any(|(c, _)| *c == code.as_str()),
                "no next step for {code:?}"
            );
        }
    }

    #[test]
    fn arguments_at_fault_are_named_by_their_path() {
        let field = |r: Box<CallToolResult>| {
            r.structured_content.unwrap()["field"]
                .as_str()
                .map(str::to_owned)
        };
        let r = decode_as::<crate::wire::query::ListQuery>(json!({
            "actor": Uuid::nil(), "colour": "red"
        }))
        .unwrap_err();
        assert_eq!(field(r).as_deref(), Some("colour"));
        let r = decode_as::<crate::domain::policy::PolicyDocument>(json!({})).unwrap_err();
        assert_eq!(field(r).as_deref(), Some("rules"));
        let r = decode_as::<crate::wire::command::DraftProcedure>(json!({
            "name": "n", "description": "d", "risk_level": "low", "impact": "low",
            "rollback_plan": "r", "tasks": [{ "position": 1 }]
        }))
        .unwrap_err();
        assert_eq!(field(r).as_deref(), Some("tasks[0].name"));
        assert_eq!(
            without_nulls(json!({ "a": null, "b": { "c": null, "d": 1 }, "e": [null] })),
            json!({ "b": { "d": 1 }, "e": [null] })
        );
    }
}

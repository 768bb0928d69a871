//! The MCP server of one bound system: lists its tools and carries out a call as a command
//! (awaiting its outcome), a query, or a bounded wait for ready work.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::tools::{MAX_WAIT_SECS, Target, ToolSpec, WaitReady, catalogue};
use crate::bus::client::{Client, ClientError, EventStart};
use crate::bus::contract::{ERROR_CODES, error_doc};
use crate::domain::event::EventKind;
use crate::domain::system::SystemKind;
use crate::wire::outcome::Verdict;
use crate::wire::query::QueryName;

/// Who the server acts as: fixed when it starts, never chosen by the model.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: Uuid,
    pub name: String,
    pub kind: SystemKind,
    pub team: String,
}

#[derive(Clone)]
pub struct SopServer {
    client: Client,
    me: Arc<Identity>,
    tools: Arc<Vec<ToolSpec>>,
}

/// What each refusal means for the model's next step.
fn next_step(code: &str) -> &'static str {
    match code {
        "invalid_payload" => "fix the arguments to match the tool's input schema",
        "validation_failed" => "fix the field named in `field` and call again",
        "forbidden" => "this system may not do this: do not retry; another role must",
        "not_found" => "check the id (another team's ids are not found either)",
        "invalid_state" => {
            "read the current state (procedure_get, run_get) and choose another step"
        }
        "conflict" => "read the data again and decide on what it is now",
        "policy_denied" => {
            "the team's policy forbids this now: wait until the time in the message, or ask System5"
        }
        "too_large" => "send less (shorter texts, fewer items) or page",
        _ => "do not repeat the call in a loop; report it",
    }
}

impl SopServer {
    pub fn new(client: Client, me: Identity) -> SopServer {
        let tools = catalogue(me.kind);
        SopServer {
            client,
            me: Arc::new(me),
            tools: Arc::new(tools),
        }
    }

    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    fn instructions(&self) -> String {
        let me = &self.me;
        let codes: Vec<String> = ERROR_CODES
            .iter()
            .map(|c| {
                format!(
                    "- `{}`: {} Next: {}.",
                    c.as_str(),
                    error_doc(*c),
                    next_step(c.as_str())
                )
            })
            .collect();
        format!(
            "You act as {} ({}, id {}) of team `{}` in a Viable System Model organisation that \
             works through governed Standard Operating Procedures: System4 drafts procedures, \
             System5 approves them and governs runs, System3 executes them and reviews the \
             work, System1 works the tasks. Every tool call is recorded under your identity. \
             A refused call returns an error result with `code`, `message` and `field`:\n{}\n\
             A `timeout` or `unavailable` result means no answer came in time: the command may \
             still be applied, so look it up with command_outcome (its `command_id`) before \
             sending it again.",
            me.name,
            me.kind.as_str(),
            me.id,
            me.team,
            codes.join("\n")
        )
    }

    /// An error result the model can act on.
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

    fn failed(e: ClientError) -> CallToolResult {
        match e {
            ClientError::Refused(b) => Self::refusal(&b.code, b.message, b.field, Value::Null),
            ClientError::Timeout(id) => Self::refusal(
                "timeout",
                format!("no outcome within the timeout; command {id} may still be applied"),
                None,
                json!({ "command_id": id }),
            ),
            ClientError::TooLarge { size, limit } => Self::refusal(
                "too_large",
                format!("the command is {size} bytes; at most {limit} are accepted"),
                None,
                Value::Null,
            ),
            ClientError::Nats(e) => {
                Self::refusal("unavailable", format!("NATS: {e}"), None, Value::Null)
            }
            ClientError::Decode(e) => Self::refusal("internal", e, None, Value::Null),
        }
    }

    async fn command(
        &self,
        name: crate::wire::command::CommandName,
        args: Value,
    ) -> CallToolResult {
        match self.client.send(name, self.me.id, args).await {
            Ok(outcome) => {
                let command_id = outcome.command_id;
                match outcome.verdict {
                    Verdict::Accepted { result } => CallToolResult::structured(json!({
                        "command_id": command_id,
                        "status": "accepted",
                        "result": result,
                    })),
                    Verdict::Rejected { error } => Self::refusal(
                        &error.code,
                        error.message,
                        error.field,
                        json!({ "command_id": command_id }),
                    ),
                }
            }
            Err(e) => Self::failed(e),
        }
    }

    async fn query(&self, name: QueryName, mut args: Map<String, Value>) -> CallToolResult {
        if !name.is_identity() {
            args.insert("actor".into(), json!(self.me.id));
        }
        match self.client.query::<_, Value>(name, &args).await {
            Ok(answer) => CallToolResult::structured(answer),
            Err(e) => Self::failed(e),
        }
    }

    async fn ready_tasks(&self) -> Result<Vec<Value>, ClientError> {
        let request = json!({ "actor": self.me.id, "ready": true });
        let list: Value = self.client.query(QueryName::ListTasks, &request).await?;
        Ok(list["tasks"].as_array().cloned().unwrap_or_default())
    }

    /// Ready tasks of the bound system: those ready now, else the first to become ready
    /// within `wait`. Listens before it looks, so a task made ready in between is not missed.
    async fn wait_ready(&self, wait: WaitReady) -> CallToolResult {
        let secs = wait.timeout_seconds.unwrap_or(60).min(MAX_WAIT_SECS);
        let subject = self
            .client
            .subjects()
            .event(EventKind::TaskReady, &self.me.team);
        let events = match self.client.events(&subject, EventStart::New).await {
            Ok(events) => events,
            Err(e) => return Self::failed(e),
        };
        match self.ready_tasks().await {
            Ok(tasks) if !tasks.is_empty() => {
                return CallToolResult::structured(json!({ "tasks": tasks }));
            }
            Ok(_) => {}
            Err(e) => return Self::failed(e),
        }
        let mine = self.me.id.to_string();
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
}

impl ServerHandler for SopServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("vsm-sop", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self
            .tools
            .iter()
            .map(|t| {
                Tool::new(
                    t.name.clone(),
                    t.description.clone(),
                    Arc::new(t.input_schema.clone()),
                )
                .annotate(ToolAnnotations::new().read_only(t.read_only))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.tools.iter().find(|t| t.name == request.name) else {
            return Err(ErrorData::invalid_params(
                format!("no tool `{}` for a {}", request.name, self.me.kind.as_str()),
                None,
            ));
        };
        let args = request.arguments.unwrap_or_default();
        let result = match tool.target {
            Target::Command(name) => self.command(name, Value::Object(args)).await,
            Target::Query(name) => self.query(name, args).await,
            Target::WaitReady => match serde_json::from_value(Value::Object(args)) {
                Ok(wait) => self.wait_ready(wait).await,
                Err(e) => Self::refusal("invalid_payload", e.to_string(), None, Value::Null),
            },
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
        for code in ERROR_CODES {
            let row = format!("| `{}` | {} |", code.as_str(), next_step(code.as_str()));
            assert!(guide.contains(&row), "docs/agents.md lacks the row:\n{row}");
        }
    }
}

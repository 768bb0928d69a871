#!/usr/bin/env python3
"""A VSM team of AutoGen agents works the First Run Discovery SOP through `sop mcp`.

Five `AssistantAgent`s (autogen-agentchat 0.7.5), each with its own `McpWorkbench` on
`sop mcp --team $SOP_TEAM --actor <name>`, so each sees only its role's tools and is bound to
its system when the server starts: System4 drafts the procedure, System5 reads and approves
it with its digest, System3 executes it, the two System1s wait for their ready tasks and
start and complete them, System3 reviews each completed task and, once the run is completed,
records the post-run review. The driver gives one agent one turn at a time, with a plain
task prompt, until the run is completed and reviewed.

The agents talk to a model through AutoGen's own clients. By default that model is the
stand-in in `standin_model.py`, started in this process on a free port: it validates every
request's tool declarations as the providers document them (HTTP 400 on any violation) and
answers with each role's scripted tool calls. Four agents use
`OpenAIChatCompletionClient` (base_url `http://127.0.0.1:PORT/v1`); System5 uses
`AnthropicChatCompletionClient`, whose `base_url` points the Anthropic SDK at the stand-in's
`/v1/messages`, so the Anthropic tool conversion and conversation shape are checked through
the real client, not by converting the tools by hand.

Against a real model instead: `SOP_MODEL_BASE_URL` (an OpenAI-compatible endpoint, e.g.
`https://…/v1`), `SOP_MODEL_API_KEY` and `SOP_MODEL` serve every agent; with
`SOP_ANTHROPIC_MODEL` and `SOP_ANTHROPIC_API_KEY` (and optionally `SOP_ANTHROPIC_BASE_URL`)
System5 uses the Anthropic client with that model.

First, each role's tool schemas as `sop mcp` serves them are checked by the same rules
(AutoGen forwards only their properties, so a top-level `$defs` would not reach the
stand-in). Then one line per tool call (agent, tool, `ok` or the refusal's code); then the
SQLite database (SOP_DATABASE_URL) is checked for the completed run and its review, and what
the stand-in checked is printed. Exits 0 only when the run is completed, its review
recorded, and neither check found a violation; 1 otherwise, also after SOP_AGENT_TURNS turns
(default 40) or SOP_AGENT_TIMEOUT seconds (default 240).

Environment as examples/python/run_test.sh sets it: SOP_BIN, SOP_TEAM, SOP_DATABASE_URL and
the connection settings `sop` reads (SOP_NATS_URL, SOP_SUBJECT_PREFIX). STANDIN_LENIENT=1
makes the stand-in record violations without refusing (the run still exits 1 if any).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import ToolCallExecutionEvent, ToolCallRequestEvent
from autogen_core.models import ChatCompletionClient, ModelInfo
from autogen_ext.models.anthropic import AnthropicChatCompletionClient
from autogen_ext.models.openai import OpenAIChatCompletionClient
from autogen_ext.tools.mcp import McpWorkbench, StdioServerParams
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from standin_model import NAME, StandIn, check_schema  # noqa: E402

PROCEDURE = Path(__file__).resolve().parent.parent / "first-run-discovery.json"

# What the team registered by examples/python/run_test.sh calls its systems.
ACTORS = {
    "System4": "System4/root",
    "System5": "System5/root",
    "System3": "System3/root",
    "System1_alpha": "System1/alpha",
    "System1_beta": "System1/beta",
}

# A tool only the role has: `sop mcp` offers it once the worker has said who the system is.
OWN_TOOL = {"System4": "procedure_draft", "System5": "procedure_approve", "System3": "procedure_execute"}

COMMON = """You are {actor}, one system of the team "{team}" in a Viable System Model organisation \
that works by governed Standard Operating Procedures (SOPs). You act only through your tools; \
they are already bound to your identity, so never pass an actor or system id for yourself.
A command's result is JSON like {{"command_id": …, "status": "accepted", "result": {{…}}}}. \
A refusal is an error whose JSON has "code", "message" and "next_step": follow next_step, and \
never repeat a refused call unchanged.
Do what the task asks with the fewest calls, using the ids exactly as given or as your tools \
returned them. Then reply in one or two sentences with the ids and statuses you saw. Nobody \
will answer questions, so do not ask any."""

ROLES = {
    "System4": "As System4 you look ahead: you draft procedures. System5 approves them and "
               "System3 executes them.",
    "System5": "As System5 you govern: you approve a procedure only after reading it, and the "
               "approval carries the digest of what you read.",
    "System3": "As System3 you manage operations: you execute approved procedures, review each "
               "completed task, and record the post-run review of a completed run.",
    "System1": "As a System1 you do the operational work: you start and complete the tasks "
               "assigned to you once they are ready.",
}


class Failed(Exception):
    pass


@dataclass
class Call:
    agent: str
    tool: str
    arguments: dict
    body: Any
    error: bool

    @property
    def code(self) -> str:
        if not self.error:
            return "ok"
        return self.body.get("code", "error") if isinstance(self.body, dict) else "error"


def decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class Team:
    def __init__(self, agents: dict[str, AssistantAgent], deadline: float, max_turns: int):
        self.agents = agents
        self.deadline = deadline
        self.max_turns = max_turns
        self.turns = 0
        self.calls: list[Call] = []

    async def turn(self, name: str, task: str) -> list[Call]:
        """One run of one agent on one task; prints and returns its tool calls."""
        self.turns += 1
        if self.turns > self.max_turns:
            raise Failed(f"no completed, reviewed run after {self.max_turns} turns")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Failed("out of time")
        print(f"--- turn {self.turns}: {name}", flush=True)
        result = await asyncio.wait_for(self.agents[name].run(task=task), left)
        requested: dict[str, tuple[str, dict]] = {}
        made: list[Call] = []
        for message in result.messages:
            if isinstance(message, ToolCallRequestEvent):
                for call in message.content:
                    try:
                        arguments = json.loads(call.arguments or "{}")
                    except ValueError:
                        arguments = {"(unparsed)": call.arguments}
                    requested[call.id] = (call.name, arguments)
            elif isinstance(message, ToolCallExecutionEvent):
                for done in message.content:
                    tool, arguments = requested.get(done.call_id, (done.name, {}))
                    call = Call(name, tool, arguments, decode(done.content), bool(done.is_error))
                    made.append(call)
                    print(f"{name:14} {tool:20} {call.code:18} {brief(call)}", flush=True)
        last = result.messages[-1] if result.messages else None
        said = getattr(last, "content", "")
        print(f"{name:14} says: {said if isinstance(said, str) else json.dumps(said, default=str)}"[:300],
              flush=True)
        self.calls.extend(made)
        return made


def brief(call: Call) -> str:
    """The ids and statuses a reader wants from a result, in one short string."""
    body = call.body
    if call.error:
        return (body.get("message", "") if isinstance(body, dict) else str(body))[:120]
    if isinstance(body, dict) and isinstance(body.get("result"), dict):
        body = body["result"]
    text = json.dumps(body) if not isinstance(body, str) else body
    return text[:100]


def accepted(calls: list[Call], tool: str) -> dict:
    """The result of the last accepted call of `tool`, or Failed naming what happened instead."""
    for call in reversed(calls):
        if call.tool == tool and not call.error and isinstance(call.body, dict):
            return call.body.get("result", call.body)
    codes = [f"{c.tool}:{c.code}" for c in calls]
    raise Failed(f"no accepted {tool} in the turn (calls: {codes or 'none'})")


async def served_schemas(team_name: str) -> list[str]:
    """Each role's tool schemas exactly as `sop mcp` serves them, checked by the stand-in's rules.

    AutoGen forwards only a schema's properties and required list, so this is where a
    top-level `$defs`, `$schema` or `title`, which other hosts pass on whole, would show.
    """
    found: list[str] = []
    count = 0
    for name, actor in ACTORS.items():
        params = StdioServerParameters(
            command=os.environ["SOP_BIN"], args=["mcp", "--team", team_name, "--actor", actor],
            env=dict(os.environ),
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for _ in range(75):
                listed = (await session.list_tools()).tools
                if OWN_TOOL.get(name) in (None, *(t.name for t in listed)):
                    break
                await asyncio.sleep(0.2)
            for tool in listed:
                count += 1
                problems: list[tuple[str, str, str]] = []
                if not NAME.match(tool.name):
                    problems.append(("", "name", "must match ^[a-zA-Z0-9_-]{1,64}$"))
                if tool.inputSchema.get("type") != "object":
                    problems.append(("/type", "type", 'the input schema must have type "object"'))
                check_schema(tool.inputSchema, "", problems)
                found += [f"mcp {actor} {tool.name} {p or '/'} [{k}]: {m}" for p, k, m in problems]
    print(f"served schemas: {count} tools of {len(ACTORS)} systems checked, "
          f"{len(found)} violations", flush=True)
    for line in found:
        print(f"  {line}")
    return found


async def own_tools(workbench: McpWorkbench, own: str | None) -> list:
    """The workbench's tools once they include the role's own (`sop mcp` may still be resolving)."""
    for _ in range(75):
        tools = await workbench.list_tools()
        if own is None or any(t["name"] == own for t in tools):
            return tools
        await asyncio.sleep(0.2)
    raise Failed(f"the server never offered {own}: {[t['name'] for t in tools]}")


async def step(team: Team, name: str, task: str, tool: str) -> dict:
    """A turn that must end with `tool` accepted; a second turn when the first did not."""
    calls = await team.turn(name, task)
    try:
        return accepted(calls, tool)
    except Failed:
        what = ", ".join(f"{c.tool}: {c.code}" for c in calls) or "no tool call"
        calls = await team.turn(name, f"{tool} was not accepted ({what}). Do the task again, "
                                      f"following the next_step of any refusal.\n\n{task}")
        return accepted(calls, tool)


def model_clients(standin_url: str | None) -> tuple[ChatCompletionClient, ChatCompletionClient]:
    """The client every agent uses, and System5's."""
    info = ModelInfo(vision=False, function_calling=True, json_output=False, family="unknown",
                     structured_output=False)
    if standin_url is None:
        common = OpenAIChatCompletionClient(
            model=os.environ["SOP_MODEL"], base_url=os.environ["SOP_MODEL_BASE_URL"],
            api_key=os.environ.get("SOP_MODEL_API_KEY", "none"), model_info=info,
        )
        if not os.environ.get("SOP_ANTHROPIC_MODEL"):
            return common, common
        anthropic_args: dict[str, Any] = {
            "model": os.environ["SOP_ANTHROPIC_MODEL"],
            "api_key": os.environ.get("SOP_ANTHROPIC_API_KEY", ""),
            "max_tokens": 2048,
            "model_info": info,
        }
        if os.environ.get("SOP_ANTHROPIC_BASE_URL"):
            anthropic_args["base_url"] = os.environ["SOP_ANTHROPIC_BASE_URL"]
        return common, AnthropicChatCompletionClient(**anthropic_args)
    common = OpenAIChatCompletionClient(
        model="gpt-4o-mini-2024-07-18", base_url=f"{standin_url}/v1", api_key="standin", model_info=info,
        max_retries=0,
    )
    system5 = AnthropicChatCompletionClient(
        model="claude-sonnet-4-20250514", base_url=standin_url, api_key="standin", max_tokens=1024,
        model_info=info, max_retries=0,
    )
    return common, system5


async def work(team: Team) -> tuple[str, str]:
    """The SOP's lifecycle, one agent turn at a time; returns the run's and initiative's ids."""
    procedure = json.loads(PROCEDURE.read_text())
    draft = await step(team, "System4", (
        "Draft this procedure with procedure_draft, passing this JSON object as the arguments, "
        f"unchanged:\n```json\n{json.dumps(procedure, indent=1)}\n```\n"
        "Then reply with its procedure_id, series_id and status."
    ), "procedure_draft")
    procedure_id, series_id = draft["procedure_id"], draft["series_id"]

    await step(team, "System5", (
        f'System4 has drafted the procedure "{procedure["name"]}": procedure_id {procedure_id}. '
        "Read it with procedure_get. If its tasks form a sensible plan, approve it with "
        "procedure_approve, passing the procedure_id and the `digest` exactly as procedure_get "
        "returned it. Reply with the resulting status."
    ), "procedure_approve")

    run = await step(team, "System3", (
        f'The procedure "{procedure["name"]}" is approved: series_id {series_id}. Start a run '
        "of it with procedure_execute. Reply with the new run's id, its initiative's id and "
        "its number of tasks."
    ), "procedure_execute")
    run_id, initiative_id = run["run_id"], run["initiative_id"]

    s1_task = (
        "Look for work: call task_wait_ready with timeout_seconds 5. For each task it returns, "
        "call task_start, then task_complete with a one-sentence result of the work. If it "
        "returns no task, call task_wait_ready once more with timeout_seconds 5; if there is "
        "still none, stop. Reply with what you completed."
    )
    s3_task = (
        f"Run run_id {run_id} is in progress. Read it with run_get and review every task whose "
        "status is `completed` with task_review (verdict approve, with a short reasoning). Then "
        "read the run again with run_get: once its status is `completed` and it has no review "
        "yet, record the post-run review with initiative_review (initiative_id "
        f"{initiative_id}, outcome succeeded, a one-sentence summary and at least one lesson). "
        "Reply with the run's status."
    )
    while True:
        for name in ("System1_alpha", "System1_beta"):
            await team.turn(name, s1_task)
        await team.turn("System3", s3_task)
        status, reviews = database_state(run_id)
        print(f"database: run {status}, {reviews} review(s)", flush=True)
        if status in ("failed", "canceled"):
            raise Failed(f"the run ended {status}")
        if status == "completed" and reviews >= 1:
            return run_id, initiative_id


def database_state(run_id: str) -> tuple[str | None, int]:
    path = os.environ["SOP_DATABASE_URL"].removeprefix("sqlite://").split("?")[0]
    db = sqlite3.connect(path)
    try:
        key = bytes.fromhex(run_id.replace("-", ""))
        status = db.execute("SELECT status FROM procedure_run WHERE id = ?", (key,)).fetchone()
        reviews = db.execute("SELECT COUNT(*) FROM run_review WHERE run_id = ?", (key,)).fetchone()
        return (status[0] if status else None), reviews[0]
    finally:
        db.close()


def standin_refuses_what_providers_refuse() -> None:
    """The stand-in's own check: declarations as AutoGen passed them before the schemas were
    made self-contained (a `$ref` whose `$defs` were dropped, a type list) are refused with
    400 by both dialects, so its zero violations below mean something."""
    import urllib.error
    import urllib.request

    broken = {
        "type": "object",
        "properties": {
            "verdict": {"$ref": "#/$defs/Verdict"},
            "note": {"type": ["string", "null"]},
        },
        "required": ["verdict"],
    }
    requests = {
        "/v1/chat/completions": {
            "model": "stand-in", "messages": [{"role": "user", "content": "review"}],
            "tools": [{"type": "function", "function": {"name": "task_review", "parameters": broken}}],
        },
        "/v1/messages": {
            "model": "stand-in", "max_tokens": 64, "messages": [{"role": "user", "content": "review"}],
            "tools": [{"name": "task_review", "input_schema": broken}],
        },
    }
    check = StandIn(lenient=False, quiet=True)
    url = check.start()
    try:
        for path, body in requests.items():
            request = urllib.request.Request(
                url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            try:
                urllib.request.urlopen(request, timeout=10)
            except urllib.error.HTTPError as refused:
                if refused.code == 400:
                    continue
            raise Failed(f"the stand-in let a broken declaration through on {path}")
        found = {(v.keyword) for v in check.violations()}
        if not {"$ref", "type"} <= found:
            raise Failed(f"the stand-in found {found}, not the $ref and the type list")
    finally:
        check.stop()
    print("stand-in: refuses a dangling $ref and a type list in both dialects", flush=True)


async def main() -> int:
    real = bool(os.environ.get("SOP_MODEL_BASE_URL"))
    if not real:
        try:
            standin_refuses_what_providers_refuse()
        except Failed as e:
            print(f"team failed: {e}", file=sys.stderr)
            return 1
    standin = None if real else StandIn()
    standin_url = None if standin is None else standin.start()
    if standin is not None:
        mode = "lenient" if standin.lenient else "strict"
        print(f"stand-in model on {standin_url} ({mode})", flush=True)
    else:
        print(f"model: {os.environ.get('SOP_MODEL')} at {os.environ['SOP_MODEL_BASE_URL']}", flush=True)
    deadline = time.monotonic() + float(os.environ.get("SOP_AGENT_TIMEOUT", 240))
    team_name = os.environ["SOP_TEAM"]
    ok = False
    served: list[str] = []
    try:
        served = await served_schemas(team_name)
        common, system5_client = model_clients(standin_url)
        async with AsyncExitStack() as stack:
            agents: dict[str, AssistantAgent] = {}
            for name, actor in ACTORS.items():
                params = StdioServerParams(
                    command=os.environ["SOP_BIN"],
                    args=["mcp", "--team", team_name, "--actor", actor],
                    env=dict(os.environ),
                    read_timeout_seconds=30,
                )
                workbench = await stack.enter_async_context(McpWorkbench(server_params=params))
                role = name.split("_")[0]
                client = system5_client if name == "System5" else common
                agents[name] = AssistantAgent(
                    name,
                    model_client=client,
                    workbench=workbench,
                    system_message=COMMON.format(actor=actor, team=team_name) + "\n" + ROLES[role],
                    description=f"{actor} of team {team_name}",
                    max_tool_iterations=12,
                )
                tools = await own_tools(workbench, OWN_TOOL.get(name))
                print(f"{name:14} {actor:14} {len(tools)} tools, {type(client).__name__}", flush=True)
            team = Team(agents, deadline, int(os.environ.get("SOP_AGENT_TURNS", 40)))
            run_id, _ = await work(team)
            status, reviews = database_state(run_id)
            refused = [c for c in team.calls if c.error]
            print(f"team: run {run_id} {status}, {reviews} review(s) recorded, "
                  f"{len(team.calls)} tool calls ({len(refused)} refused) in {team.turns} turns")
            ok = status == "completed" and reviews == 1 and not served
    except Failed as e:
        print(f"team failed: {e}", file=sys.stderr)
    except Exception as e:  # a model API's refusal surfaces here, as the host would see it
        print(f"team failed: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        if standin is not None:
            standin.stop()
            print(standin.summary())
            for violation in standin.violations():
                print(f"  {violation}")
            if standin.violations():
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

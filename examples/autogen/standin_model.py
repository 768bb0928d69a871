#!/usr/bin/env python3
"""A stand-in for two model APIs, written for the AutoGen team test (team.py).

It serves, on 127.0.0.1:

- OpenAI Chat Completions, ``POST /v1/chat/completions`` (non-streaming);
- Anthropic Messages, ``POST /v1/messages`` (non-streaming).

Every request is checked the way the providers document their tool declarations and
conversations, and any violation is answered with HTTP 400 in that provider's error shape, so
the host fails as it would against the real service. Every violation is also recorded (tool,
JSON pointer, keyword) for the final report. The schema rules are the subset that all three
of these accept, so a tool that passes here is usable with each of them:

- https://platform.openai.com/docs/guides/function-calling
- https://docs.anthropic.com/en/docs/build-with-claude/tool-use
- https://ai.google.dev/api/caching#Schema

A schema node may use only ``type`` (one of string, integer, number, boolean, array, object),
``description``, ``properties``, ``required`` (naming existing properties), ``enum`` (a
non-empty list of strings), ``items``, ``minimum``, ``maximum``, ``minLength``,
``maxLength``, ``minItems``, ``maxItems``, ``pattern``, ``format`` (``date-time`` or
``uuid``) and ``additionalProperties`` (``false`` only); an object has ``properties`` and an
array ``items``. ``$ref``, ``$defs``, ``oneOf``, ``anyOf``, ``const``, ``title``,
``default``, ``nullable``, type arrays and the rest are violations.

It answers as a scripted model: it tells the calling agent by the tools it is offered
(procedure_draft: System4, procedure_approve: System5, procedure_execute: System3, else a
System1), reads the tool results of the current turn (everything after the last user
message) and returns that role's next tool call, or a final text once its step is done. The
scripts are the ``script_*`` functions below, one per role.

As a module: ``StandIn(lenient=False).start()`` returns the base URL; ``.summary()`` and
``.violations()`` report what was checked. As a script: ``standin_model.py [--port N]
[--lenient]`` serves until interrupted, then prints the summary. With ``lenient`` (or
``STANDIN_LENIENT=1``) violations are logged and recorded but the request is answered.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
TYPES = {"string", "integer", "number", "boolean", "array", "object"}
KEYWORDS = {
    "type", "description", "properties", "required", "enum", "items", "minimum", "maximum",
    "minLength", "maxLength", "minItems", "maxItems", "pattern", "format",
    "additionalProperties",
}
FORMATS = {"date-time", "uuid"}


@dataclass(frozen=True)
class Violation:
    dialect: str
    tool: str  # the tool's name, or "(messages)" for the conversation
    pointer: str  # a JSON pointer into the tool's schema or the request
    keyword: str
    message: str

    def __str__(self) -> str:
        return f"{self.dialect} {self.tool} {self.pointer or '/'} [{self.keyword}]: {self.message}"


# --- Schemas: the subset every provider above accepts ------------------------------------------


def check_schema(node: Any, pointer: str, out: list[tuple[str, str, str]]) -> None:
    """Appends (pointer, keyword, message) for every rule the schema node breaks, recursively."""
    if not isinstance(node, dict):
        out.append((pointer, "(node)", f"a schema must be an object, not {json.dumps(node)}"))
        return
    for key in node:
        if key not in KEYWORDS:
            out.append((f"{pointer}/{escape(key)}", key, "keyword not allowed"))
    kind = node.get("type")
    if "type" not in node:
        out.append((pointer, "type", "missing: every node declares one type"))
    elif isinstance(kind, list):
        out.append((f"{pointer}/type", "type", f"type arrays are not allowed: {json.dumps(kind)}"))
    elif kind not in TYPES:
        out.append((f"{pointer}/type", "type", f"unknown type {json.dumps(kind)}"))
    if "description" in node and not isinstance(node["description"], str):
        out.append((f"{pointer}/description", "description", "must be a string"))
    if "enum" in node:
        values = node["enum"]
        if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
            out.append((f"{pointer}/enum", "enum", f"must be a non-empty list of strings: {json.dumps(values)}"))
    if "format" in node and node["format"] not in FORMATS:
        out.append((f"{pointer}/format", "format", f"only date-time or uuid, not {json.dumps(node['format'])}"))
    if "additionalProperties" in node and node["additionalProperties"] is not False:
        out.append((f"{pointer}/additionalProperties", "additionalProperties", "only the value false is allowed"))
    for key in ("minimum", "maximum"):
        if key in node and (isinstance(node[key], bool) or not isinstance(node[key], (int, float))):
            out.append((f"{pointer}/{key}", key, "must be a number"))
    for key in ("minLength", "maxLength", "minItems", "maxItems"):
        if key in node and (isinstance(node[key], bool) or not isinstance(node[key], int) or node[key] < 0):
            out.append((f"{pointer}/{key}", key, "must be a non-negative integer"))
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except (re.error, TypeError):
            out.append((f"{pointer}/pattern", "pattern", "not a regular expression"))
    properties = node.get("properties")
    if kind == "object" and properties is None:
        out.append((pointer, "properties", "an object node must have properties"))
    if properties is not None:
        if not isinstance(properties, dict):
            out.append((f"{pointer}/properties", "properties", "must be an object"))
            properties = {}
        for name, sub in properties.items():
            check_schema(sub, f"{pointer}/properties/{escape(name)}", out)
    if "required" in node:
        required = node["required"]
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            out.append((f"{pointer}/required", "required", "must be a list of property names"))
        else:
            for name in required:
                if name not in (properties or {}):
                    out.append((f"{pointer}/required", "required", f"names {name!r}, which is not a property"))
    if kind == "array" and "items" not in node:
        out.append((pointer, "items", "an array node must have items"))
    if "items" in node:
        check_schema(node["items"], f"{pointer}/items", out)


def escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


# --- One validator per dialect ------------------------------------------------------------------


def validate_openai(body: dict, issued: set[str]) -> tuple[list[Violation], int]:
    """Chat Completions: the tools as `tools[].function`, and the role sequence of `messages`.

    Returns the violations and the number of tool declarations checked.
    """
    found: list[Violation] = []

    def bad(tool: str, pointer: str, keyword: str, message: str) -> None:
        found.append(Violation("openai", tool, pointer, keyword, message))

    if not isinstance(body.get("model"), str):
        bad("(request)", "/model", "model", "missing")
    tools = body.get("tools") or []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        label = name if isinstance(name, str) else f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            bad(label, f"/tools/{i}/type", "type", 'must be "function"')
        if not isinstance(function, dict):
            bad(label, f"/tools/{i}/function", "function", "missing")
            continue
        for key in function:
            if key not in ("name", "description", "parameters", "strict"):
                bad(label, f"/tools/{i}/function/{key}", key, "not a field of a function")
        if not isinstance(name, str) or not NAME.match(name):
            bad(label, f"/tools/{i}/function/name", "name", "must match ^[a-zA-Z0-9_-]{1,64}$")
        elif name in seen:
            bad(label, f"/tools/{i}/function/name", "name", "names must be unique")
        seen.add(label)
        if "description" in function and not isinstance(function["description"], str):
            bad(label, f"/tools/{i}/function/description", "description", "must be a string")
        parameters = function.get("parameters")
        if parameters is None:
            continue  # a function without arguments
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            bad(label, "", "type", 'parameters must be a JSON Schema object with type "object"')
        problems: list[tuple[str, str, str]] = []
        check_schema(parameters, "", problems)
        for pointer, keyword, message in problems:
            bad(label, pointer, keyword, message)

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        bad("(messages)", "/messages", "messages", "must be a non-empty list")
        return found, len(tools)
    open_calls: dict[str, int] = {}  # tool_call ids of the last assistant message not answered yet
    answering = False  # whether tool messages may follow here
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        where = f"/messages/{i}"
        if role not in ("system", "developer", "user", "assistant", "tool"):
            bad("(messages)", f"{where}/role", "role", f"unknown role {role!r}")
            continue
        if role != "tool" and open_calls:
            bad("(messages)", where, "tool_calls",
                f"tool calls {sorted(open_calls)} were not answered before this {role} message")
            open_calls = {}
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not answering:
                bad("(messages)", where, "role",
                    "a tool message must answer a preceding assistant message with tool_calls")
            elif call_id not in open_calls:
                bad("(messages)", f"{where}/tool_call_id", "tool_call_id",
                    f"{call_id!r} is not a pending tool call of the preceding assistant message")
            if call_id not in issued:
                bad("(messages)", f"{where}/tool_call_id", "tool_call_id", f"{call_id!r} was never issued")
            open_calls.pop(call_id, None)
            if not isinstance(message.get("content"), (str, list)):
                bad("(messages)", f"{where}/content", "content", "a tool message has content")
            continue
        answering = False
        if role == "assistant" and message.get("tool_calls"):
            for j, call in enumerate(message["tool_calls"]):
                at = f"{where}/tool_calls/{j}"
                if call.get("type") != "function":
                    bad("(messages)", f"{at}/type", "type", 'must be "function"')
                function = call.get("function") or {}
                if tools and function.get("name") not in seen:
                    bad("(messages)", f"{at}/function/name", "name",
                        f"{function.get('name')!r} is not a declared tool")
                try:
                    if not isinstance(json.loads(function.get("arguments", "")), dict):
                        raise ValueError
                except ValueError:
                    bad("(messages)", f"{at}/function/arguments", "arguments", "must be a JSON object as text")
                open_calls[call.get("id")] = j
            answering = True
        elif role != "assistant" and message.get("content") is None:
            bad("(messages)", f"{where}/content", "content", f"a {role} message has content")
    if messages[-1].get("role") == "assistant":
        bad("(messages)", f"/messages/{len(messages) - 1}", "role", "the last message is the model's own")
    return found, len(tools)


def validate_anthropic(body: dict, issued: set[str]) -> tuple[list[Violation], int]:
    """Messages: the tools as `tools[].input_schema`, and tool_use / tool_result pairing.

    Returns the violations and the number of tool declarations checked.
    """
    found: list[Violation] = []

    def bad(tool: str, pointer: str, keyword: str, message: str) -> None:
        found.append(Violation("anthropic", tool, pointer, keyword, message))

    if not isinstance(body.get("model"), str):
        bad("(request)", "/model", "model", "missing")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        bad("(request)", "/max_tokens", "max_tokens", "a positive integer is required")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        bad("(request)", "/system", "system", "a string or a list of text blocks")
    tools = body.get("tools") or []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.get("name") if isinstance(tool, dict) else None
        label = name if isinstance(name, str) else f"tools[{i}]"
        if not isinstance(tool, dict):
            bad(label, f"/tools/{i}", "(tool)", "must be an object")
            continue
        for key in tool:
            if key not in ("name", "description", "input_schema", "cache_control", "type"):
                bad(label, f"/tools/{i}/{key}", key, "not a field of a tool")
        if not isinstance(name, str) or not NAME.match(name):
            bad(label, f"/tools/{i}/name", "name", "must match ^[a-zA-Z0-9_-]{1,64}$")
        elif name in seen:
            bad(label, f"/tools/{i}/name", "name", "names must be unique")
        seen.add(label)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            bad(label, "", "type", 'input_schema must be a JSON Schema object with type "object"')
            if not isinstance(schema, dict):
                continue
        problems: list[tuple[str, str, str]] = []
        check_schema(schema, "", problems)
        for pointer, keyword, message in problems:
            bad(label, pointer, keyword, message)
    choice = body.get("tool_choice")
    if choice is not None and (not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none")):
        bad("(request)", "/tool_choice", "tool_choice", f"unknown tool_choice {choice!r}")

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        bad("(messages)", "/messages", "messages", "must be a non-empty list")
        return found, len(tools)
    pending: set[str] = set()  # tool_use ids of the previous assistant message
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        where = f"/messages/{i}"
        if role not in ("user", "assistant"):
            bad("(messages)", f"{where}/role", "role", f"only user and assistant, not {role!r}")
            continue
        blocks = message.get("content")
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        if not isinstance(blocks, list) or not blocks:
            bad("(messages)", f"{where}/content", "content", "a string or a non-empty list of blocks")
            blocks = []
        uses = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if role == "assistant":
            if pending:
                bad("(messages)", where, "tool_result",
                    f"tool_use ids {sorted(pending)} have no tool_result right after them")
            if results:
                bad("(messages)", where, "tool_result", "tool_result blocks belong in a user message")
            for j, use in enumerate(uses):
                if use.get("name") not in seen:
                    bad("(messages)", f"{where}/content/{j}/name", "name", f"{use.get('name')!r} is not a declared tool")
                if not isinstance(use.get("input"), dict):
                    bad("(messages)", f"{where}/content/{j}/input", "input", "must be an object")
            pending = {u.get("id") for u in uses}
            continue
        if uses:
            bad("(messages)", where, "tool_use", "tool_use blocks belong in an assistant message")
        if results and blocks[: len(results)] != results:
            bad("(messages)", where, "tool_result", "tool_result blocks come first in the user message")
        for result in results:
            use_id = result.get("tool_use_id")
            if use_id not in pending:
                bad("(messages)", f"{where}/content", "tool_use_id",
                    f"{use_id!r} does not answer a tool_use of the previous message")
            if use_id not in issued:
                bad("(messages)", f"{where}/content", "tool_use_id", f"{use_id!r} was never issued")
            pending.discard(use_id)
        if pending:
            bad("(messages)", where, "tool_result", f"tool_use ids {sorted(pending)} are not answered")
        pending = set()
    if messages[-1].get("role") != "user":
        bad("(messages)", f"/messages/{len(messages) - 1}", "role", "the last message must be the user's")
    return found, len(tools)


# --- The scripted model ------------------------------------------------------------------------


@dataclass
class Step:
    """One tool call of the current turn and what came back."""

    tool: str
    arguments: dict
    body: Any = None  # the result, decoded from its JSON text when it is JSON
    error: bool = False

    @property
    def code(self) -> str:
        return self.body.get("code", "error") if self.error and isinstance(self.body, dict) else ("error" if self.error else "ok")


@dataclass
class Turn:
    task: str  # the user's last message: what this turn is for
    steps: list[Step] = field(default_factory=list)

    def calls(self, tool: str) -> list[Step]:
        return [s for s in self.steps if s.tool == tool]

    def failed(self) -> Step | None:
        return next((s for s in self.steps if s.error), None)


def decode_result(text: str, flagged: bool | None) -> tuple[Any, bool]:
    """A tool result as the model reads it: JSON when it is; an error when flagged or shaped so."""
    try:
        body = json.loads(text)
    except (TypeError, ValueError):
        return text, bool(flagged)
    refusal = isinstance(body, dict) and "code" in body and "message" in body and "status" not in body
    return body, bool(flagged) or refusal


def find_id(text: str, name: str) -> str | None:
    """The uuid written after `name` in the task (`run_id 0190…`, `run_id: "0190…"`)."""
    match = re.search(rf"{name}\W{{0,6}}({UUID})", text)
    return match.group(1) if match else None


def summary_of(failed: Step) -> str:
    body = failed.body if isinstance(failed.body, dict) else {"message": str(failed.body)}
    return f"{failed.tool} was refused ({failed.code}): {body.get('message', '')} Next: {body.get('next_step', 'report it')}"


def script_system4(turn: Turn) -> tuple[str, Any]:
    """Drafts the procedure given in the task as JSON, then says what was made."""
    if (failed := turn.failed()) is not None:
        return "text", summary_of(failed)
    drafts = turn.calls("procedure_draft")
    if not drafts:
        start, end = turn.task.find("{"), turn.task.rfind("}")
        return "call", ("procedure_draft", json.loads(turn.task[start : end + 1]))
    made = drafts[-1].body["result"]
    return "text", (f"Drafted procedure_id {made.get('procedure_id')} (series_id {made.get('series_id')}, "
                    f"version {made.get('version')}, status {made.get('status')}).")


def script_system5(turn: Turn) -> tuple[str, Any]:
    """Reads the procedure named in the task, then approves it with the digest it read."""
    if (failed := turn.failed()) is not None:
        return "text", summary_of(failed)
    procedure = find_id(turn.task, "procedure_id")
    reads = turn.calls("procedure_get")
    if not reads:
        return "call", ("procedure_get", {"procedure_id": procedure})
    if not turn.calls("procedure_approve"):
        read = reads[-1].body
        if not read.get("tasks"):
            return "text", "The procedure has no tasks; I do not approve it."
        return "call", ("procedure_approve", {"procedure_id": procedure, "digest": read["procedure"]["digest"]})
    done = turn.calls("procedure_approve")[-1].body["result"]
    return "text", f"Approved procedure_id {procedure}: status {done.get('status')}."


def script_system3(turn: Turn) -> tuple[str, Any]:
    """Executes the series named in the task; or reviews the run named in it, then its initiative."""
    if (failed := turn.failed()) is not None:
        return "text", summary_of(failed)
    if turn.task.lower().startswith("list the approved procedures"):
        if not turn.calls("procedure_list"):
            return "call", ("procedure_list", {"status": "approved"})
        listed = turn.calls("procedure_list")[-1].body.get("procedures", [])
        return "text", f"{len(listed)} approved procedure(s)."
    run_id = find_id(turn.task, "run_id")
    if run_id is None:
        executed = turn.calls("procedure_execute")
        if not executed:
            return "call", ("procedure_execute", {"series_id": find_id(turn.task, "series_id")})
        run = executed[-1].body["result"]
        return "text", (f"Started run_id {run.get('run_id')} (initiative_id {run.get('initiative_id')}) "
                        f"with {len(run.get('task_ids', []))} tasks.")
    reads = turn.calls("run_get")
    if not reads:
        return "call", ("run_get", {"run_id": run_id})
    reviewed = {s.arguments.get("task_id") for s in turn.calls("task_review")}
    detail = reads[-1].body
    waiting = [t for t in detail["tasks"] if t["status"] == "completed" and t["task_id"] not in reviewed]
    if waiting:
        task = waiting[0]
        return "call", ("task_review", {
            "task_id": task["task_id"], "verdict": "approve",
            "reasoning": f"The result of '{task['name']}' is complete.",
        })
    if turn.steps[-1].tool == "task_review":
        return "call", ("run_get", {"run_id": run_id})  # the reviews changed the run: read it again
    status = detail["run"]["status"]
    if status == "completed" and detail.get("review") is None and not turn.calls("initiative_review"):
        return "call", ("initiative_review", {
            "initiative_id": detail["run"]["initiative_id"], "outcome": "succeeded",
            "summary": "First Run Discovery completed: every task was done and approved.",
            "lessons": ["Tasks were worked one after another as each became ready."],
        })
    recorded = " and its review is recorded" if turn.calls("initiative_review") or detail.get("review") else ""
    return "text", f"Reviewed {len(reviewed)} task(s); run_id {run_id} is {status}{recorded}."


def script_system1(turn: Turn) -> tuple[str, Any]:
    """Waits for ready tasks (twice at most), then starts and completes each one it got."""
    if (failed := turn.failed()) is not None:
        return "text", summary_of(failed)
    waits = turn.calls("task_wait_ready")
    if not waits:
        return "call", ("task_wait_ready", {"timeout_seconds": 5})
    tasks = [t for w in waits for t in w.body.get("tasks", [])]
    started = {s.arguments.get("task_id") for s in turn.calls("task_start")}
    completed = {s.arguments.get("task_id") for s in turn.calls("task_complete")}
    for task in tasks:
        if task["task_id"] not in started:
            return "call", ("task_start", {"task_id": task["task_id"]})
        if task["task_id"] not in completed:
            return "call", ("task_complete", {"task_id": task["task_id"], "result": f"Done: {task['name']}."})
    if not tasks and len(waits) < 2:
        return "call", ("task_wait_ready", {"timeout_seconds": 5})
    if not tasks:
        return "text", "No task of mine is ready yet."
    return "text", "Completed: " + "; ".join(t["name"] for t in tasks) + "."


def script_for(tools: set[str]):
    if "procedure_draft" in tools:
        return script_system4
    if "procedure_approve" in tools:
        return script_system5
    if "procedure_execute" in tools:
        return script_system3
    return script_system1


def openai_turn(body: dict) -> Turn:
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    turn = Turn(text_of(messages[last_user].get("content")))
    by_id: dict[str, Step] = {}
    for message in messages[last_user + 1 :]:
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or []:
                step = Step(call["function"]["name"], json.loads(call["function"]["arguments"] or "{}"))
                by_id[call["id"]] = step
                turn.steps.append(step)
        elif message.get("role") == "tool" and message.get("tool_call_id") in by_id:
            step = by_id[message["tool_call_id"]]
            step.body, step.error = decode_result(text_of(message.get("content")), None)
    return turn


def anthropic_turn(body: dict) -> Turn:
    messages = body["messages"]

    def is_task(m: dict) -> bool:
        content = m.get("content")
        return m.get("role") == "user" and (
            isinstance(content, str) or not any(b.get("type") == "tool_result" for b in content)
        )

    last_user = max(i for i, m in enumerate(messages) if is_task(m))
    turn = Turn(text_of(messages[last_user].get("content")))
    by_id: dict[str, Step] = {}
    for message in messages[last_user + 1 :]:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_use":
                by_id[block["id"]] = Step(block["name"], block.get("input") or {})
                turn.steps.append(by_id[block["id"]])
            elif block.get("type") == "tool_result" and block.get("tool_use_id") in by_id:
                step = by_id[block["tool_use_id"]]
                step.body, step.error = decode_result(text_of(block.get("content")), block.get("is_error"))
    return turn


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return ""


# --- The server --------------------------------------------------------------------------------


class StandIn:
    """The HTTP server, its record of requests and violations, and the scripted answers."""

    def __init__(self, lenient: bool | None = None, port: int = 0, quiet: bool = False):
        self.lenient = os.environ.get("STANDIN_LENIENT") == "1" if lenient is None else lenient
        self.quiet = quiet  # no line per violation: for a check that expects them
        self.port = port
        self.lock = threading.Lock()
        self.requests = {"openai": 0, "anthropic": 0}
        self.declarations = {"openai": 0, "anthropic": 0}
        self.tool_names: dict[str, set[str]] = {"openai": set(), "anthropic": set()}
        self.refused = 0
        self.found: dict[Violation, int] = {}
        self.issued: set[str] = set()
        self.ids = itertools.count(1)
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = None
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/chat/completions"):
                    status, answer = standin.answer("openai", body)
                elif path.endswith("/messages"):
                    status, answer = standin.answer("anthropic", body)
                else:
                    status, answer = 404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the summary reports the traffic; per-request lines would drown the transcript

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="standin-model", daemon=True).start()
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def answer(self, dialect: str, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict):
            return 400, error_body(dialect, "the body is not a JSON object")
        validate = validate_openai if dialect == "openai" else validate_anthropic
        with self.lock:
            self.requests[dialect] += 1
            found, declared = validate(body, self.issued)
            self.declarations[dialect] += declared
            self.tool_names[dialect] |= {name_of(dialect, t) for t in body.get("tools") or []}
            for violation in found:
                if violation not in self.found and not self.quiet:
                    print(f"stand-in: {violation}", file=sys.stderr)
                self.found[violation] = self.found.get(violation, 0) + 1
            if found and not self.lenient:
                self.refused += 1
                return 400, error_body(dialect, f"{len(found)} violation(s), the first: {found[0]}")
        try:
            return 200, self.reply(dialect, body)
        except Exception as e:  # a script that cannot go on answers as a model would: in words
            return 200, self.reply_text(dialect, body, f"I cannot continue: {type(e).__name__}: {e}")

    def reply(self, dialect: str, body: dict) -> dict:
        tools = {name_of(dialect, t) for t in body.get("tools") or []}
        choice = body.get("tool_choice")
        no_tools = choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none")
        turn = openai_turn(body) if dialect == "openai" else anthropic_turn(body)
        kind, what = script_for(tools)(turn)
        if kind == "text" or no_tools or not tools:
            return self.reply_text(dialect, body, what if kind == "text" else "Done.")
        name, arguments = what
        with self.lock:
            call_id = f"{'call' if dialect == 'openai' else 'toolu'}_{next(self.ids):06d}"
            self.issued.add(call_id)
        if dialect == "openai":
            return openai_message(body, None, [{
                "id": call_id, "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }])
        return anthropic_message(body, [{"type": "tool_use", "id": call_id, "name": name, "input": arguments}])

    def reply_text(self, dialect: str, body: dict, text: str) -> dict:
        if dialect == "openai":
            return openai_message(body, text, None)
        return anthropic_message(body, [{"type": "text", "text": text}])

    def violations(self) -> list[Violation]:
        with self.lock:
            return sorted(self.found, key=lambda v: (v.dialect, v.tool, v.pointer, v.keyword))

    def summary(self) -> str:
        with self.lock:
            lines = [
                f"stand-in: {sum(self.requests.values())} requests "
                f"(openai {self.requests['openai']}, anthropic {self.requests['anthropic']}), "
                f"{self.refused} refused with 400{' (lenient: none refused)' if self.lenient else ''}",
            ]
            for dialect in ("openai", "anthropic"):
                lines.append(
                    f"stand-in: {dialect}: {self.declarations[dialect]} tool declarations validated "
                    f"({len(self.tool_names[dialect])} distinct tools)"
                )
            kinds = sorted({(v.dialect, v.keyword) for v in self.found})
            lines.append(f"stand-in: {len(self.found)} distinct violations"
                         + (": " + ", ".join(f"{d}/{k}" for d, k in kinds) if kinds else ""))
        return "\n".join(lines)


def name_of(dialect: str, tool: Any) -> str:
    if not isinstance(tool, dict):
        return "?"
    return str((tool.get("function") or {}).get("name") if dialect == "openai" else tool.get("name"))


def error_body(dialect: str, message: str) -> dict:
    if dialect == "openai":
        return {"error": {"message": message, "type": "invalid_request_error", "param": "tools", "code": None}}
    return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}


def openai_message(body: dict, text: str | None, calls: list | None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-standin{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "standin"),
        "choices": [{
            "index": 0, "message": message, "logprobs": None,
            "finish_reason": "tool_calls" if calls else "stop",
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def anthropic_message(body: dict, content: list) -> dict:
    return {
        "id": f"msg_standin{time.monotonic_ns()}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "standin"),
        "content": content,
        "stop_reason": "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--lenient", action="store_true", help="record violations but answer anyway")
    args = parser.parse_args()
    standin = StandIn(lenient=args.lenient or None, port=args.port)
    url = standin.start()
    print(f"stand-in model serving on {url}  (OpenAI: {url}/v1, Anthropic: {url})", flush=True)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # A background job ignores SIGINT by default, and a supervisor stops it with SIGTERM:
    # either way the summary is still printed.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
        print(standin.summary())
        for violation in standin.violations():
            print(f"  {violation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The First Run Discovery lifecycle through `sop mcp`, driven by the official MCP Python SDK.

One `sop mcp` process per role, each bound to its system when it starts (the model never
names an actor): System4 drafts, System5 reads and approves, System3 executes, each System1
waits for its ready tasks and works them, System3 reviews each task and the run. No language
model: the calls a model would make, made in order, printed as a transcript.

Exits 0 when the run completed, its review is recorded, and the database and the audit
trail agree; 1 otherwise.

Environment (as examples/python/run_test.sh sets it): SOP_BIN (the sop binary), SOP_TEAM,
SOP_S1_IDS (comma separated), SOP_S3_ID, SOP_S4_ID, SOP_S5_ID, SOP_DATABASE_URL (SQLite),
and the connection settings the sop binary reads (SOP_NATS_URL, SOP_SUBJECT_PREFIX).
"""

import asyncio
import json
import os
import sqlite3
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

PROCEDURE = Path(__file__).resolve().parent.parent / "first-run-discovery.json"


class Failed(Exception):
    pass


class Agent:
    """One MCP session: a system's tools, called as a model would."""

    def __init__(self, role: str, session: ClientSession):
        self.role = role
        self.session = session

    async def tools(self) -> list[str]:
        listed = await self.session.list_tools()
        return [t.name for t in listed.tools]

    async def call(self, tool: str, arguments: dict, expect_error: bool = False) -> dict:
        result = await self.session.call_tool(tool, arguments)
        body = result.structuredContent
        if body is None:
            body = json.loads(result.content[0].text)
        shown = body.get("result", body) if not result.isError else body
        print(f"{self.role:8} {tool:20} {'error' if result.isError else 'ok':5} "
              f"{json.dumps(shown)[:150]}")
        if result.isError != expect_error:
            raise Failed(f"{self.role} {tool}: {body}")
        return body


async def agent(stack: AsyncExitStack, role: str, actor: str) -> Agent:
    params = StdioServerParameters(
        command=os.environ["SOP_BIN"],
        args=["mcp", "--actor", actor],
        env=dict(os.environ),
    )
    read, write = await stack.enter_async_context(stdio_client(params))
    session = await stack.enter_async_context(ClientSession(read, write))
    info = await session.initialize()
    print(f"{role:8} connected to {info.serverInfo.name} {info.serverInfo.version}")
    return Agent(role, session)


async def lifecycle() -> None:
    async with AsyncExitStack() as stack:
        s4 = await agent(stack, "System4", os.environ["SOP_S4_ID"])
        s5 = await agent(stack, "System5", os.environ["SOP_S5_ID"])
        s3 = await agent(stack, "System3", os.environ["SOP_S3_ID"])
        s1s = [
            await agent(stack, f"System1#{i + 1}", s1)
            for i, s1 in enumerate(os.environ["SOP_S1_IDS"].split(","))
        ]

        # Each role sees only its own commands.
        tools = {a.role: set(await a.tools()) for a in [s4, s5, s3, *s1s]}
        for role, names in tools.items():
            print(f"{role:8} {len(names)} tools")
        assert "procedure_draft" in tools["System4"], tools["System4"]
        assert "procedure_approve" not in tools["System4"]
        assert "procedure_approve" in tools["System5"]
        assert "procedure_execute" in tools["System3"]
        assert "task_review" not in tools["System1#1"]
        assert "task_wait_ready" in tools["System1#1"]

        draft = await s4.call("procedure_draft", json.loads(PROCEDURE.read_text()))
        procedure = draft["result"]["procedure_id"]
        # Executed before System5 approved it: refused, with a code that says what to do next.
        refused = await s3.call("procedure_execute", {"series_id": procedure}, expect_error=True)
        assert refused["code"] == "invalid_state", refused

        read = await s5.call("procedure_get", {"procedure_id": procedure})
        digest = read["procedure"]["digest"]
        await s5.call("procedure_approve", {"procedure_id": procedure, "digest": digest})
        # Every System1 waits for work while System3 executes: the one given the first task
        # gets it (found ready, or woken by its task.ready), the other none.
        waiting = [
            asyncio.create_task(s1.call("task_wait_ready", {"timeout_seconds": 5})) for s1 in s1s
        ]
        run = (await s3.call("procedure_execute", {"series_id": procedure}))["result"]
        run_id, tasks = run["run_id"], run["task_ids"]
        woken = [t["task_id"] for w in await asyncio.gather(*waiting) for t in w["tasks"]]
        if woken != [tasks[0]]:
            raise Failed(f"the waiting System1s got {woken}, not the first task {tasks[0]}")

        done: set[str] = set()
        while len(done) < len(tasks):
            progressed = False
            for s1 in s1s:
                ready = (await s1.call("task_wait_ready", {"timeout_seconds": 2}))["tasks"]
                for task in ready:
                    task_id = task["task_id"]
                    await s1.call("task_start", {"task_id": task_id})
                    await s1.call(
                        "task_complete",
                        {"task_id": task_id, "result": f"Done: {task['name']}"},
                    )
                    await s3.call(
                        "task_review",
                        {"task_id": task_id, "verdict": "approve", "reasoning": "Complete"},
                    )
                    done.add(task_id)
                    progressed = True
            if not progressed:
                raise Failed(f"no System1 had a ready task; {len(done)} of {len(tasks)} done")

        detail = await s3.call("run_get", {"run_id": run_id})
        if detail["run"]["status"] != "completed":
            raise Failed(f"run ended {detail['run']['status']}")
        await s3.call(
            "initiative_review",
            {
                "initiative_id": run["initiative_id"],
                "outcome": "succeeded",
                "summary": "Discovery done through MCP",
                "lessons": ["Every role worked through its own tools"],
            },
        )
        trail = await s3.call("audit_get", {"run_id": run_id})
        kinds = [e["type"] for e in trail["entries"]]
        for kind in ("run.started", "task.ready", "run.completed", "initiative.reviewed"):
            if kind not in kinds:
                raise Failed(f"no {kind} in the run's events: {kinds}")
        check_database(run_id)
        await over_http(os.environ["SOP_S1_IDS"].split(",")[0], tasks)
        await over_http_with_token(tasks)
        print(f"lifecycle: run {run_id} completed, {len(tasks)} tasks, {len(kinds)} events")


async def over_http(actor: str, tasks: list[str]) -> None:
    """The same server over Streamable HTTP (`sop mcp --http`): a System1 lists its tasks."""
    server = await asyncio.create_subprocess_exec(
        os.environ["SOP_BIN"], "mcp", "--actor", actor, "--http", "127.0.0.1:0",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = None
        while url is None:
            line = (await server.stderr.readline()).decode()
            if not line:
                raise Failed("sop mcp --http exited before serving")
            if "serving MCP on " in line:
                url = line.split("serving MCP on ", 1)[1].strip()
        async with streamablehttp_client(url) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                http = Agent("HTTP S1", session)
                mine = await http.call("task_list", {})
                if not {t["task_id"] for t in mine["tasks"]} <= set(tasks):
                    raise Failed(f"task_list over HTTP: {mine}")
    finally:
        server.terminate()
        await server.wait()


async def serving_url(server: asyncio.subprocess.Process) -> str:
    """The URL `sop mcp --http` prints once it listens."""
    while True:
        line = (await server.stderr.readline()).decode()
        if not line:
            raise Failed("sop mcp --http exited before serving")
        if "serving MCP on " in line:
            return line.split("serving MCP on ", 1)[1].strip()


async def over_http_with_token(tasks: list[str]) -> None:
    """One HTTP server for every system (`sop mcp --http` without --actor): a System1 comes in
    with the bearer token an operator issued for it; without a token the server answers 401."""
    issued = await asyncio.create_subprocess_exec(
        os.environ["SOP_BIN"], "--json", "--team", os.environ["SOP_TEAM"], "--actor",
        "System1/alpha", "token", "issue", "--label", "lifecycle.py", "--expires", "1h",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await issued.communicate()
    if issued.returncode != 0:
        raise Failed("sop token issue failed")
    token = json.loads(out)["token"]
    server = await asyncio.create_subprocess_exec(
        os.environ["SOP_BIN"], "mcp", "--http", "127.0.0.1:0", stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = await serving_url(server)
        try:
            async with streamablehttp_client(url) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await session.initialize()
            raise Failed("the server let a request without a token in")
        except Failed:
            raise
        except BaseException as refused:  # the SDK raises the 401 inside its task group
            if "401" not in repr(refused):
                raise Failed(f"without a token: {refused!r}, not a 401")
        headers = {"Authorization": f"Bearer {token}"}
        async with streamablehttp_client(url, headers=headers) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                http = Agent("TOKEN S1", session)
                mine = await http.call("task_list", {})
                if not mine["tasks"] or not {t["task_id"] for t in mine["tasks"]} <= set(tasks):
                    raise Failed(f"task_list with System1/alpha's token: {mine}")
                refused = await http.call("procedure_execute", {"series_id": tasks[0]},
                                          expect_error=True)
                if refused["code"] != "forbidden":
                    raise Failed(f"a System1's token executed: {refused}")
    finally:
        server.terminate()
        await server.wait()


def check_database(run_id: str) -> None:
    url = os.environ["SOP_DATABASE_URL"]
    path = url.removeprefix("sqlite://").split("?")[0]
    db = sqlite3.connect(path)
    key = bytes.fromhex(run_id.replace("-", ""))
    status = db.execute("SELECT status FROM procedure_run WHERE id = ?", (key,)).fetchone()
    reviews = db.execute("SELECT COUNT(*) FROM run_review WHERE run_id = ?", (key,)).fetchone()
    print(f"database: run {status[0] if status else None}, {reviews[0]} review")
    if status != ("completed",) or reviews != (1,):
        raise Failed(f"the database has run {status}, reviews {reviews}")


def main() -> int:
    try:
        asyncio.run(asyncio.wait_for(lifecycle(), float(os.environ.get("SOP_AGENT_TIMEOUT", 120))))
    except (Failed, AssertionError, asyncio.TimeoutError) as e:
        print(f"lifecycle failed: {e!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

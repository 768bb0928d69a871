#!/usr/bin/env python3
"""How long one tool call takes through `sop mcp`, as a host sees it: the official MCP Python
SDK calls `procedure_list` (a query the worker answers) N times over stdio, over Streamable
HTTP bound to one system, and over HTTP with a bearer token, each on one kept-alive
session; then a bare JSON-RPC client (a line per message over stdio, HTTP/1.1 on one socket
that leaves Nagle on, as many clients do) does the same over stdio and HTTP, so the two
transports are compared without the SDK's own costs. Prints p50 and p90 per transport. A
measurement, not a test: it asserts nothing about time. docs/benchmarks.md gives the method
and the latest figures.

Environment as examples/python/run_test.sh sets it (SOP_BIN, SOP_TEAM, SOP_S1_IDS, the
connection settings); SOP_ROUNDTRIPS sets N (default 300).
"""

import asyncio
import json
import os
import socket
import statistics
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

CALLS = int(os.environ.get("SOP_ROUNDTRIPS", 300))


async def timed(session: ClientSession) -> list[float]:
    await session.initialize()
    await session.call_tool("procedure_list", {})  # the first call binds and warms up
    took = []
    for _ in range(CALLS):
        start = time.perf_counter()
        result = await session.call_tool("procedure_list", {})
        took.append((time.perf_counter() - start) * 1000)
        if result.isError:
            raise SystemExit(f"procedure_list failed: {result.content}")
    return took


async def http_server(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    server = await asyncio.create_subprocess_exec(
        os.environ["SOP_BIN"], "mcp", "--http", "127.0.0.1:0", *args, stderr=asyncio.subprocess.PIPE
    )
    while True:
        line = (await server.stderr.readline()).decode()
        if not line:
            raise SystemExit("sop mcp --http exited before serving")
        if "serving MCP on " in line:
            return server, line.split("serving MCP on ", 1)[1].strip()


def report(name: str, took: list[float]) -> None:
    q = statistics.quantiles(took, n=10)
    print(f"{name:14} {CALLS} calls  p50 {statistics.median(took):6.2f} ms  p90 {q[8]:6.2f} ms")


async def main() -> None:
    actor = os.environ["SOP_S1_IDS"].split(",")[0]
    params = StdioServerParameters(command=os.environ["SOP_BIN"], args=["mcp", "--actor", actor],
                                   env=dict(os.environ))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        report("stdio", await timed(session))

    server, url = await http_server("--actor", actor)
    try:
        async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as session:
            report("http", await timed(session))
    finally:
        server.terminate()
        await server.wait()

    issued = await asyncio.create_subprocess_exec(
        os.environ["SOP_BIN"], "--json", "--actor", actor, "token", "issue", "--expires", "1h",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await issued.communicate()
    if issued.returncode != 0:
        print("http + token   (this sop issues no tokens)")
        return
    token = json.loads(out)["token"]
    server, url = await http_server()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with streamablehttp_client(url, headers=headers) as (read, write, _), \
                ClientSession(read, write) as session:
            report("http + token", await timed(session))
    finally:
        server.terminate()
        await server.wait()


INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "roundtrip", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(n: int) -> dict:
    return {"jsonrpc": "2.0", "id": n, "method": "tools/call",
            "params": {"name": "procedure_list", "arguments": {}}}


async def bare_stdio(actor: str) -> list[float]:
    child = await asyncio.create_subprocess_exec(
        os.environ["SOP_BIN"], "mcp", "--actor", actor,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    async def send(message: dict) -> None:
        child.stdin.write((json.dumps(message) + "\n").encode())
        await child.stdin.drain()
        while "id" in message:
            if json.loads(await child.stdout.readline()).get("id") == message["id"]:
                return

    await send(INIT)
    await send(INITIALIZED)
    await send(call(1))
    took = []
    for n in range(CALLS):
        start = time.perf_counter()
        await send(call(n + 2))
        took.append((time.perf_counter() - start) * 1000)
    child.stdin.close()
    await child.wait()
    return took


def bare_http(url: str) -> list[float]:
    authority = url.removeprefix("http://").split("/", 1)[0]
    host, port = authority.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    replies = sock.makefile("rb")
    session = None

    def send(message: dict) -> None:
        nonlocal session
        body = json.dumps(message).encode()
        head = (f"POST /mcp HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n"
                f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\n")
        if session:
            head += f"Mcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-06-18\r\n"
        sock.sendall(head.encode() + b"\r\n" + body)
        replies.readline()
        headers = {}
        while (line := replies.readline()) not in (b"\r\n", b""):
            name, value = line.decode().split(":", 1)
            headers[name.strip().lower()] = value.strip()
        session = session or headers.get("mcp-session-id")
        if headers.get("transfer-encoding") == "chunked":
            while (size := int(replies.readline().strip(), 16)) > 0:
                replies.read(size + 2)
            replies.readline()
        else:
            replies.read(int(headers.get("content-length", 0)))

    send(INIT)
    send(INITIALIZED)
    send(call(1))
    took = []
    for n in range(CALLS):
        start = time.perf_counter()
        send(call(n + 2))
        took.append((time.perf_counter() - start) * 1000)
    sock.close()
    return took


async def bare(actor: str) -> None:
    report("bare stdio", await bare_stdio(actor))
    server, url = await http_server("--actor", actor)
    try:
        report("bare http", await asyncio.to_thread(bare_http, url))
    finally:
        server.terminate()
        await server.wait()


if __name__ == "__main__":
    asyncio.run(main())
    asyncio.run(bare(os.environ["SOP_S1_IDS"].split(",")[0]))
    sys.exit(0)

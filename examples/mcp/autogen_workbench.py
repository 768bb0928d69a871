#!/usr/bin/env python3
"""AutoGen's MCP workbench (autogen-ext[mcp] 0.7, with mcp<2) on `sop mcp` bound to a System3:
it lists the tools and calls one. No language model: the workbench is what an AutoGen agent
is given as its tools.

Environment as examples/python/run_test.sh sets it (SOP_BIN, SOP_S3_ID, connection settings).
"""

import asyncio
import os
import sys

from autogen_ext.tools.mcp import McpWorkbench, StdioServerParams


async def main() -> None:
    params = StdioServerParams(
        command=os.environ["SOP_BIN"],
        args=["mcp", "--actor", os.environ["SOP_S3_ID"]],
        env=dict(os.environ),
        read_timeout_seconds=30,
    )
    async with McpWorkbench(server_params=params) as workbench:
        tools = await workbench.list_tools()
        names = [t["name"] for t in tools]
        print(f"autogen: System3 has {len(names)} tools: {', '.join(names)}")
        assert "procedure_execute" in names and "task_review" in names, names
        assert "procedure_approve" not in names and "procedure_draft" not in names, names
        listed = await workbench.call_tool("procedure_list", {"status": "approved"})
        print(f"autogen: procedure_list → error={listed.is_error} {listed.to_text()[:120]}")
        assert not listed.is_error, listed
        refused = await workbench.call_tool("procedure_execute", {"series_id": "not-a-uuid"})
        print(f"autogen: procedure_execute(bad id) → error={refused.is_error} {refused.to_text()[:160]}")
        assert refused.is_error and "invalid_payload" in refused.to_text(), refused


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    except (AssertionError, asyncio.TimeoutError) as e:
        print(f"autogen workbench failed: {e!r}", file=sys.stderr)
        sys.exit(1)

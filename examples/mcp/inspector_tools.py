#!/usr/bin/env python3
"""The MCP Inspector's CLI mode (npm `@modelcontextprotocol/inspector`) lists the tools of
`sop mcp` bound to a System5: a third client, written by others, over stdio.

Environment as examples/python/run_test.sh sets it (SOP_BIN, SOP_S5_ID, connection settings);
needs `npx`.
"""

import json
import os
import subprocess
import sys

INSPECTOR = "@modelcontextprotocol/inspector@0"


def main() -> int:
    command = ["npx", "-y", INSPECTOR, "--cli", os.environ["SOP_BIN"], "mcp",
               "--actor", os.environ["SOP_S5_ID"], "--method", "tools/list"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        print(f"inspector failed ({out.returncode}): {out.stderr[-2000:]}", file=sys.stderr)
        return 1
    names = [t["name"] for t in json.loads(out.stdout)["tools"]]
    print(f"inspector: System5 has {len(names)} tools: {', '.join(names)}")
    if "run_approve" not in names or "procedure_draft" in names:
        print("inspector: not System5's tools", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

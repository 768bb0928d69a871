#!/usr/bin/env python3
"""docs/agents.md's Python snippets, run as pasted: each block that ends in `asyncio.run(...)`
is written to a file and run with `sop` on PATH and the connection settings in the
environment, as a reader would. The AutoGen one needs a model: its OpenAI client reads
OPENAI_BASE_URL and OPENAI_API_KEY, pointed here at the stand-in model of examples/autogen.

Environment as examples/python/run_test.sh sets it (SOP_BIN, SOP_NATS_URL,
SOP_SUBJECT_PREFIX; its team is `discovery`, as in the snippets).
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "examples" / "autogen"))
from standin_model import StandIn  # noqa: E402


def main() -> int:
    guide = (ROOT / "docs" / "agents.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", guide, re.S) if "asyncio.run(" in b]
    if len(blocks) < 2:
        print(f"snippets: found {len(blocks)} runnable Python blocks in docs/agents.md, not 2")
        return 1
    standin = StandIn(lenient=False)
    env = dict(os.environ)
    env["PATH"] = f"{Path(os.environ['SOP_BIN']).parent}:{env['PATH']}"
    env["OPENAI_BASE_URL"] = standin.start() + "/v1"
    env["OPENAI_API_KEY"] = "stand-in"
    failed = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n, block in enumerate(blocks, 1):
                path = Path(tmp) / f"snippet{n}.py"
                path.write_text(block)
                ran = subprocess.run([sys.executable, str(path)], env=env, capture_output=True,
                                     text=True, timeout=120)
                first = block.strip().splitlines()[0]
                print(f"snippet {n} ({first}): exit {ran.returncode}")
                print("\n".join("  " + l for l in (ran.stdout + ran.stderr).strip().splitlines()[-5:]))
                failed += ran.returncode != 0
    finally:
        standin.stop()
    if standin.violations():
        print(f"snippets: the stand-in found {len(standin.violations())} violation(s)")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

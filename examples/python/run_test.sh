#!/usr/bin/env bash
# End-to-end check that a Python agent can drive a whole SOP lifecycle: by default agent.py
# (nats-py only); given another script, that one (examples/mcp/lifecycle.py: the MCP SDK).
#
#   run_test.sh [path-to-sop-binary [agent-script]]
#
# The binary defaults to the one the Quickstart builds (`cargo run --release`),
# target/release/sop, else target/debug/sop (`cargo build`); the script defaults to agent.py.
#
# Needs a NATS server with JetStream at SOP_NATS_URL (default nats://127.0.0.1:4222), the
# `nats-py` package, and what the script imports. Everything else is private to this run: a temporary SQLite database, a
# random subject prefix (so its streams and subjects never meet another run's), a team and an
# HTTP port of its own, so it runs beside a worker already running. Ends with one line,
# `python agent: N passed, N failed`, and the agent's status.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [[ -n "${1:-}" ]]; then
    sop="$1"
elif [[ -x "$root/target/release/sop" ]]; then
    sop="$root/target/release/sop"
else
    sop="$root/target/debug/sop"
fi
agent="${2:-$here/agent.py}"
nats_url="${SOP_NATS_URL:-nats://127.0.0.1:4222}"

status=1
tmp=""
prefix=""
worker_pid=""

stop_worker() {
    if [[ -n "$worker_pid" ]] && kill -0 "$worker_pid" 2>/dev/null; then
        kill -TERM "$worker_pid" 2>/dev/null || true
        wait "$worker_pid" 2>/dev/null || true
    fi
    worker_pid=""
}

delete_streams() {
    # The worker created streams named after the prefix (commands, outcomes, one per team's
    # events): remove them (best effort).
    python3 - "$nats_url" "$prefix" 2>/dev/null <<'PY' || echo "run_test.sh: could not delete the streams of $prefix" >&2
import asyncio, re, sys
import nats

async def main(url, prefix):
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    js = nc.jetstream()
    # The worker's rule: non-alphanumerics become "_", upper-cased, then "_SOP_<KIND>"
    # (SOP_EVENTS_<team> for a team's events).
    stream_prefix = re.sub(r"[^A-Za-z0-9]", "_", prefix).upper() + "_SOP_"
    for info in await js.streams_info():
        if info.config.name.startswith(stream_prefix):
            try:
                await js.delete_stream(info.config.name)
            except nats.js.errors.NotFoundError:
                pass
    await nc.close()

asyncio.run(main(*sys.argv[1:]))
PY
}

finish() {
    # Runs on every exit path (errors included, thanks to the EXIT trap).
    trap - EXIT
    set +e
    stop_worker
    if [[ "$status" -ne 0 && -n "$tmp" && -f "$tmp/worker.log" ]]; then
        echo "--- worker log (last 40 lines) ---"
        tail -n 40 "$tmp/worker.log" | sed 's/\x1b\[[0-9;]*m//g'  # without colour codes
        echo "---"
    fi
    [[ -n "$prefix" ]] && delete_streams
    [[ -n "$tmp" ]] && rm -rf "$tmp"
    if [[ "$status" -eq 0 ]]; then
        echo "python agent: 1 passed, 0 failed"
    else
        echo "python agent: 0 passed, 1 failed"
    fi
    # `status` is the agent's exit status once it ran, 1 for any earlier failure.
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

fail() {
    echo "run_test.sh: $*" >&2
    exit 1
}

if [[ ! -x "$sop" ]]; then
    [[ -z "${1:-}" ]] || fail "no sop binary at $sop"
    fail "no sop binary at $root/target/release/sop or $root/target/debug/sop: build one from \
$root with \`cargo build --release\` (or \`cargo build\`), or pass its path as the first argument"
fi
command -v python3 >/dev/null || fail "python3 is not installed"
python3 -c 'import nats' 2>/dev/null ||
    fail "the Python package nats-py is missing (install it with: pip install nats-py)"

tmp="$(mktemp -d)"
prefix="py$RANDOM$$"
# The name docs/agents.md's snippets use, so they run here as pasted (the prefix keeps it private).
team="discovery"
export SOP_DATABASE_URL="sqlite://$tmp/sop.db?mode=rwc"
export SOP_SUBJECT_PREFIX="$prefix"
export SOP_NATS_URL="$nats_url"
# Its own metrics port too (any free one), so it runs beside a worker already serving 9464.
export SOP_HTTP_ADDR="127.0.0.1:0"

# Start the worker and wait until it serves: the team is registered through it.
"$sop" worker >"$tmp/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 1 300); do
    grep -q "worker started" "$tmp/worker.log" && break
    kill -0 "$worker_pid" 2>/dev/null || fail "the worker exited during start-up"
    sleep 0.1
done
grep -q "worker started" "$tmp/worker.log" || fail "the worker did not start within 30 s"

# Register the team (same shape as deploy/team.example.json); the ids come back as JSON.
cat >"$tmp/team.json" <<EOF
{
  "name": "$team",
  "systems": [
    { "name": "System1/alpha", "type": "system1", "skills": ["interviewing"] },
    { "name": "System1/beta", "type": "system1" },
    { "name": "System3/root", "type": "system3" },
    { "name": "System4/root", "type": "system4" },
    { "name": "System5/root", "type": "system5" }
  ]
}
EOF
"$sop" team apply --json --file "$tmp/team.json" >"$tmp/team.out" 2>"$tmp/team.log" ||
    { cat "$tmp/team.log" >&2; fail "sop team apply failed"; }

ids() {
    # Prints the ids of the team's systems of type $1, comma separated.
    python3 -c '
import json, sys
try:
    team = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit("run_test.sh: sop team apply did not print JSON:\n" + open(sys.argv[1]).read())
print(",".join(s["id"] for s in team["systems"] if s["type"] == sys.argv[2]))
' "$tmp/team.out" "$1"
}
export SOP_TEAM="$team"
SOP_S1_IDS="$(ids system1)"
SOP_S3_ID="$(ids system3)"
SOP_S4_ID="$(ids system4)"
SOP_S5_ID="$(ids system5)"
export SOP_S1_IDS SOP_S3_ID SOP_S4_ID SOP_S5_ID
[[ -n "$SOP_S1_IDS" && -n "$SOP_S3_ID" && -n "$SOP_S4_ID" && -n "$SOP_S5_ID" ]] ||
    fail "could not read the system ids from: $(cat "$tmp/team.out")"
# The names too: agent.py prefers them and resolves them through the query API, so that is tested.
export SOP_S1="System1/alpha,System1/beta" SOP_S3="System3/root" SOP_S4="System4" SOP_S5="System5"


SOP_BIN="$(cd "$(dirname "$sop")" && pwd)/$(basename "$sop")"
export SOP_BIN
echo "worker up ($sop, prefix $prefix); running $(basename "$agent")"
started=$SECONDS
set +e
python3 "$agent"
status=$?
set -e
echo "$(basename "$agent") exited $status after $((SECONDS - started)) s"

# Stop the worker now (rather than only in the trap) so its shutdown shows up in the log.
stop_worker
exit "$status"

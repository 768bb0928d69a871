#!/usr/bin/env python3
"""A whole SOP lifecycle driven from Python, with nothing but the public `nats-py` client.

This one program plays every VSM role against a running `sop worker`:

    System4  drafts the "First Run Discovery" procedure   (procedure.draft)
    System5  approves it                                  (procedure.approve)
    System3  executes it                                  (procedure.execute)
    System1  works each task assigned to it               (task.start, then task.complete)
    System3  approves each completed task                 (task.review, verdict "approve")
    System3  records the post-run review                  (initiative.review)

It exits 0 once the `initiative.reviewed` event arrives, and 1 on any rejected command, a
failed or canceled run, a rejected task, or when the whole thing takes longer than
SOP_AGENT_TIMEOUT seconds (default 60).

The contract in brief (see README.md beside this file):

* Commands go to JetStream on `<prefix>.<family>.<verb>` (e.g. `procedure.draft`) as a JSON
  envelope `{schema_version, command_id, actor, payload}`, with the headers `Nats-Msg-Id`
  (= command_id, JetStream de-duplication) and `Sop-Reply-To` (a core-NATS inbox the worker
  sends the command's outcome to).
* Events arrive on `<prefix>.<family>.<past-tense>.<team>` (e.g. `task.ready.discovery`); a plain
  core subscription sees them live.
* Queries are core-NATS requests on `<prefix>.sop.query.<name>`; `system.get` turns a system's
  name within its team into its id.

Configuration (environment):
    SOP_NATS_URL        nats://127.0.0.1:4222 by default
    SOP_SUBJECT_PREFIX  subject prefix, empty by default
    SOP_TEAM            the team's name (events carry it as their last subject token)
    SOP_S1              comma-separated System1s, each a name within the team
                        (`System1/alpha`) or an id
    SOP_S3, SOP_S4, SOP_S5
                        the System3, System4, System5: a name (`System3/root`, or just
                        `System3` when the team has one System3) or an id
    SOP_S1_IDS, SOP_S3_ID, SOP_S4_ID, SOP_S5_ID
                        the same, older spelling; used when SOP_S1... is not set
    SOP_AGENT_TIMEOUT   overall bound in seconds (default 60)
"""

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import nats
from nats.errors import NoRespondersError
from nats.js.errors import NoStreamResponseError
from nats.errors import TimeoutError as NatsTimeoutError

SCHEMA_VERSION = 1
# How long one command may take to be answered (the worker answers in milliseconds).
OUTCOME_TIMEOUT = 15.0
# How long a query may take to be answered (queries are read-only and answered at once).
QUERY_TIMEOUT = 5.0
# The worker marks a refused query with this header; the body is then {"error": {...}}.
SERVICE_ERROR_HEADER = "Nats-Service-Error"
PROCEDURE_FILE = Path(__file__).resolve().parent.parent / "first-run-discovery.json"


class AgentFailure(Exception):
    """Something the lifecycle cannot go on from: printed, then exit 1."""


class CommandRejected(AgentFailure):
    def __init__(self, command: str, error: dict):
        code = error.get("code", "?")
        message = error.get("message", "")
        field = f" (field {error['field']})" if error.get("field") else ""
        super().__init__(f"{command} rejected: {code}: {message}{field}")
        self.error = error


def log(role: str, text: str) -> None:
    print(f"[{role}] {text}", flush=True)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value.strip() == "":
        raise AgentFailure(f"environment variable {name} is required")
    return value.strip()


def systems_env(name: str, older: str, example: str) -> tuple[str, list[str]]:
    """The variable that names a role's systems, `name`, else its older spelling `older`, and
    the names or ids it lists (comma separated)."""
    for var in (name, older):
        given = [s.strip() for s in os.environ.get(var, "").split(",") if s.strip()]
        if given:
            return var, given
    raise AgentFailure(
        f"environment variable {name} is required (a name such as {example}, or an id)"
    )


def as_id(given: str) -> str | None:
    """`given` as a system id (in the canonical form events carry), or None for a name."""
    try:
        return str(uuid.UUID(given))
    except ValueError:
        return None


class Config:
    def __init__(self) -> None:
        self.nats_url = env("SOP_NATS_URL", "nats://127.0.0.1:4222")
        # The worker accepts the prefix with or without a trailing dot.
        self.prefix = os.environ.get("SOP_SUBJECT_PREFIX", "").strip().rstrip(".")
        self.team = env("SOP_TEAM")
        # Each role's systems as given (names or ids), with the variable that gave them.
        self.given = {
            "system1": systems_env("SOP_S1", "SOP_S1_IDS", "System1/alpha"),
            "system3": systems_env("SOP_S3", "SOP_S3_ID", "System3/root"),
            "system4": systems_env("SOP_S4", "SOP_S4_ID", "System4/root"),
            "system5": systems_env("SOP_S5", "SOP_S5_ID", "System5/root"),
        }
        for system_type in ("system3", "system4", "system5"):
            var, given = self.given[system_type]
            if len(given) > 1:
                raise AgentFailure(f"{var} names one system, not {len(given)}")
        self.timeout = float(env("SOP_AGENT_TIMEOUT", "60"))
        # Set by `Bus.resolve_systems` once connected: the ids, and the names of those given by
        # name, for the logs.
        self.s1_ids: set[str] = set()
        self.s3 = self.s4 = self.s5 = ""
        self.labels: dict[str, str] = {}

    def subject(self, *tokens: str) -> str:
        """`subject("task", "start")` → `<prefix>.task.start` (no leading dot without prefix)."""
        return ".".join(([self.prefix] if self.prefix else []) + list(tokens))

    def event(self, family: str, kind: str) -> str:
        """An event subject of this team; `*` works as a wildcard for core subscriptions."""
        return self.subject(family, kind, self.team)


class Bus:
    """The two things every agent does: send a command and await its outcome; listen to events."""

    def __init__(self, nc, cfg: Config) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.cfg = cfg
        self.seen_events: set[str] = set()

    async def send(self, command: str, actor: str, payload: dict) -> dict:
        """Publishes `command` (e.g. "task.start") as `actor`; returns the accepted `result`.

        Raises CommandRejected when the worker refuses it.
        """
        command_id = str(uuid.uuid4())
        envelope = {
            "schema_version": SCHEMA_VERSION,
            "command_id": command_id,
            "actor": actor,
            "payload": payload,
        }
        # Subscribe to the reply inbox BEFORE publishing: the outcome is a plain core-NATS
        # message, sent once and lost if nobody listens yet.
        inbox = self.nc.new_inbox()
        replies = await self.nc.subscribe(inbox)
        try:
            try:
                ack = await self.js.publish(
                    self.cfg.subject(*command.split(".")),
                    json.dumps(envelope).encode(),
                    headers={"Nats-Msg-Id": command_id, "Sop-Reply-To": inbox},
                )
            except (NoRespondersError, NoStreamResponseError):
                # No stream listens on the subject (nats-py reports it as "no response from
                # stream"): the worker, which creates the streams, never ran with this prefix.
                raise AgentFailure(
                    f"no JetStream stream takes {command}: is `sop worker` running with "
                    f"SOP_SUBJECT_PREFIX={self.cfg.prefix!r}?"
                ) from None
            if ack.duplicate:
                # Only happens when re-sending a command id within the stream's duplicate
                # window (2 min); the worker then never answers this copy. A real agent would
                # read the first copy's outcome from the outcomes stream. Fresh ids never hit it.
                raise AgentFailure(f"{command} {command_id} was dropped as a duplicate")
            try:
                msg = await replies.next_msg(timeout=OUTCOME_TIMEOUT)
            except NatsTimeoutError:
                raise AgentFailure(
                    f"no outcome for {command} {command_id} within {OUTCOME_TIMEOUT:.0f}s"
                ) from None
        finally:
            await replies.unsubscribe()
        outcome = json.loads(msg.data)
        if outcome.get("status") != "accepted":
            raise CommandRejected(command, outcome.get("error") or {})
        return outcome.get("result") or {}

    async def query(self, name: str, request: dict) -> dict:
        """Asks the query `name` (e.g. "system.get"); returns its answer, or raises AgentFailure
        with the worker's refusal."""
        subject = self.cfg.subject("sop", "query", *name.split("."))
        try:
            msg = await self.nc.request(
                subject, json.dumps(request).encode(), timeout=QUERY_TIMEOUT
            )
        except (NoRespondersError, NatsTimeoutError):
            raise AgentFailure(
                f"no answer to the {name} query: is `sop worker` running with "
                f"SOP_SUBJECT_PREFIX={self.cfg.prefix!r}?"
            ) from None
        answer = json.loads(msg.data)
        if msg.headers and SERVICE_ERROR_HEADER in msg.headers:
            error = answer.get("error") or {}
            raise AgentFailure(f"{name}: {error.get('code', '?')}: {error.get('message', '')}")
        return answer

    async def resolve_systems(self) -> None:
        """Turns the systems given by name into ids (`system.get`, within SOP_TEAM), checking
        each is of its role's type; ids are taken as they are, as the worker checks them."""
        cfg = self.cfg
        resolved: dict[str, list[str]] = {}
        for system_type, (var, given) in cfg.given.items():
            ids = []
            for text in given:
                system_id = as_id(text)
                if system_id is None:
                    try:
                        system = await self.query("system.get", {"team": cfg.team, "name": text})
                    except AgentFailure as e:
                        raise AgentFailure(f"{var}={text!r}: {e}") from None
                    if system["type"] != system_type:
                        raise AgentFailure(
                            f"{var}={text!r} is {system['name']}, a {system['type']}, "
                            f"not a {system_type}"
                        )
                    system_id = system["id"]
                    cfg.labels[system_id] = system["name"]
                    log("setup", f"{var}: {system['name']} is {system_id}")
                ids.append(system_id)
            resolved[system_type] = ids
        cfg.s1_ids = set(resolved["system1"])
        cfg.s3, cfg.s4, cfg.s5 = (resolved[t][0] for t in ("system3", "system4", "system5"))

    async def listen(self, family: str, kind: str, handler) -> None:
        """Calls `handler(event)` for each event on `<prefix>.<family>.<kind>.<team>`.

        Core NATS delivers a copy of every publish, including the rare re-publish the worker's
        relay makes after a crash (JetStream drops it from the stream, core subscribers still
        get it), so events are de-duplicated on `event_id`.
        """

        async def on_msg(msg) -> None:
            event = json.loads(msg.data)
            if event["event_id"] in self.seen_events:
                return
            self.seen_events.add(event["event_id"])
            await handler(event)

        await self.nc.subscribe(self.cfg.event(family, kind), cb=on_msg)


class Lifecycle:
    """Wires the roles together. The main line (`run`) drafts, approves, executes, then waits
    for `run.completed`, records the review and waits for `initiative.reviewed`; the System1
    and System3 reactions in between run from event callbacks."""

    def __init__(self, bus: Bus, cfg: Config) -> None:
        self.bus = bus
        self.cfg = cfg
        loop = asyncio.get_running_loop()
        # Set by the event handlers, awaited by `run`.
        self.run_completed: asyncio.Future = loop.create_future()
        self.reviewed: asyncio.Future = loop.create_future()
        # Set (to an exception) by whatever goes wrong first, wherever it happens.
        self.failure: asyncio.Future = loop.create_future()
        self.stage = "connecting"
        self.procedure_id: str | None = None
        self.run_id: str | None = None
        self.tasks: set[asyncio.Task] = set()

    # -- plumbing ------------------------------------------------------------------------

    def fail(self, error: BaseException) -> None:
        if not self.failure.done():
            self.failure.set_result(error)

    async def until(self, future: asyncio.Future):
        """Awaits `future`, or raises the lifecycle's failure if that comes first."""
        await asyncio.wait({future, self.failure}, return_when=asyncio.FIRST_COMPLETED)
        if self.failure.done():
            raise self.failure.result()
        return future.result()

    @staticmethod
    def resolve(future: asyncio.Future, value) -> None:
        if not future.done():
            future.set_result(value)

    def spawn(self, coro) -> None:
        """Runs a role's reaction concurrently (event callbacks must not block delivery) and
        turns any exception into the failure of the whole lifecycle."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.fail(t.exception())

        task.add_done_callback(done)

    def ours(self, event: dict) -> bool:
        """Only events of the procedure this program drafted (the team may run others).

        Every task, run, initiative and review event carries the provenance of its run
        (`run_id`, `initiative_id`, `procedure_id`, `series_id`, `procedure_version`). The
        procedure id is known before executing, unlike the run id, which only the execute
        outcome tells: filtering on it cannot race with the first task events.
        """
        procedure_id = event["data"].get("procedure_id")
        return self.procedure_id is not None and procedure_id == self.procedure_id

    # -- System1: work the tasks assigned to us -------------------------------------------

    async def on_task_ready(self, event: dict) -> None:
        data = event["data"]
        assignee = data.get("assignee_system_id")
        if not self.ours(event):
            return
        if assignee in self.cfg.s1_ids:
            self.spawn(self.work_task(assignee, data))
        else:
            var = self.cfg.given["system1"][0]
            log("S1", f"task {data['position']} is assigned to {assignee}, not one of {var}")

    async def work_task(self, s1: str, task: dict) -> None:
        who = f"S1 {self.cfg.labels.get(s1, s1[-4:])}"
        log(who, f"task {task['position']} ready: {task['name']}")
        self.stage = f"working task {task['position']}"
        # Commands are processed concurrently by the worker: complete only after the start's
        # outcome is in, or the completion may be checked against a not-yet-started task.
        await self.bus.send("task.start", s1, {"task_id": task["task_id"]})
        log(who, f"task {task['position']} started")
        result = f"Done by {s1}: {task['name']}."
        await self.bus.send("task.complete", s1, {"task_id": task["task_id"], "result": result})
        log(who, f"task {task['position']} completed")

    # -- System3: review each completed task, then the whole run ---------------------------

    async def on_task_completed(self, event: dict) -> None:
        if self.ours(event):
            self.spawn(self.review_task(event["data"]))

    async def review_task(self, task: dict) -> None:
        self.stage = f"reviewing task {task['position']}"
        await self.bus.send(
            "task.review",
            self.cfg.s3,
            {"task_id": task["task_id"], "verdict": "approve", "reasoning": "Looks complete."},
        )
        log("S3", f"task {task['position']} approved")

    async def on_task_rejected(self, event: dict) -> None:
        if self.ours(event):
            self.fail(AgentFailure(f"task {event['data'].get('position')} was rejected"))

    async def on_run_event(self, event: dict) -> None:
        if not self.ours(event):
            return
        kind = event["type"]
        if kind == "run.completed":
            self.resolve(self.run_completed, event["data"])
        elif kind in ("run.failed", "run.canceled"):
            self.fail(AgentFailure(f"{kind}: {json.dumps(event['data'])}"))

    async def on_initiative_reviewed(self, event: dict) -> None:
        # The event may well arrive before the initiative.review outcome: both are published
        # by the same relay pass, the event first.
        if self.ours(event):
            self.resolve(self.reviewed, event["data"])

    # -- the script ------------------------------------------------------------------------

    async def run(self) -> None:
        bus, cfg = self.bus, self.cfg
        self.stage = "resolving names"
        await bus.resolve_systems()

        # Listen before executing: the first task.ready is published as the run starts.
        await bus.listen("task", "ready", self.on_task_ready)
        await bus.listen("task", "completed", self.on_task_completed)
        await bus.listen("task", "rejected", self.on_task_rejected)
        await bus.listen("run", "*", self.on_run_event)
        await bus.listen("initiative", "reviewed", self.on_initiative_reviewed)
        # A subscription is only active once the server has processed it.
        await bus.nc.flush()

        self.stage = "drafting"
        procedure = json.loads(PROCEDURE_FILE.read_text())
        drafted = await bus.send("procedure.draft", cfg.s4, procedure)
        procedure_id = self.procedure_id = drafted["procedure_id"]
        log("S4", f"drafted {procedure['name']!r} v{drafted['version']} ({procedure_id})")

        self.stage = "approving"
        # An approval names the digest of the content System5 read: here as drafted (an agent
        # that reviews first reads it with the procedure.get query).
        approval = {"procedure_id": procedure_id, "digest": drafted["digest"]}
        approved = await bus.send("procedure.approve", cfg.s5, approval)
        log("S5", f"approved v{approved['version']} ({approved['status']})")

        self.stage = "executing"
        # The first task.ready is published before this outcome reaches us; the handlers
        # already know the procedure id, so it is not missed.
        run = await bus.send("procedure.execute", cfg.s3, {"series_id": drafted["series_id"]})
        self.run_id = run["run_id"]
        log("S3", f"run {self.run_id} started with {len(run['task_ids'])} tasks")
        self.stage = "running tasks"

        completed = await self.until(self.run_completed)
        log("S3", f"run completed ({completed['task_counts']})")

        self.stage = "recording the post-run review"
        review = await bus.send(
            "initiative.review",
            cfg.s3,
            {
                "initiative_id": completed["initiative_id"],
                "outcome": "succeeded",
                "summary": "Discovery ran end to end from a Python agent.",
                "lessons": ["The NATS contract needs nothing but a generic NATS client."],
                "follow_ups": [],
            },
        )
        log("S3", f"post-run review {review['review_id']} recorded")

        self.stage = "waiting for initiative.reviewed"
        reviewed = await self.until(self.reviewed)
        log("S3", f"initiative {reviewed['initiative_id']} reviewed ({reviewed['outcome']})")


async def main() -> int:
    started = time.monotonic()
    try:
        cfg = Config()
    except AgentFailure as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        return 1

    async def quiet(_error) -> None:  # nats-py logs connection errors itself otherwise
        pass

    try:
        nc = await nats.connect(
            cfg.nats_url, connect_timeout=5, max_reconnect_attempts=3, error_cb=quiet
        )
    except Exception as e:  # noqa: BLE001 - any connection failure ends the example
        print(f"FAILED: cannot connect to NATS at {cfg.nats_url}: {e!r}", file=sys.stderr)
        return 1

    lifecycle = Lifecycle(Bus(nc, cfg), cfg)
    status = 0
    try:
        await asyncio.wait_for(lifecycle.run(), timeout=cfg.timeout)
        print(f"OK: lifecycle finished in {time.monotonic() - started:.1f}s", flush=True)
    except asyncio.TimeoutError:
        hint = ""
        before_events = lifecycle.stage in ("resolving names", "drafting")
        if not before_events and not lifecycle.bus.seen_events:
            hint = f" (no event arrived on {cfg.event('*', '*')}: check SOP_TEAM)"
        print(
            f"FAILED: timed out after {cfg.timeout:g}s while {lifecycle.stage}{hint}",
            file=sys.stderr,
            flush=True,
        )
        status = 1
    except AgentFailure as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        status = 1
    finally:
        for task in list(lifecycle.tasks):
            task.cancel()
        # close(), not drain(): after a cancelled request, nats-py's drain() can wait out its
        # whole drain_timeout (30 s) for a subscription that will never finish draining.
        await nc.close()
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

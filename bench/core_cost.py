"""relay's core alone: what its own Python costs per request, with no Workers runtime around it.

`python -m bench.core_cost` times `handle` and `deliver` for the small requests of the bench
(a static relay key, a small `/v1/messages` body, a JSON answer and an event stream given as
bytes), with no bindings and no I/O, then the JSON request again with its audit row (made,
priced, grouped 25 rows to a write as under load, and its D1 statements built, none run), on
this CPython and on Pyodide 314 (the Worker's Python, the npm `pyodide` package `make setup`
installs) run by Node. What relay costs in workerd
beyond these figures is the runtime boundary: awaits of JavaScript promises, conversions,
streams, the bindings' own work (BENCHMARKS.md, "Where relay's per-request time goes").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Sequence
from typing import Any
from unittest import mock

from relay.http.messages import Headers, Request, Response
from relay.pipeline import deliver
from relay.pipeline.app import handle
from relay.services import Services
from relay.usage import meter

RELAY_KEY = "bench-relay-key"  # throw-away, like the bench's others
ENV = {
    "RELAY_CLIENT_KEYS": RELAY_KEY,
    "ANTHROPIC_API_KEYS": "bench-upstream-key",
    "RELAY_DEFAULT_RPM": "5000",
    "UPSTREAM_ANTHROPIC_URL": "http://127.0.0.1:9",
}
USAGE = {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
ANSWER = json.dumps(
    {"type": "message", "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "hi"}], "usage": USAGE}
).encode()
EVENTS = b"".join(
    [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":'
        + json.dumps(USAGE).encode()
        + b"}}\n\n",
        *(b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"x"}}\n\n',) * 20,
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":20}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
)
NODE_DRIVER = """
const [indexURL, src, bench, ...args] = process.argv.slice(1);
const { loadPyodide } = await import(indexURL + "pyodide.mjs");
const py = await loadPyodide({ indexURL });
for (const [root, at] of [[src, "/relay-src"], [bench, "/relay-bench"]]) {
  py.FS.mkdirTree(at);
  py.FS.mount(py.FS.filesystems.NODEFS, { root }, at);
}
py.globals.set("args", args);
await py.runPythonAsync(`
import sys
sys.path[:0] = ["/relay-src", "/relay-bench"]
from core_cost import measure
print(await measure(int(args[0])))
`);
"""


class _Upstream:
    """The core's Transport: every call answered at once, as the scenario says."""

    def __init__(self, stream: bool) -> None:
        self.answer = (
            Response(200, [("content-type", "text/event-stream")], EVENTS)
            if stream
            else Response(200, [("content-type", "application/json")], ANSWER)
        )

    async def send(self, method: str, url: str, headers: Any, body: Any, timeout: Any = None) -> Response:
        return Response(self.answer.status, list(self.answer.headers), self.answer.body)

    async def discard(self, body: Any) -> None:
        return None


def _request(stream: bool) -> Request:
    body = json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }
    ).encode()

    async def read_body(limit: int) -> bytes:
        return body

    headers = [
        ("x-api-key", RELAY_KEY),
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
        ("user-agent", "Anthropic/Python 0.40.0"),
        ("x-stainless-lang", "python"),
        ("content-length", str(len(body))),
    ]
    return Request(method="POST", path="/v1/messages", query="", headers=Headers(headers), read_body=read_body)


class _Unwritten:
    """The core's Database, answering every statement at once without running it: the audit
    row's own work (the row, its price, the group's statements and their JSON) is timed,
    not SQLite's."""

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        return []

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        return None

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict]]:
        return [[] for _ in statements]


ROWS_PER_WRITE = 25  # about what a group holds at the bench's concurrency 16


async def _one(services: Services, stream: bool, deferred: list[Awaitable[Any]]) -> None:
    request = _request(stream)
    # The answer's body is bytes, so no stream operation is needed (streams=None).
    await deliver.deliver(await handle(request, ENV, services), request.path, None, deferred.append)


async def _requests(services: Services, stream: bool, count: int) -> None:
    """`count` requests; the work each defers (its group's write) is done every
    ROWS_PER_WRITE requests, so the rows of the ones between join the group it opened."""
    deferred: list[Awaitable[Any]] = []
    for n in range(1, count + 1):
        await _one(services, stream, deferred)
        if n % ROWS_PER_WRITE == 0 or n == count:
            for work in deferred:
                await work
            deferred.clear()


async def measure(rounds: int) -> str:
    """ms per request of each scenario, `rounds` requests after a warm-up, as one line."""
    figures = []
    scenarios = (("json", False, None), ("stream", True, None), ("json with its audit row", False, _Unwritten()))
    with mock.patch.object(meter, "WRITE_DELAY_SECONDS", 0):  # the group is written when its work is awaited
        for name, stream, db in scenarios:
            services = Services(transport=_Upstream(stream), db=db)
            await _requests(services, stream, 100)
            started = time.perf_counter()
            await _requests(services, stream, rounds)
            figures.append(f"{name} {(time.perf_counter() - started) / rounds * 1000:.3f}")
    return f"{sys.implementation.name} {sys.version.split()[0]}: ms per request: " + ", ".join(figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args(argv)
    print(asyncio.run(measure(args.rounds)))
    from devtools.local_worker import ROOT
    from devtools.runtime import NODE_BIN

    pyodide = ROOT / "node_modules" / "pyodide"
    run = subprocess.run(
        [
            str(NODE_BIN / "node"),
            "--input-type=module",
            "-e",
            NODE_DRIVER,
            "--",
            f"{pyodide}/",
            str(ROOT / "src"),
            str(ROOT / "bench"),
            str(args.rounds),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(run.stdout.strip() or run.stderr[-2000:])
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())

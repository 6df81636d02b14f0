"""What the bench measures: the fake upstream, and the targets placed in front of it.

A target is a name, a one-line description for BENCHMARKS.md and a `start` function that
brings it up (registering its shutdown on an ExitStack) and returns where clients point and
which auth fields they send. A peer gateway (LiteLLM, Portkey, claude-code-router, ...) is
one more `Target` in `TARGETS`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from relay.config import DEFAULT_CACHE_POLICY
from tests.workerd import ROOT, LocalWorker, free_port

PASSTHROUGH_CONFIG = ROOT / "bench" / "passthrough" / "wrangler.toml"
# Throw-away keys for a loopback-only run; never real ones.
UPSTREAM_KEY = "bench-upstream-key"
RELAY_KEY = "bench-relay-key"
# relay's largest rate-limit tier (wrangler.toml): the bench stays below it, so relay does
# all its per-request work (the limit check included) without ever answering 429.
RELAY_RPM = "5000"
UPSTREAM_START_S = 30.0


@dataclass(frozen=True)
class Endpoint:
    """Where a target listens: the base URL in the Anthropic SDK convention, and the fields
    that authenticate a client there."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    start: Callable[[str, contextlib.ExitStack], Endpoint]  # (upstream URL, stack) -> endpoint


def start_fake_upstream(stack: contextlib.ExitStack) -> str:
    """The project's fake Anthropic upstream in a process of its own (so that it does not
    share an interpreter lock with the load generator); its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.fakes.upstream", "--anthropic-port", str(port),
                                "--openai-port", str(free_port())],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    stack.callback(_stop, process)
    deadline = time.monotonic() + UPSTREAM_START_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return f"http://127.0.0.1:{port}"
        if process.poll() is not None:
            raise RuntimeError("the fake upstream exited at start")
        time.sleep(0.1)
    raise TimeoutError("the fake upstream did not listen in time")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


def _direct(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
    return Endpoint(upstream, {"x-api-key": UPSTREAM_KEY})


def _relay(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
    worker = stack.enter_context(LocalWorker({
        "RELAY_CLIENT_KEYS": RELAY_KEY, "ANTHROPIC_API_KEYS": UPSTREAM_KEY, "OPENAI_API_KEYS": UPSTREAM_KEY,
        "UPSTREAM_ANTHROPIC_URL": upstream, "RELAY_DEFAULT_RPM": RELAY_RPM}))
    return Endpoint(worker.url, {"x-api-key": RELAY_KEY})


def _js_floor(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
    worker = stack.enter_context(LocalWorker({"UPSTREAM_URL": upstream}, config=PASSTHROUGH_CONFIG, migrate=False))
    return Endpoint(worker.url, {"x-api-key": UPSTREAM_KEY})


DIRECT = "direct"
JS_FLOOR = "JS floor"
TARGETS = (
    Target(DIRECT, "the client talks to the fake upstream itself: the reference", _direct),
    Target(JS_FLOOR, "a JavaScript Worker that only forwards (`bench/passthrough/`), on the same "
                     "wrangler dev / workerd as relay: the platform's floor", _js_floor),
    Target("relay", "relay on workerd (`tests/workerd.LocalWorker`) with a static relay key and its "
                    f"defaults: rate-limit check, audit row, cache policy `{DEFAULT_CACHE_POLICY}`", _relay),
)

"""Where a target listens, and how the bench runs a target that is a plain server process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Throw-away keys for a loopback-only run; never real ones.
UPSTREAM_KEY = "bench-upstream-key"
GATEWAY_KEY = "sk-bench-gateway-key"  # what clients present to a gateway with keys of its own
SERVER_START_S = 120.0


@dataclass(frozen=True)
class Endpoint:
    """Where a target listens: the base URL in the Anthropic SDK convention, the fields that
    authenticate a client there, and the key among them that belongs to the gateway (None
    when the client sends the provider's key itself: direct, or a gateway that passes it on).
    `listener_only`: the target's CPU and memory are those of the process listening at `url`
    alone, not of its whole session (a Worker's workerd, without miniflare's Node process)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    client_key: str | None = None
    listener_only: bool = False

    @property
    def port(self) -> int:
        return urlsplit(self.url).port


def wait_for_port(port: int, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if process.poll() is not None:
            raise RuntimeError(f"exited at start (status {process.returncode}):\n{_tail(log)}")
        time.sleep(0.2)
    raise TimeoutError(f"did not listen on port {port} within {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def serve(
    stack: contextlib.ExitStack, command: Sequence[str], *, port: int, cwd: Path, env: Mapping[str, str], log: Path
) -> None:
    """Start a server in a session of its own (so that its whole process tree can be measured
    and stopped), output to `log`; return once it accepts connections on `port`. The stack
    stops it, also when it fails to start."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stack.callback(_stop_session, process)
    wait_for_port(port, process, SERVER_START_S, log)


def _stop_session(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

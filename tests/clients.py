"""Real client programs, driven as a user runs them: the Claude Code CLI and relay's own
key CLI (`python -m relay keys ...`).

Shared by every end-to-end test that needs them (headers, cache markers, routing, usage,
key management), so that each runs them the same way: as a fresh user on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

from devtools.local_worker import ROOT

CLAUDE = ROOT / "node_modules" / ".bin" / "claude"
CLAUDE_TIMEOUT_S = 120.0
RELAY_CLI_TIMEOUT_S = 60.0
# Settings a developer's shell may hold that would change where or how the CLI talks.
_INHERITED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def run_claude(
    base_url: str,
    prompt: str = "say hi",
    *,
    api_key: str | None = None,
    auth_token: str | None = None,
    headers: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    timeout: float = CLAUDE_TIMEOUT_S,
) -> subprocess.CompletedProcess:
    """`claude -p <prompt> [args]` against `base_url`; the finished process (text output).

    The CLI runs with a throw-away HOME (no login, settings or history of the person
    running the tests), none of the caller's ANTHROPIC_*/CLAUDE_*/proxy variables, and
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1, so a prompt is exactly the requests it
    needs to `base_url` and nothing to other hosts. The relay key goes in as
    ANTHROPIC_API_KEY (`x-api-key`) or ANTHROPIC_AUTH_TOKEN (`Authorization: Bearer`).
    `headers` are added to every request (ANTHROPIC_CUSTOM_HEADERS), e.g. `x-test-tag`.
    Raises subprocess.TimeoutExpired if the CLI has not finished within `timeout`.

    The suite's final scan for secrets (tests/e2e/conftest.py) does not read this HOME: it
    holds Claude Code's own state and is deleted when the CLI exits; what relay sent the CLI
    is scanned where it passed (the Worker's wiretap). Whatever the CLI keeps of its own key
    there is the client's doing, not relay's. (Claude Code 2.1 keeps none of a key it is given
    in the environment: a Claude Code HOME under `tmp_path`, which the scan does read, holds none.)
    """
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith(_INHERITED_PREFIXES)}
    with tempfile.TemporaryDirectory(prefix="relay-claude-home-") as home:
        env.update(
            {
                "HOME": home,
                "XDG_CONFIG_HOME": os.path.join(home, ".config"),
                "ANTHROPIC_BASE_URL": base_url,
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        if api_key is not None:
            env["ANTHROPIC_API_KEY"] = api_key
        if auth_token is not None:
            env["ANTHROPIC_AUTH_TOKEN"] = auth_token
        if headers:
            env["ANTHROPIC_CUSTOM_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in headers.items())
        return subprocess.run(
            [str(CLAUDE), "-p", prompt, *args],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def relay_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m relay ...` as a user runs it (src on the path in case relay is not installed),
    without the caller's RELAY_URL / RELAY_ADMIN_TOKEN unless `env` gives them."""
    environ = {k: v for k, v in os.environ.items() if k not in ("RELAY_URL", "RELAY_ADMIN_TOKEN")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=RELAY_CLI_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def wait_for_a_fresh_minute(margin: float = 20.0) -> None:
    """The local rate limiter counts in wall-clock minutes: keep what follows inside one."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.2)

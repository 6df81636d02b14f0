"""Claude Code's interactive session in a terminal (tmux), driven as a person types: for
`/login`, which has no non-interactive form.

The session runs with a HOME of its own (a fresh user: `~/.claude.json` says onboarding is
done, `~/.claude/settings.json` may name a gateway for `/login`), none of the caller's
ANTHROPIC_*/CLAUDE_*/proxy variables, and CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1. The
HOME lies outside pytest's `tmp_path` and is deleted by `close()`: like `tests.clients.
run_claude`'s, it holds Claude Code's own state (its stored gateway credential included),
not relay's; what relay sent the CLI is scanned where it passed (the Worker's wiretap).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.clients import _INHERITED_PREFIXES, CLAUDE

TMUX = shutil.which("tmux") or "/usr/bin/tmux"


class ClaudeTerminal:
    def __init__(self, settings: dict | None = None, columns: int = 200):
        self.home = Path(tempfile.mkdtemp(prefix="relay-claude-term-"))
        self.work = self.home / "work"
        self.work.mkdir()
        (self.home / ".claude").mkdir()
        (self.home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
        (self.home / ".claude" / "settings.json").write_text(json.dumps(settings or {}))
        self.socket = f"relay-{os.getpid()}-{self.home.name}"
        self.columns = columns

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_INHERITED_PREFIXES)}
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "NO_PROXY": "127.0.0.1,localhost",
                "TERM": "xterm-256color",
            }
        )
        return env

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, check=True, env=self.env()
        ).stdout

    def start(self) -> ClaudeTerminal:
        command = " ".join(
            ["exec", "env", *[f"{k}={_quote(v)}" for k, v in self.env().items() if k in _PASSED], str(CLAUDE)]
        )
        self._tmux("new-session", "-d", "-s", "cc", "-x", str(self.columns), "-y", "50", "-c", str(self.work), command)
        return self

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "cc")

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear on Claude Code's screen; it shows:\n{screen}")
            time.sleep(0.3)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-t", "cc", key)
            time.sleep(0.3)

    def choose(self, option: str, timeout: float = 30.0) -> None:
        """Move the menu's cursor (❯) to the line holding `option`, then press Enter."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.screen().splitlines()
            marked = [n for n, line in enumerate(lines) if "❯" in line and line.strip() != "❯"]
            wanted = [n for n, line in enumerate(lines) if option in line]
            if marked and wanted:
                if marked[-1] == wanted[-1]:
                    self.keys("Enter")
                    return
                self.keys("Down" if wanted[-1] > marked[-1] else "Up")
            time.sleep(0.3)
        raise AssertionError(f"could not choose {option!r}; Claude Code's screen shows:\n{self.screen()}")

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "cc", "-l", text)
        time.sleep(0.5)
        self.keys("Enter")

    def run_print(self, prompt: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """`claude -p <prompt>` as the same user (its stored sign-in), outside the terminal."""
        return subprocess.run(
            [str(CLAUDE), "-p", prompt],
            env=self.env(),
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


# What the CLI's process gets inside tmux (tmux's server keeps its own environment).
_PASSED = ("PATH", "HOME", "XDG_CONFIG_HOME", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "NO_PROXY", "TERM", "LANG")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"

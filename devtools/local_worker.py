"""Run relay on a real local workerd (through `wrangler dev`, pinned), with local D1.

Each `LocalWorker` gets its own folder holding a copy of the project's wrangler.toml
(paths made absolute, the local runtime's flags added: devtools/runtime.py), the vendored
`workers` SDK (python_modules, linked) and a `.dev.vars` with exactly the vars it is given,
so a developer's own `.dev.vars` never leaks into tests, demos or benchmarks.

Once `trace_workers()` has been called (the e2e tests do), every Worker started after it is
traced for the suite's final scan for secrets: clients reach it through a `Wiretap` that
records each connection, and when it stops, its folder is kept in memory (its log, local D1,
KV and cache) except the files that hold the Worker's secrets by design (`secret_files`:
`.dev.vars`, and a miniflare-served Worker's options). The bench and `make dev` leave
Workers bare: a tap in front would be measured with them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devtools import runtime
from devtools.runtime import ROOT, WRANGLER
from devtools.wiretap import Recording, Wiretap

DATABASE = "relay"
SECRETS_FILE = ".dev.vars"


@dataclass
class Traces:
    """What traced Workers left: every connection a client made to one (`Recording`), and
    the folder of each Worker that stopped (path relative to it -> contents)."""

    connections: list[Recording] = field(default_factory=list)
    folders: list[dict[str, bytes]] = field(default_factory=list)


TRACES: Traces | None = None


def trace_workers() -> Traces:
    """Trace every Worker started from now on in this process; what they leave."""
    global TRACES
    TRACES = TRACES or Traces()
    return TRACES


def read_files(root: Path, skip: frozenset[str] = frozenset()) -> Iterator[tuple[str, bytes]]:
    """(path relative to `root`, contents) of every regular file under `root` (symbolic
    links are not followed) but those whose relative path is in `skip`, one at a time."""
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(folder, name)
            relative = str(path.relative_to(root))
            if relative not in skip and stat.S_ISREG(path.lstat().st_mode):
                yield relative, path.read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wrangler_env() -> dict[str, str]:
    return {**runtime.env(), "CI": "true"}


def _config_text(config: Path) -> str:
    """A wrangler.toml for a copy in another folder: its relative paths made absolute
    (`migrations_dir` only if it has D1) and the local runtime's flags added."""
    text = runtime.local_config(config.read_text())
    for key in ("main", "migrations_dir"):
        pattern = re.compile(rf'^{key}\s*=\s*"([^"]+)"', re.M)
        match = pattern.search(text)
        if not match and key == "main":
            raise RuntimeError(f"{config} has no {key} line")
        if match:
            text = pattern.sub(f'{key} = "{(config.parent / match.group(1)).resolve()}"', text, count=1)
    return text


class LocalWorker:
    """relay (or another Worker, given its `config`) under `wrangler dev`; a context manager.
    `url` is where clients point."""

    # Files of its folder that hold the Worker's secrets by design (the final scan skips them).
    secret_files = frozenset({SECRETS_FILE})

    def __init__(
        self,
        vars: Mapping[str, str],
        *,
        config: Path = ROOT / "wrangler.toml",
        port: int | None = None,
        state_dir: Path | None = None,
        migrate: bool = True,
    ):
        self._tmp = tempfile.TemporaryDirectory(prefix="relay-worker-")
        self.dir = Path(self._tmp.name)
        self.port = port or free_port()
        self.state_dir = state_dir or self.dir / "state"
        self.log_path = self.dir / "wrangler.log"
        (self.dir / "wrangler.toml").write_text(_config_text(config))
        (self.dir / "python_modules").symlink_to(runtime.PYTHON_MODULES)
        (self.dir / SECRETS_FILE).write_text("".join(f"{k}={v}\n" for k, v in vars.items()))
        self.vars = dict(vars)
        self._process: subprocess.Popen | None = None
        self._tap: Wiretap | None = None
        # False: a D1 without relay's tables, as if D1 were failing; or a Worker without D1.
        self._migrate = migrate

    @property
    def url(self) -> str:
        """Where clients point: the wiretap when the Worker is traced, else the port it is served on."""
        return self._tap.url if self._tap is not None else self._served_url

    @property
    def _served_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The process that serves the Worker, leader of a session of its own (workerd's too)."""
        return self._process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _wrangler(self, *args: str) -> list[str]:
        return [str(WRANGLER), *args, "--config", str(self.dir / "wrangler.toml")]

    def migrate(self) -> None:
        subprocess.run(
            self._wrangler("d1", "migrations", "apply", DATABASE, "--local", "--persist-to", str(self.state_dir)),
            cwd=self.dir,
            env=_wrangler_env(),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )

    def d1_output(self, sql: str) -> str:
        """What `wrangler d1 execute --json` prints for `sql` on the Worker's local D1."""
        return subprocess.run(
            self._wrangler(
                "d1", "execute", DATABASE, "--local", "--json", "--persist-to", str(self.state_dir), "--command", sql
            ),
            cwd=self.dir,
            env=_wrangler_env(),
            check=True,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        ).stdout

    def r2_object(self, bucket: str, key: str) -> bytes:
        """An object of the Worker's local R2 bucket (by its bucket_name)."""
        return subprocess.run(
            self._wrangler(
                "r2", "object", "get", f"{bucket}/{key}", "--local", "--persist-to", str(self.state_dir), "--pipe"
            ),
            cwd=self.dir,
            env=_wrangler_env(),
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        ).stdout

    def query(self, sql: str) -> list[dict]:
        """Rows from the Worker's local D1. wrangler's JSON shows SQL NULL as the string
        "null"; here it is None again (relay never stores "null")."""
        return [
            {name: None if value == "null" else value for name, value in row.items()}
            for result in json.loads(self.d1_output(sql))
            for row in result["results"]
        ]

    def run_scheduled(self, cron: str, timeout: float = 120.0) -> dict:
        """Run the Worker's scheduled handler as its Cron Trigger `cron` would, through
        wrangler dev's scheduled-test route; its outcome ({"outcome": "ok", ...}) once the
        handler is done. The pinned wrangler serves that route at /cdn-cgi/local/scheduled
        for every Worker; `--test-scheduled`'s /__scheduled is a JavaScript middleware it
        does not add to a Python Worker."""
        query = urllib.parse.urlencode({"cron": cron, "format": "json"})
        try:
            with urllib.request.urlopen(
                f"{self._served_url}/cdn-cgi/local/scheduled?{query}", timeout=timeout
            ) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as failed:  # 500: the handler raised
            return json.loads(failed.read())

    def _serve_command(self) -> list[str]:
        """The command that serves the Worker on `self.port` (bench/miniflare_worker.py has another)."""
        return self._wrangler(
            "dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--inspector-port",
            str(free_port()),
            "--persist-to",
            str(self.state_dir),
            "--show-interactive-dev-session=false",
        )

    def start(self, timeout: float = 120.0) -> LocalWorker:
        if self._migrate:
            self.migrate()
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self._serve_command(),
                cwd=self.dir,
                env=_wrangler_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        if TRACES is not None:
            self._tap = Wiretap(self.port, TRACES.connections).start()
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"wrangler dev exited early:\n{self.log()}")
            try:
                # Long enough for the first request, which boots Pyodide (10-15 s here): a
                # shorter one would leave probes piling up behind it.
                urllib.request.urlopen(self._served_url + "/", timeout=max(1.0, deadline - time.monotonic()))
                return
            except urllib.error.HTTPError:
                return  # relay answered (404 for /): it is up
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"relay did not answer on {self._served_url} within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self._tap is not None:
            self._tap.stop()
            self._tap = None
        if self._process is not None:
            self._end_process()
            self._process = None
            if TRACES is not None:
                TRACES.folders.append(dict(read_files(self.dir, skip=self.secret_files)))
        self._tmp.cleanup()

    def _end_process(self) -> None:
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()

    def __enter__(self) -> LocalWorker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

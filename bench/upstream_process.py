"""The fake Anthropic upstream (`devtools/fake_upstream.py`) in a process of its own, so that it
shares no interpreter lock with the load generator, and can still be asked what it received.

The child prints its base URL on its first line, then answers each line it reads on stdin
(a marker string) with one JSON line: the header lists of the requests whose body held the
marker, exactly as the fake recorded them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

from devtools.fake_upstream import FakeUpstream
from devtools.local_worker import ROOT

START_S = 30.0


class UpstreamProcess:
    """A context manager: `url` is where targets send requests; `headers_seen(marker)` asks the child."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> UpstreamProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.upstream_process"],
            cwd=ROOT,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            self.url = self._line()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _line(self) -> str:
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the fake upstream exited")
        return line.strip()

    def headers_seen(self, marker: str) -> list[list[tuple[str, str]]]:
        self._process.stdin.write(marker + "\n")
        self._process.stdin.flush()
        return [[(name, value) for name, value in headers] for headers in json.loads(self._line())]

    def __exit__(self, *exc) -> None:
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def main() -> None:
    with FakeUpstream("anthropic") as fake:
        print(fake.url, flush=True)
        for line in sys.stdin:  # until the bench closes stdin
            marker = line.rstrip("\n").encode()
            seen = [seen.headers for seen in fake.requests() if marker in seen.body]
            print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()

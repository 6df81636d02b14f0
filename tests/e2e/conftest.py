"""End-to-end fixtures: relay on a real local workerd, in front of fake providers.

One Worker serves the whole session; tests tell their requests apart with an
`x-test-tag` header (forwarded like every unknown field) instead of sharing state.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid

import httpx
import pytest

from devtools import wiretap
from devtools.fake_upstream import FakeUpstream
from devtools.local_worker import LocalWorker, read_files, trace_workers
from tests import secret_scan

CLIENT_KEY = "relay-test-client-key-0001"
OTHER_CLIENT_KEY = "relay-test-client-key-0002"
ANTHROPIC_UPSTREAM_KEY = "sk-ant-fake-upstream-key-0001"
OPENAI_UPSTREAM_KEY = "sk-oa-fake-upstream-key-0001"
ADMIN_TOKEN = "relay-test-admin-token-0001"
ALLOWED_ORIGIN = "https://app.example"
MAX_BODY_BYTES = 1024 * 1024

# Every secret the suite uses: none of them may appear where it should not.
SECRETS = (CLIENT_KEY, OTHER_CLIENT_KEY, ANTHROPIC_UPSTREAM_KEY, OPENAI_UPSTREAM_KEY, ADMIN_TOKEN)
# Relay keys the admin API issued during the session, and upstream keys that tests give
# Workers of their own (tests add them): held to the same rule. So is every relay key a
# Worker's answer issued (the scan finds them in the wiretaps' recordings).
ISSUED: list[str] = []
# Every Worker these tests start is traced: its answers and its folder are scanned at the end.
TRACES = trace_workers()
# Audit rows are written after the response (ctx.waitUntil): tests poll for them this long.
ROW_WAIT_SECONDS = 30


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def no_secret_where_it_does_not_belong(tmp_path_factory):
    """After the whole suite: no secret (`every_secret()`) in

    - anything a Worker sent a client: status line, header fields and body of every answer
      (through the wiretap in front of each Worker: `devtools/wiretap.py`), except the new key
      in the answer to `POST /admin/keys` that issues it;
    - the folder of any Worker: its log, local D1, KV and cache files, except `.dev.vars`
      (or a miniflare-served Worker's options), where a Worker's secrets live by design
      (gone when the Worker stops: `LocalWorker.secret_files`);
    - the text of any test report or warning (`tests/secret_scan.py`): what pytest shows
      and writes, captured output included;
    - any file left under this session's temporary base folder (`tmp_path`), such as the
      Claude Code home and the chromium profile of tests that use one.

    Not scanned: what clients send (a request carries its key: that is how it
    authenticates); the throw-away HOME of `tests.clients.run_claude` (Claude Code's own
    state, deleted when the CLI exits; what relay sent it is in the recordings); the report
    of the test whose teardown runs this scan, which is made after it (it holds what the
    session's fixtures print when they end, and this scan's message, which names no secret).
    """
    yield
    connections = [wiretap.answers(recording) for recording in TRACES.connections]
    answers = [answer for found, _ in connections for answer in found]
    secrets = every_secret(connections)
    assert answers and TRACES.folders, "nothing to scan: no Worker ran, or no client reached one"
    assert secret_scan.REPORTS, "no test report was kept (tests/conftest.py)"
    unread = sorted(
        {(answer.unread_coding, answer.method, answer.path()) for answer in answers if answer.unread_coding}
    )
    assert not unread, secret_scan.redact(
        f"answers the scan cannot read (content coding, method, path): {unread}", secrets
    )
    places = itertools.chain(
        _answers(connections),
        (
            (f"Worker {w}'s {path}", contents)
            for w, folder in enumerate(TRACES.folders)
            for path, contents in folder.items()
        ),
        secret_scan.REPORTS,
        ((f"temporary file {path}", contents) for path, contents in read_files(tmp_path_factory.getbasetemp())),
    )
    found = secret_scan.leaks(secrets, places)
    assert not found, (
        f"secrets appear where they must not (numbered in SECRETS, ISSUED, then the keys the admin "
        f"API issued; {len(secrets)} in all):\n{secret_scan.summary(found)}"
    )


def every_secret(connections: list[tuple[list[wiretap.Answer], bytes]]) -> list[str]:
    """SECRETS, ISSUED and each credential the answers on `connections` issued (relay keys,
    sign-in tokens), each once."""
    issued = [key for found, _ in connections for answer in found for key in wiretap.issued_secrets(answer)]
    return list(dict.fromkeys([*SECRETS, *ISSUED, *issued]))


def _answers(connections: list[tuple[list[wiretap.Answer], bytes]]):
    """(where, what the scan reads) of each answer, and of what followed a connection's last one."""
    for c, (found, rest) in enumerate(connections):
        for a, answer in enumerate(found):
            where = f"connection {c} answer {a} ({answer.method} {answer.target} -> {answer.status})"
            yield where, wiretap.scanned(answer)
        yield f"connection {c} after its answers", rest


@pytest.fixture(scope="session")
def anthropic_upstream():
    with FakeUpstream("anthropic") as fake:
        yield fake


@pytest.fixture(scope="session")
def openai_upstream():
    with FakeUpstream("openai") as fake:
        yield fake


@pytest.fixture(scope="session")
def relay(anthropic_upstream, openai_upstream):
    worker = LocalWorker(
        {
            "RELAY_CLIENT_KEYS": f"{CLIENT_KEY},{OTHER_CLIENT_KEY}",
            "ANTHROPIC_API_KEYS": ANTHROPIC_UPSTREAM_KEY,
            "OPENAI_API_KEYS": OPENAI_UPSTREAM_KEY,
            "UPSTREAM_ANTHROPIC_URL": anthropic_upstream.url,
            "UPSTREAM_OPENAI_URL": openai_upstream.url,
            "RELAY_CORS_ORIGINS": ALLOWED_ORIGIN,
            "RELAY_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "RELAY_KEY_CACHE_SECONDS": "2",
        }
    ).start()
    yield worker
    try:
        rows = json.dumps(_every_d1_row(worker))
    finally:
        worker.stop()
    secrets = every_secret([wiretap.answers(recording) for recording in TRACES.connections])
    leaked = [n for n, secret in enumerate(secrets) if secret in rows]
    assert not leaked, f"secrets number {leaked} of {len(secrets)} appear in D1"


def _every_d1_row(worker: LocalWorker) -> dict[str, list[dict]]:
    tables = [row["name"] for row in worker.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {table: worker.query(f'SELECT * FROM "{table}"') for table in tables}


@pytest.fixture
def tag():
    """A fresh value for `x-test-tag`, to find this test's requests at the fake upstream."""
    return uuid.uuid4().hex


def create_key(relay: LocalWorker, **fields) -> dict:
    """A virtual relay key made through the admin API (the key is registered in ISSUED)."""
    response = httpx.post(
        relay.url + "/admin/keys", json={"name": "e2e", **fields}, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 201, response.text
    ISSUED.append(response.json()["key"])
    return response.json()


def audit_rows(relay: LocalWorker, where: str, count: int) -> list[dict]:
    """The audit rows matching `where` (SQL made by the test, never from input), oldest
    first, once there are `count` of them (and no more)."""
    deadline = time.monotonic() + ROW_WAIT_SECONDS
    while True:
        found = relay.query(f"SELECT * FROM usage WHERE {where} ORDER BY id")
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, f"expected {count} rows, found {len(found)}"
            return found
        time.sleep(0.3)


def session_rows(relay: LocalWorker, session: str, count: int) -> list[dict]:
    """The audit rows of one session (tests mark theirs with x-claude-code-session-id)."""
    return audit_rows(relay, f"session_id = '{session}'", count)

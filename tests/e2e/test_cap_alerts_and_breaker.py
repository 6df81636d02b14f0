"""Spend-cap alerts reaching a webhook (a fake receiver this test starts), and the
per-session breaker stopping a looping session, through the Worker on workerd."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import httpx
import pytest

from devtools.fake_upstream import REPLY_TEXT, FakeUpstream
from devtools.local_worker import LocalWorker

from .conftest import ADMIN_TOKEN, ANTHROPIC_UPSTREAM_KEY, ROW_WAIT_SECONDS, create_key

HELLO = [{"role": "user", "content": "hi"}]
MAX_SESSION_REQUESTS = 3


class Receiver:
    """A webhook on loopback that answers its first POST 503 (relay must try again), then
    200; keeps each body it took."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.attempts += 1
                status = 503 if outer.attempts == 1 else 200
                if status == 200:
                    outer.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream("anthropic") as fake:
        yield fake


@pytest.fixture(scope="module")
def worker(upstream, receiver):
    with LocalWorker(
        {
            "ANTHROPIC_API_KEYS": ANTHROPIC_UPSTREAM_KEY,
            "UPSTREAM_ANTHROPIC_URL": upstream.url,
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "RELAY_KEY_CACHE_SECONDS": "1",
            "RELAY_ALERT_WEBHOOKS": receiver.url,
            "RELAY_SESSION_MAX_REQUESTS": str(MAX_SESSION_REQUESTS),
            "RELAY_SESSION_WINDOW_MINUTES": "10",
        }
    ) as running:
        yield running
        log = running.log()
    assert "Traceback" not in log and receiver.url not in log  # the webhook by its host only


def _client(worker, key, session):
    return anthropic.Anthropic(
        base_url=worker.url, api_key=key, max_retries=0, default_headers={"x-claude-code-session-id": session}
    )


def _ask(client):
    return client.messages.create(model="claude-sonnet-4-5", max_tokens=12, messages=HELLO)


def test_the_webhook_hears_each_threshold_once(worker, receiver):
    key = create_key(worker)
    client = _client(worker, key["key"], uuid.uuid4().hex)
    _ask(client)  # what one request costs: its audit row
    deadline = time.monotonic() + ROW_WAIT_SECONDS
    while not (rows := worker.query(f"SELECT cost_usd FROM usage WHERE key_id = '{key['id']}'")):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    cost = float(rows[0]["cost_usd"])
    # Three requests bring the spend to 40%, 80% (past 50 and 80) and 120% (past 100) of the cap.
    cap = httpx.post(
        worker.url + "/admin/caps",
        json={"owner_kind": "key", "owner_id": key["id"], "period": "day", "limit_usd": 2.5 * cost},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()
    time.sleep(1.5)
    for _ in range(3):
        _ask(_client(worker, key["key"], uuid.uuid4().hex))
        time.sleep(0.5)
    with pytest.raises(anthropic.RateLimitError):
        _ask(_client(worker, key["key"], uuid.uuid4().hex))  # at the cap: refused, no spend, no alert
    deadline = time.monotonic() + ROW_WAIT_SECONDS
    while len([b for b in receiver.bodies if b["cap"] == cap["id"]]) < 3:
        assert time.monotonic() < deadline, receiver.bodies
        time.sleep(0.3)
    time.sleep(2)  # nothing more arrives
    mine = [body for body in receiver.bodies if body["cap"] == cap["id"]]
    assert sorted(body["threshold_percent"] for body in mine) == [50, 80, 100]
    assert receiver.attempts == len(receiver.bodies) + 1  # the first POST got 503 and was sent again
    event = next(body for body in mine if body["threshold_percent"] == 100)
    assert event["owner"] == {"kind": "key", "id": key["id"]} and event["period"] == "day"
    assert event["spent_usd"] >= event["limit_usd"] == pytest.approx(2.5 * cost)


def test_a_looping_session_is_stopped_and_another_goes_on(worker, upstream):
    key = create_key(worker)
    loop = _client(worker, key["key"], f"loop-{uuid.uuid4().hex}")
    for _ in range(MAX_SESSION_REQUESTS):
        assert _ask(loop).content[0].text == REPLY_TEXT
    with pytest.raises(anthropic.RateLimitError) as stopped:
        _ask(loop)
    assert stopped.value.response.headers["x-should-retry"] == "false"
    message = stopped.value.body["error"]["message"]
    assert f"{MAX_SESSION_REQUESTS + 1} requests in 10 minutes" in message and "loop" in message
    with pytest.raises(anthropic.RateLimitError):
        _ask(loop)  # still stopped
    assert _ask(_client(worker, key["key"], uuid.uuid4().hex)).content[0].text == REPLY_TEXT


def test_a_key_over_its_output_tokens_per_minute_is_told_to_wait(worker, upstream):
    key = create_key(worker)
    answer = httpx.post(
        worker.url + "/admin/token-limits",
        json={"owner_kind": "key", "owner_id": key["id"], "output_per_minute": 30},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert answer.status_code == 200, answer.text
    time.sleep(1.5)
    if time.time() % 60 > 40:  # all in one minute: the limit counts per UTC minute
        time.sleep(61 - time.time() % 60)
    for _ in range(3):  # 12 output tokens each (max_tokens, then as reported): 0, 12, 24 before each
        assert _ask(_client(worker, key["key"], uuid.uuid4().hex)).content[0].text == REPLY_TEXT
    with pytest.raises(anthropic.RateLimitError) as over:
        _ask(_client(worker, key["key"], uuid.uuid4().hex))
    assert "30 output tokens per minute" in over.value.body["error"]["message"]
    assert over.value.body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(over.value.response.headers["retry-after"]) <= 60

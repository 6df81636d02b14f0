"""Spend caps per key, billing tag and relay, through two Workers on workerd that share one
D1 (as two isolates or locations do): refused at the limit and only then, windows that
reset, the standing on each answer, and parallel streams held to the documented bound.

The fake upstream bills every request of one shape the same, so a test measures what one
costs (its audit row) and what relay holds for it (its D1 hold) and sets caps in those units.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import pytest

from devtools.fake_upstream import REPLY_TEXT, FakeUpstream
from devtools.local_worker import LocalWorker
from tests.clients import run_claude

from .conftest import ADMIN_TOKEN, ANTHROPIC_UPSTREAM_KEY, ROW_WAIT_SECONDS, create_key

CACHE_SECONDS = 1  # RELAY_KEY_CACHE_SECONDS: how soon a new cap holds in the other Worker
HELLO = [{"role": "user", "content": "hi"}]
UNIFIED = "anthropic-ratelimit-unified-"
# Two Workers writing one local D1 file wait on each other's locks: on a loaded machine an
# admin call has taken longer than httpx's default 5 s.
ADMIN_TIMEOUT_SECONDS = 30


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream("anthropic") as fake:
        yield fake


@pytest.fixture(scope="module")
def workers(upstream):
    """Two Workers, one D1: the second's D1 folder is the first's. Only D1 is shared: local
    rate limiting keeps its counts in SQLite too, and two processes writing it at once
    answer SQLITE_BUSY (a local artifact: a deployed binding has no such file)."""
    with tempfile.TemporaryDirectory(prefix="relay-caps-state-") as state:
        env = {
            "ANTHROPIC_API_KEYS": ANTHROPIC_UPSTREAM_KEY,
            "UPSTREAM_ANTHROPIC_URL": upstream.url,
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "RELAY_KEY_CACHE_SECONDS": str(CACHE_SECONDS),
        }
        one, two = Path(state, "one"), Path(state, "two")
        with LocalWorker(env, state_dir=one) as first:
            (two / "v3").mkdir(parents=True)
            (two / "v3" / "d1").symlink_to(one / "v3" / "d1")
            with LocalWorker(env, state_dir=two) as second:
                yield first, second
                log = first.log() + second.log()
    assert "Traceback" not in log and "not counted" not in log and "not let go" not in log


def _client(worker, key, tag):
    return anthropic.Anthropic(base_url=worker.url, api_key=key, max_retries=0, default_headers={"x-test-tag": tag})


def _ask(client, **extra):
    return client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=12, messages=HELLO, **extra)


def _set_cap(worker, period="day", **owner):
    answer = httpx.post(
        worker.url + "/admin/caps",
        json={"period": period, **owner},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=ADMIN_TIMEOUT_SECONDS,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _delete_cap(worker, cap_id):
    answer = httpx.delete(
        worker.url + f"/admin/caps/{cap_id}",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=ADMIN_TIMEOUT_SECONDS,
    )
    assert answer.status_code == 200, answer.text


def _settled(worker, cap_id):
    """The cap's spend this window, once no request holds anything against it."""
    deadline = time.monotonic() + ROW_WAIT_SECONDS
    while worker.query(f"SELECT id FROM spend_holds WHERE cap_id = '{cap_id}'"):
        assert time.monotonic() < deadline, "a hold was never settled"
        time.sleep(0.2)
    rows = worker.query(f"SELECT spent_usd FROM spend_counters WHERE cap_id = '{cap_id}' ORDER BY window_start DESC")
    return float(rows[0]["spent_usd"]) if rows else 0.0


@pytest.fixture(scope="module")
def one_request(workers, upstream):
    """What one request of _ask's shape costs (its audit row), in dollars."""
    first, _ = workers
    key = create_key(first)
    tag = uuid.uuid4().hex
    _ask(_client(first, key["key"], tag))
    deadline = time.monotonic() + ROW_WAIT_SECONDS
    while not (rows := first.query(f"SELECT cost_usd FROM usage WHERE key_id = '{key['id']}'")):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    cost = float(rows[0]["cost_usd"])
    assert cost > 0
    return cost


def _refused(client):
    with pytest.raises(anthropic.RateLimitError) as caught:
        _ask(client)
    return caught.value


def _assert_cap_refusal(refusal, owner_text, period="daily"):
    assert refusal.status_code == 429
    assert refusal.body["error"]["type"] == "billing_error"
    message = refusal.body["error"]["message"]
    assert owner_text in message and f"{period} spend cap" in message and "resets at" in message, message
    fields = refusal.response.headers
    assert fields["x-should-retry"] == "false" and int(fields["retry-after"]) > 0
    assert fields[UNIFIED + "status"] == "rejected"
    assert fields[UNIFIED + "overage-disabled-reason"] == "org_spend_cap_reached"


def test_a_keys_cap_refuses_at_its_limit_and_only_then_in_either_worker(workers, upstream, one_request, tag):
    first, second = workers
    key = create_key(first)
    cap = _set_cap(first, owner_kind="key", owner_id=key["id"], limit_usd=2.5 * one_request)
    time.sleep(CACHE_SECONDS + 0.5)
    clients = [_client(first, key["key"], tag), _client(second, key["key"], tag)]
    for n in range(3):  # 0, 1 and 2 requests' cost spent before each: below the cap
        answer = _ask(clients[n % 2])
        assert answer.parse().content[0].text == REPLY_TEXT
        assert answer.headers[UNIFIED + "status"] in ("allowed", "allowed_warning")
        assert "anthropic-ratelimit-requests-remaining" not in answer.headers  # the upstream's pool, not the key's
        assert _settled(first, cap["id"]) == pytest.approx((n + 1) * one_request)
    for client in clients:
        _assert_cap_refusal(_refused(client), f"relay key {key['id']}")
    assert len(upstream.requests(tag)) == 3  # the refusals never went upstream

    # The standing Claude Code shows: 2 of 2.5 spent after the second answer, 80% (past 75%).
    listed = httpx.get(first.url + "/admin/caps", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    [standing] = [row for row in listed["data"] if row["id"] == cap["id"]]
    assert standing["spent_usd"] == pytest.approx(3 * one_request, rel=1e-3)
    # And in dollars, as newer clients ask for them (the relay key, not the admin token).
    usage = httpx.get(second.url + "/api/oauth/usage", headers={"authorization": f"Bearer {key['key']}"}).json()
    [row] = usage["limits"]
    assert (row["kind"], row["group"], row["percent"], row["is_active"]) == ("spend", "daily", 100, True)
    assert row["resets_at"] == standing["resets_at"]


def test_a_new_window_starts_with_nothing_spent(workers, one_request, tag):
    first, second = workers
    key = create_key(first)
    cap = _set_cap(first, owner_kind="key", owner_id=key["id"], limit_usd=0.5 * one_request)
    time.sleep(CACHE_SECONDS + 0.5)
    client = _client(second, key["key"], tag)
    _ask(client)
    _settled(first, cap["id"])
    _assert_cap_refusal(_refused(client), f"relay key {key['id']}")
    # The day ends: what it spent stays with that window (moved back a day here, as the
    # clock cannot be), and the new one starts empty.
    first.query(f"UPDATE spend_counters SET window_start = window_start - 86400 WHERE cap_id = '{cap['id']}'")
    assert _ask(client).parse().content[0].text == REPLY_TEXT
    _assert_cap_refusal(_refused(client), f"relay key {key['id']}")


def test_a_billing_tags_cap_is_shared_by_its_keys(workers, one_request, tag):
    first, second = workers
    team = f"team-{uuid.uuid4().hex[:8]}"
    keys = [create_key(first, billing_tag=team), create_key(first, billing_tag=team)]
    cap = _set_cap(first, period="week", owner_kind="tag", owner_id=team, limit_usd=1.5 * one_request)
    time.sleep(CACHE_SECONDS + 0.5)
    one, other = _client(first, keys[0]["key"], tag), _client(second, keys[1]["key"], tag)
    answer = _ask(one)
    assert answer.headers[UNIFIED + "overage-scope"] == "group_pool"
    _settled(first, cap["id"])
    _ask(other)
    _settled(first, cap["id"])
    for client in (one, other):
        refusal = _refused(client)
        _assert_cap_refusal(refusal, f"billing tag {team}", "weekly")
        assert refusal.response.headers[UNIFIED + "overage-scope"] == "group_pool"


def test_a_relay_wide_cap_stops_every_key(workers, one_request, tag):
    first, second = workers
    keys = [create_key(first), create_key(first)]
    cap = _set_cap(first, period="month", owner_kind="relay", limit_usd=0.5 * one_request)
    try:
        time.sleep(CACHE_SECONDS + 0.5)
        _ask(_client(first, keys[0]["key"], tag))
        _settled(first, cap["id"])
        for worker, key in ((first, keys[0]), (second, keys[1])):
            _assert_cap_refusal(_refused(_client(worker, key["key"], tag)), "relay has", "monthly")
    finally:
        _delete_cap(first, cap["id"])
        time.sleep(CACHE_SECONDS + 0.5)


def _hold_of_one_stream(workers, upstream, tag):
    """What relay holds for one stream of _stream's shape (its D1 hold, while it is open)."""
    first, _ = workers
    key = create_key(first)
    cap = _set_cap(first, owner_kind="key", owner_id=key["id"], limit_usd=100.0)
    time.sleep(CACHE_SECONDS + 0.5)
    gate = f"{tag}-measure"
    with _stream(_client(first, key["key"], tag), gate) as events:
        assert next(iter(events)).type == "message_start"
        [row] = first.query(f"SELECT amount_usd FROM spend_holds WHERE cap_id = '{cap['id']}'")
        upstream.release(gate)
        events.get_final_message()
    return float(row["amount_usd"])


def _stream(client, gate):
    return client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=12, messages=HELLO, extra_headers={"x-fake-gate": gate}
    )


def test_parallel_streams_through_two_workers_overspend_at_most_one_estimate(workers, upstream, one_request, tag):
    """Eight streams at once, four through each Worker, on a cap of 2.5 holds: three are
    admitted (0, 1 and 2 holds before them), the rest refused before going upstream; the
    spend ends at most one estimate over the cap (spend_caps.py's bound)."""
    estimate = _hold_of_one_stream(workers, upstream, tag)
    assert estimate >= one_request  # the hold bounds the real cost
    first, second = workers
    key = create_key(first)
    limit = 2.5 * estimate
    cap = _set_cap(first, owner_kind="key", owner_id=key["id"], limit_usd=limit)
    time.sleep(CACHE_SECONDS + 0.5)
    started = threading.Barrier(8, timeout=120)

    def run(n):
        client = _client((first, second)[n % 2], key["key"], tag)
        started.wait()
        try:
            with _stream(client, f"{tag}-{n}") as events:
                first_event = next(iter(events))
                return "admitted", first_event.type, events
        except anthropic.RateLimitError as refusal:
            return "refused", refusal, None

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(run, range(8)))
    admitted = [events for kind, _, events in outcomes if kind == "admitted"]
    refused = [refusal for kind, refusal, _ in outcomes if kind == "refused"]
    assert len(admitted) == 3 and len(refused) == 5, outcomes
    for refusal in refused:
        _assert_cap_refusal(refusal, f"relay key {key['id']}")
        assert "held by requests in flight" in refusal.body["error"]["message"]
    for n in range(8):
        upstream.release(f"{tag}-{n}")
    spent = _settled(first, cap["id"])
    assert 3 * one_request == pytest.approx(spent)
    assert spent <= limit + estimate


def test_a_client_that_hangs_up_mid_stream_is_billed_and_its_hold_let_go(workers, upstream, tag):
    first, second = workers
    key = create_key(first)
    cap = _set_cap(first, owner_kind="key", owner_id=key["id"], limit_usd=100.0)
    time.sleep(CACHE_SECONDS + 0.5)
    gate = f"{tag}-hangup"
    stream = _stream(_client(second, key["key"], tag), gate).__enter__()
    assert next(iter(stream)).type == "message_start"
    assert first.query(f"SELECT id FROM spend_holds WHERE cap_id = '{cap['id']}'")
    stream.close()  # the client hangs up with the answer unfinished
    upstream.release(gate)
    assert _settled(first, cap["id"]) > 0  # its input, and what output passed, counted


def test_claude_code_shows_relays_message_at_the_cap_and_does_not_retry(workers, upstream, tag):
    """Without `-representative-claim` and `-overage-status` on the 429, the CLI prints
    relay's own message (naming the cap and its reset) instead of its own; and with
    `x-should-retry: false` it gives up at once."""
    first, _ = workers
    key = create_key(first)
    cap = _set_cap(first, owner_kind="key", owner_id=key["id"], limit_usd=10.0)
    start = int(time.time() // 86400 * 86400)  # today's UTC window
    first.query(f"INSERT INTO spend_counters (cap_id, window_start, spent_usd) VALUES ('{cap['id']}', {start}, 10.5)")
    time.sleep(CACHE_SECONDS + 0.5)
    began = time.monotonic()
    finished = run_claude(first.url, "say hi", api_key=key["key"], headers={"x-test-tag": tag})
    assert finished.returncode != 0
    shown = finished.stdout + finished.stderr
    assert f"relay key {key['id']} has reached its daily spend cap of $10.00" in shown, shown
    assert "resets at" in shown and time.monotonic() - began < 60
    assert upstream.requests(tag) == []

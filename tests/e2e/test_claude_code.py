"""The real Claude Code CLI (`claude -p`), pointed at relay on workerd, works as it does
against the API, and what it sends reaches the provider unchanged but for the key (and,
unless the key's cache policy is `off`, the prompt-cache markers relay adds).

"Unchanged" is checked against the CLI itself: the same prompt sent straight to the fake
upstream is the reference, once the values that differ between any two runs (session id,
device id, the throw-away working directory) are masked.
"""

from __future__ import annotations

import json
import re

import anthropic
import pytest

from devtools.fake_upstream import REPLY_TEXT, Seen
from tests.clients import relay_cli, run_claude

from .conftest import ADMIN_TOKEN, ANTHROPIC_UPSTREAM_KEY, CLIENT_KEY, ISSUED, SECRETS, create_key, session_rows

# Fields that differ between the direct and the relayed request by design: the address,
# the key, the body's length and the test's own tag; `connection` is hop-by-hop, and the
# runtime sets `accept-encoding` on outgoing requests (README, "Headers").
# Fields of one hop, and `cf-worker`, which the platform adds to every subrequest a Worker makes.
_PER_HOP = {
    "host",
    "x-api-key",
    "authorization",
    "content-length",
    "x-test-tag",
    "connection",
    "accept-encoding",
    "cf-worker",
}
_WORKDIR = re.compile(r"relay-claude-home-[A-Za-z0-9_-]+")  # the CLI writes "_" as "-" in paths it derives


def _one(upstream, tag) -> Seen:
    seen = upstream.requests(tag)
    assert len(seen) == 1, [s.path for s in seen]
    return seen[0]


def _user_id(seen: Seen) -> dict:
    return json.loads(seen.json()["metadata"]["user_id"])


def _masked(seen: Seen) -> tuple[dict, str]:
    """The request's end-to-end fields (lower-case names) and body, with per-run values masked."""
    user = _user_id(seen)
    text = seen.body.decode()
    for value, mask in ((seen.header("x-claude-code-session-id"), "<session>"), (user["device_id"], "<device>")):
        text = text.replace(value, mask)
    fields = {name.lower(): value for name, value in seen.headers if name.lower() not in _PER_HOP}
    fields["x-claude-code-session-id"] = "<session>"
    return fields, _WORKDIR.sub("<workdir>", text)


def test_say_hi_through_relay(relay, anthropic_upstream, tag):
    run = run_claude(relay.url, api_key=CLIENT_KEY, headers={"x-test-tag": tag})

    assert run.returncode == 0, run.stderr
    assert REPLY_TEXT in run.stdout
    seen = _one(anthropic_upstream, tag)
    assert (seen.method, seen.path) == ("POST", "/v1/messages?beta=true")
    assert seen.header("x-api-key") == ANTHROPIC_UPSTREAM_KEY
    assert seen.header("authorization") is None
    assert seen.header("anthropic-version") == "2023-06-01"
    assert seen.header("anthropic-beta")
    assert seen.header("user-agent").startswith("claude-cli/")
    stainless = [name for name, _ in seen.headers if name.lower().startswith("x-stainless-")]
    assert len(stainless) >= 8, stainless
    body = seen.json()
    assert body["stream"] is True
    assert _user_id(seen)["session_id"] == seen.header("x-claude-code-session-id")
    marked = [block for block in body["system"] if block.get("cache_control") == {"type": "ephemeral"}]
    assert len(body["system"]) == 3 and len(marked) == 2
    assert body["tools"] and all(tool["name"] and tool["input_schema"] for tool in body["tools"])
    assert all(secret not in run.stdout + run.stderr for secret in SECRETS)

    # The audit row: Claude Code's session, client and the token counts the provider reported.
    [row] = session_rows(relay, seen.header("x-claude-code-session-id"), 1)
    assert (row["client"], row["status"], row["stream"], row["error_type"]) == ("claude-cli", 200, 1, None)
    assert (row["input_tokens"], row["cache_creation_tokens"], row["cache_read_tokens"]) == (
        seen.usage["input_tokens"],
        seen.usage["cache_creation_input_tokens"],
        seen.usage["cache_read_input_tokens"],
    )
    assert row["output_tokens"] == 12 and row["cost_usd"] > 0


def _without_markers(value):
    """`value` with every `cache_control` member taken out, at any depth."""
    if isinstance(value, dict):
        return {k: _without_markers(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_without_markers(v) for v in value]
    return value


def _markers(value) -> int:
    if isinstance(value, dict):
        return ("cache_control" in value) + sum(_markers(v) for v in value.values())
    return sum(_markers(v) for v in value) if isinstance(value, list) else 0


def test_what_the_cli_sends_arrives_unchanged(relay, anthropic_upstream, tag):
    untouched = create_key(relay, name="claude code, no markers", cache_policy="off")["key"]
    direct = run_claude(anthropic_upstream.url, api_key=ANTHROPIC_UPSTREAM_KEY, headers={"x-test-tag": tag + "-direct"})
    relayed = run_claude(relay.url, api_key=untouched, headers={"x-test-tag": tag})
    marked = run_claude(relay.url, api_key=CLIENT_KEY, headers={"x-test-tag": tag + "-marked"})
    assert direct.returncode == 0 and relayed.returncode == 0 and marked.returncode == 0, relayed.stderr

    reference_fields, reference_body = _masked(_one(anthropic_upstream, tag + "-direct"))
    fields, body = _masked(_one(anthropic_upstream, tag))
    assert fields == reference_fields
    assert json.loads(body) == json.loads(reference_body)
    assert body == reference_body  # byte for byte, key order and spacing included

    # With relay's default cache policy the only change is markers, within the API's limit of 4.
    marked_fields, marked_body = _masked(_one(anthropic_upstream, tag + "-marked"))
    assert marked_fields == reference_fields
    assert _without_markers(json.loads(marked_body)) == _without_markers(json.loads(reference_body))
    assert _markers(json.loads(reference_body)) <= _markers(json.loads(marked_body)) <= 4


def test_auth_token_is_accepted_as_the_relay_key(relay, anthropic_upstream, tag):
    run = run_claude(relay.url, auth_token=CLIENT_KEY, headers={"x-test-tag": tag})

    assert run.returncode == 0, run.stderr
    assert REPLY_TEXT in run.stdout
    seen = _one(anthropic_upstream, tag)
    assert seen.header("x-api-key") == ANTHROPIC_UPSTREAM_KEY
    assert seen.header("authorization") is None


@pytest.mark.parametrize("setting", ["api_key", "auth_token"])
def test_a_wrong_relay_key_stops_the_cli_and_never_reaches_the_upstream(relay, anthropic_upstream, tag, setting):
    run = run_claude(relay.url, headers={"x-test-tag": tag}, **{setting: "relay-wrong-key-0000"})

    assert run.returncode != 0
    assert "401 invalid relay key" in run.stdout  # relay's own message reaches the user
    assert anthropic_upstream.requests(tag) == []


def test_a_key_made_with_the_key_cli_serves_the_sdk_and_claude_code(relay, anthropic_upstream, tag):
    created = relay_cli(
        "keys", "create", "--name", "claude code e2e", "--url", relay.url, env={"RELAY_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    ISSUED.append(key)

    sdk = anthropic.Anthropic(base_url=relay.url, api_key=key, max_retries=0, default_headers={"x-test-tag": tag})
    message = sdk.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == REPLY_TEXT
    run = run_claude(relay.url, api_key=key, headers={"x-test-tag": tag})
    assert run.returncode == 0, run.stderr
    assert REPLY_TEXT in run.stdout

    seen = anthropic_upstream.requests(tag)
    assert [s.path for s in seen] == ["/v1/messages", "/v1/messages?beta=true"]
    assert all(s.header("x-api-key") == ANTHROPIC_UPSTREAM_KEY for s in seen)
    assert key not in run.stdout + run.stderr

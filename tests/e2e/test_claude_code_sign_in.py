"""The real Claude Code CLI signs in to relay with its own `/login` (interactive, in tmux),
this test acting as the person's browser against relay's verification page and the fake IdP;
then `claude -p` works through relay with that session, under the group's pushed settings
and policy, its telemetry relayed; and once the person is removed at the IdP, the next
refresh fails and Claude Code sends them back to /login."""

from __future__ import annotations

import json
import re
import time

import pytest

from devtools.fake_collector import FakeCollector
from devtools.fake_oidc import FakeIdp
from devtools.fake_upstream import REPLY_TEXT
from devtools.local_worker import LocalWorker
from tests import sign_in_browser
from tests.claude_terminal import ClaudeTerminal

from .conftest import ANTHROPIC_UPSTREAM_KEY, ISSUED, audit_rows

IDP_SECRET = "relay-test-oidc-client-secret-0002"
SESSION_SECRET = "relay-test-session-secret-0002-abcdefghijklmnop"
# Only Sonnet and Haiku: Claude Code's own default model through a gateway (Opus) is refused,
# so a request that passes shows that the pushed default model reached the CLI.
POLICIES = {
    "groups": {
        "engineering": {
            "allowed_models": ["claude-sonnet-*", "claude-haiku-*"],
            "default_model": "claude-sonnet-4-5",
            "billing_tag": "eng",
            "settings": {"env": {"OTEL_METRIC_EXPORT_INTERVAL": "1000", "OTEL_LOGS_EXPORT_INTERVAL": "1000"}},
        }
    }
}
ISSUED.extend([IDP_SECRET, SESSION_SECRET])


@pytest.fixture(scope="module")
def idp():
    with FakeIdp(IDP_SECRET) as fake:
        fake.add_user("dana", "dana@example.com", ["engineering"])
        yield fake
        ISSUED.extend(fake.issued)


@pytest.fixture(scope="module")
def collector():
    with FakeCollector() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(idp, collector, anthropic_upstream):
    worker = LocalWorker(
        {
            "ANTHROPIC_API_KEYS": ANTHROPIC_UPSTREAM_KEY,
            "UPSTREAM_ANTHROPIC_URL": anthropic_upstream.url,
            "RELAY_OIDC_ISSUER": idp.issuer,
            "RELAY_OIDC_CLIENT_ID": idp.client_id,
            "RELAY_OIDC_CLIENT_SECRET": IDP_SECRET,
            "RELAY_SESSION_SECRET": SESSION_SECRET,
            "RELAY_ACCESS_TOKEN_SECONDS": "60",  # Claude Code refreshes before every request
            "RELAY_GROUP_POLICIES": json.dumps(POLICIES),
            "RELAY_TELEMETRY_COLLECTORS": collector.url,
        }
    ).start()
    yield worker
    worker.stop()


@pytest.fixture
def terminal(gateway):
    term = ClaudeTerminal({"forceLoginMethod": "gateway", "forceLoginGatewayUrl": gateway.url})
    yield term.start()
    term.close()


def test_claude_code_logs_in_works_through_relay_and_is_sent_back_to_login_after_removal(
    gateway, idp, collector, terminal
):
    terminal.wait_for("trust this folder")
    terminal.choose("Yes, I trust this folder")
    terminal.wait_for("auto mode")
    terminal.type("/login")
    terminal.wait_for("Enter to connect")
    terminal.keys("Enter")
    terminal.wait_for("Trust gateway 127.0.0.1?")
    terminal.choose("Yes, trust this gateway")
    screen = terminal.wait_for("Waiting for sign-in")
    user_code = re.search(r"Code:\s+([A-Z]{4}-[A-Z]{4})", screen).group(1)
    assert gateway.url + "/device" in screen

    done = sign_in_browser.sign_in(gateway.url + "/device", user_code, idp, "dana", prefilled=False)
    assert "Signed in as dana@example.com" in done.text
    # The token answer's `email`: Claude Code asks the person to confirm the account.
    terminal.wait_for("Signed in to Cloud gateway as dana@example.com")
    terminal.choose("Yes, continue")
    terminal.wait_for("Connected to Cloud gateway")
    terminal.keys("Enter")

    answer = terminal.run_print("say hi")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert REPLY_TEXT in answer.stdout
    rows = audit_rows(gateway, "person_email = 'dana@example.com' AND status = 200", 1)
    assert rows[0]["model_requested"] == "claude-sonnet-4-5"  # the pushed default model
    assert (rows[0]["group_name"], rows[0]["billing_tag"]) == ("engineering", "eng")

    deadline = time.monotonic() + 30
    while not collector.received and time.monotonic() < deadline:
        time.sleep(0.5)
    assert collector.received, "no telemetry reached the collector"
    assert {r.path for r in collector.received} <= {"/v1/metrics", "/v1/logs", "/v1/traces"}

    idp.remove_user("dana")
    time.sleep(1)
    refused = terminal.run_print("say hi")
    assert refused.returncode != 0
    # "Cloud gateway <url> no longer accepts this session. Start `claude` and sign in again with /login."
    assert "sign in again with /login" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    assert "POST /oauth/token 401" in gateway.log()  # the refresh, refused: invalid_grant

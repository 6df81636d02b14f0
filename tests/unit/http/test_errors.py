"""relay's own error answers tell clients whether sending the same request again can help."""

import json

import pytest

from relay.http.errors import error_response
from relay.http.text_bounds import MESSAGE_CHARS


@pytest.mark.parametrize("surface", ["anthropic", "openai"])
@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 405, 413])
def test_client_errors_a_retry_cannot_fix_say_so(surface, status):
    headers = dict(error_response(surface, status, "no").headers)
    assert headers["x-should-retry"] == "false"


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 504, 529])
def test_answers_worth_retrying_leave_the_decision_to_the_client(status):
    # Claude Code and the SDKs retry these by default (429 honouring retry-after).
    assert "x-should-retry" not in dict(error_response("anthropic", status, "later").headers)


@pytest.mark.parametrize("surface", ["anthropic", "openai"])
def test_a_message_quoting_the_clients_text_is_cut_to_a_bounded_length(surface):
    """A 403 once sent a 2.5 MB model name back whole."""
    answer = error_response(surface, 403, "relay key rk_1 may not use model " + "m" * 2_500_000)
    message = json.loads(answer.body)["error"]["message"]
    assert len(message) == MESSAGE_CHARS
    assert message.startswith("relay key rk_1 may not use model mmm") and message.endswith("m…")


def test_a_refusal_may_name_its_error_type_in_each_apis_terms():
    """A spent cap is a 429 that retrying cannot fix: billing_error to Anthropic's clients,
    insufficient_quota to OpenAI's (the status alone would say rate_limit_error)."""
    anthropic = json.loads(error_response("anthropic", 429, "spent", kind="billing_error").body)
    openai = json.loads(error_response("openai", 429, "spent", kind="billing_error").body)
    assert anthropic["error"]["type"] == "billing_error"
    assert (openai["error"]["type"], openai["error"]["code"]) == ("insufficient_quota", "insufficient_quota")

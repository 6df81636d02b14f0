"""relay's own error answers tell clients whether sending the same request again can help."""

import pytest

from relay.errors import error_response


@pytest.mark.parametrize("surface", ["anthropic", "openai"])
@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 405, 413])
def test_client_errors_a_retry_cannot_fix_say_so(surface, status):
    headers = dict(error_response(surface, status, "no").headers)
    assert headers["x-should-retry"] == "false"


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 504, 529])
def test_answers_worth_retrying_leave_the_decision_to_the_client(status):
    # Claude Code and the SDKs retry these by default (429 honouring retry-after).
    assert "x-should-retry" not in dict(error_response("anthropic", status, "later").headers)

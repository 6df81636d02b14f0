"""Which session a request belongs to."""

from __future__ import annotations

import json

from relay.http.messages import Headers
from relay.pipeline.session import session_id

CLAUDE_CODE_USER_ID = json.dumps({"device_id": "d-1", "account_uuid": "", "session_id": "s-from-metadata"})


def test_the_claude_code_header_wins():
    headers = Headers([("X-Claude-Code-Session-Id", "s-header")])
    assert session_id(headers, {"metadata": {"user_id": CLAUDE_CODE_USER_ID}}) == "s-header"


def test_the_session_inside_claude_codes_metadata_user_id():
    assert session_id(Headers(), {"metadata": {"user_id": CLAUDE_CODE_USER_ID}}) == "s-from-metadata"


def test_a_plain_user_id_is_the_session():
    assert session_id(Headers(), {"metadata": {"user_id": "user-42"}}) == "user-42"
    assert session_id(Headers(), {"metadata": {"user_id": "{not json"}}) == "{not json"


def test_no_session():
    assert session_id(Headers(), None) is None
    assert session_id(Headers(), {"metadata": {"user_id": ""}}) is None
    assert session_id(Headers(), {"metadata": "odd"}) is None
    assert session_id(Headers(), {"metadata": {"user_id": json.dumps({"device_id": "d"})}}) == json.dumps(
        {"device_id": "d"}
    )

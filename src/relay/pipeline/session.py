"""The client session a request belongs to, for upstream-key stickiness and the usage log."""

from __future__ import annotations

from typing import Any

from relay.http.json_spans import loads_or_none
from relay.http.messages import Headers
from relay.http.text_bounds import well_formed


def session_id(headers: Headers, body: Any) -> str | None:
    """Claude Code's X-Claude-Code-Session-Id; else the session inside metadata.user_id
    (Claude Code sends a JSON string holding session_id); else metadata.user_id itself.
    The id is hashed as UTF-8 (for key stickiness), so a lone surrogate in it is U+FFFD."""
    header = headers.get("x-claude-code-session-id")
    if header:
        return header
    found = _from_body(body)
    return well_formed(found) if found is not None else None


def _from_body(body: Any) -> str | None:
    metadata = body.get("metadata") if isinstance(body, dict) else None
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    if user_id.startswith("{"):
        inner = loads_or_none(user_id)
        session = inner.get("session_id") if isinstance(inner, dict) else None
        if isinstance(session, str):
            return session
    return user_id

"""`GET /v1/models` and `GET /openai/v1/models` when RELAY_ROUTES is set: the models the
routes expose, in each surface's format, answered by relay (a provider's own list would
name its models, not the names clients should use).

For a signed-in person whose group policy allows only some models, either list names only
those (`may_use`): relay's own, or the provider's, read and filtered (`filtered`), so
Claude Code's model discovery offers nothing the policy would refuse."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from relay.http.bodies import answer_body
from relay.http.errors import error_response
from relay.http.messages import Headers, Response, Transport, json_response
from relay.pipeline.endpoints import MODEL_LIST
from relay.providers.model_routes import Table

_CREATED = "1970-01-01T00:00:00Z"  # the APIs require a date; relay has none to give


def answers(surface: str, method: str, upstream_path: str) -> bool:
    return method == "GET" and upstream_path == MODEL_LIST[surface]


MAX_LIST_BYTES = 4 * 1024 * 1024


def response(surface: str, table: Table, may_use: Callable[[str], bool] = lambda model: True) -> Response:
    listed = [(model, provider) for model, provider in table.listed_models() if may_use(model)]
    payload: dict[str, Any]
    if surface == "openai":
        payload = {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": provider} for model, provider in listed
            ],
        }
    else:
        data = [{"type": "model", "id": model, "display_name": model, "created_at": _CREATED} for model, _ in listed]
        payload = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    return json_response(200, payload)


async def filtered(surface: str, answer: Response, may_use: Callable[[str], bool], transport: Transport) -> Response:
    """A provider's model list (Anthropic's or OpenAI's shape) with only the models `may_use`
    allows; an answer that is no such list passes as it came."""
    if answer.status != 200 or "json" not in (Headers(answer.headers).get("content-type") or ""):
        return answer
    body = await answer_body(transport, answer, MAX_LIST_BYTES)
    if body is None:
        return error_response(surface, 502, "the provider's model list is too large for relay to filter")
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return _as(answer, body)
    data = [m for m in payload["data"] if isinstance(m, dict) and isinstance(m.get("id"), str) and may_use(m["id"])]
    payload["data"] = data
    if "first_id" in payload:
        payload["first_id"] = data[0]["id"] if data else None
        payload["last_id"] = data[-1]["id"] if data else None
    return _as(answer, json.dumps(payload).encode())


def _as(answer: Response, body: bytes) -> Response:
    fields = [(n, v) for n, v in answer.headers if n.lower() not in ("content-length", "content-encoding", "etag")]
    return Response(answer.status, fields, body)

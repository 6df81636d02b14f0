"""`GET /v1/models` and `GET /openai/v1/models` when RELAY_ROUTES is set: the models the
routes expose, in each surface's format, answered by relay (a provider's own list would
name its models, not the names clients should use)."""

from __future__ import annotations

from typing import Any

from relay.http.messages import Response, json_response
from relay.pipeline.endpoints import MODEL_LIST
from relay.providers.model_routes import Table

_CREATED = "1970-01-01T00:00:00Z"  # the APIs require a date; relay has none to give


def answers(surface: str, method: str, upstream_path: str) -> bool:
    return method == "GET" and upstream_path == MODEL_LIST[surface]


def response(surface: str, table: Table) -> Response:
    listed = table.listed_models()
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

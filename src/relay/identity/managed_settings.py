"""`GET /managed/settings`: the managed-settings.json of a signed-in person's group policy.

The answer is `{uuid, checksum, settings}` with `ETag` the quoted checksum; a matching
`If-None-Match` gets 304; a caller without a policy (no group of RELAY_GROUP_POLICIES and
no "default", or a relay key) gets 404, which Claude Code reads as "no policy", unlike
`200` with empty settings. The settings are the policy's "settings" object, with the
policy's "default_model" as "model" unless the object sets one itself.

When relay relays telemetry (RELAY_TELEMETRY_COLLECTORS), every signed-in person's settings
also turn Claude Code's OpenTelemetry export on, to relay itself, as the reference gateway
does (`telemetry_env`); a policy's own `env` entries win over these.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from relay.http.errors import Refused
from relay.http.messages import Response
from relay.identity.gateway_settings import GroupPolicy

PATH = "/managed/settings"
_NAMESPACE = uuid.UUID("6f1d9a52-3c0e-4f53-9a1c-2b7b3f0f5e11")  # relay's, for the policies' uuids


def telemetry_env(base_url: str) -> dict[str, str]:
    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": base_url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }


def settings_of(policy: GroupPolicy | None, telemetry_to: str | None = None) -> dict[str, Any] | None:
    """The settings to deliver (None: no policy applies). `telemetry_to`: relay's base URL
    when it relays telemetry."""
    has_policy = policy is not None and (policy.settings is not None or policy.default_model is not None)
    if not has_policy and telemetry_to is None:
        return None
    settings = dict(policy.settings or {}) if policy is not None else {}
    if policy is not None and policy.default_model is not None:
        settings.setdefault("model", policy.default_model)
    if telemetry_to is not None:
        env = settings.get("env")
        settings["env"] = {**telemetry_env(telemetry_to), **(env if isinstance(env, dict) else {})}
    return settings


def checksum(settings: Mapping[str, Any]) -> str:
    """`sha256:` and the hex SHA-256 of the settings as JSON, keys sorted at every level, no whitespace."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def response(policy: GroupPolicy | None, if_none_match: str | None, telemetry_to: str | None = None) -> Response:
    settings = settings_of(policy, telemetry_to)
    if settings is None:
        raise Refused(404, "no managed settings apply to you")
    digest = checksum(settings)
    etag = f'"{digest}"'
    fields = [("etag", etag), ("cache-control", "private, no-cache")]
    presented = [tag.strip() for tag in (if_none_match or "").split(",")]
    if etag in presented or digest in presented or f"W/{etag}" in presented:
        return Response(304, fields, b"")
    name = policy.group if policy is not None else "telemetry"
    payload = {"uuid": str(uuid.uuid5(_NAMESPACE, name)), "checksum": digest, "settings": settings}
    return Response(200, [("content-type", "application/json"), *fields], json.dumps(payload).encode())

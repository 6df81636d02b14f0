"""`GET /managed/settings`: the managed-settings.json of a signed-in person's group policy.

The answer is `{uuid, checksum, settings}` with `ETag` the quoted checksum; a matching
`If-None-Match` gets 304; a caller without a policy (no group of RELAY_GROUP_POLICIES and
no "default", or a relay key) gets 404, which Claude Code reads as "no policy", unlike
`200` with empty settings. The settings are the policy's "settings" object, with the
policy's "default_model" as "model" unless the object sets one itself.
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


def settings_of(policy: GroupPolicy) -> dict[str, Any] | None:
    if policy.settings is None and policy.default_model is None:
        return None
    settings = dict(policy.settings or {})
    if policy.default_model is not None:
        settings.setdefault("model", policy.default_model)
    return settings


def checksum(settings: Mapping[str, Any]) -> str:
    """`sha256:` and the hex SHA-256 of the settings as JSON, keys sorted at every level, no whitespace."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def response(policy: GroupPolicy | None, if_none_match: str | None) -> Response:
    settings = settings_of(policy) if policy is not None else None
    if policy is None or settings is None:
        raise Refused(404, "no managed settings apply to you")
    digest = checksum(settings)
    etag = f'"{digest}"'
    fields = [("etag", etag), ("cache-control", "private, no-cache")]
    presented = [tag.strip() for tag in (if_none_match or "").split(",")]
    if etag in presented or digest in presented or f"W/{etag}" in presented:
        return Response(304, fields, b"")
    payload = {"uuid": str(uuid.uuid5(_NAMESPACE, policy.group)), "checksum": digest, "settings": settings}
    return Response(200, [("content-type", "application/json"), *fields], json.dumps(payload).encode())

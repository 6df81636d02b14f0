"""Claude on Google Cloud Vertex AI: the rawPredict call for a Messages request.

Vertex takes the Messages body, without `model` (it is in the path) and with
`anthropic_version: vertex-2023-10-16`, at
`/v1/projects/<project>/locations/<region>/publishers/anthropic/models/<model>:rawPredict`
(`:streamRawPredict` for a stream), and answers as the Anthropic API does: JSON, or SSE
passed through untouched. Model ids carry their version after an `@`
(`claude-sonnet-4-5@20250929`); an Anthropic-style dated name is written that way.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

ANTHROPIC_VERSION = "vertex-2023-10-16"
MODELS = {
    "claude-opus-4-5": "claude-opus-4-5@20251101",
    "claude-sonnet-4-5": "claude-sonnet-4-5@20250929",
    "claude-haiku-4-5": "claude-haiku-4-5@20251001",
    "claude-opus-4-1": "claude-opus-4-1@20250805",
    "claude-opus-4-0": "claude-opus-4@20250514",
    "claude-sonnet-4-0": "claude-sonnet-4@20250514",
}
_DATED = re.compile(r"^(claude-[a-z0-9-]+?)-(20[0-9]{6})$")


def default_base_url(region: str) -> str:
    host = "aiplatform.googleapis.com" if region == "global" else f"{region}-aiplatform.googleapis.com"
    return f"https://{host}"


def model_id(models: dict[str, str], model: str) -> str:
    if model in models:
        return models[model]
    dated = _DATED.match(model)
    return MODELS.get(model) or (f"{dated.group(1)}@{dated.group(2)}" if dated else model)


def path(project: str, region: str, model: str, stream: bool) -> str:
    method = "streamRawPredict" if stream else "rawPredict"
    return (
        f"/v1/projects/{quote(project, safe='')}/locations/{quote(region, safe='')}"
        f"/publishers/anthropic/models/{quote(model, safe='@')}:{method}"
    )


def body(document: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in document.items() if k != "model"}
    out["anthropic_version"] = ANTHROPIC_VERSION
    return out

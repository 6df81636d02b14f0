"""The route table: which surface a path belongs to and where it goes upstream.

Anthropic's API lives at the root (ANTHROPIC_BASE_URL=<relay>); OpenAI's under
/openai/v1 (OPENAI_BASE_URL=<relay>/openai/v1), so both SDKs work side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote

OPENAI_PREFIX = "/openai/v1"

# POST endpoints whose body relay reads as a JSON object (everything else passes as bytes).
_JSON_ENDPOINTS = {
    "anthropic": frozenset({"/v1/messages", "/v1/messages/count_tokens"}),
    "openai": frozenset({"/chat/completions", "/completions", "/embeddings", "/responses"}),
}

# OpenAI endpoints whose streams report usage only when asked (`stream_options.include_usage`):
# Chat Completions and the legacy Completions define the option. A Responses stream always
# ends with its usage (`response.completed`), and its `stream_options` has no such field.
STREAM_USAGE_OPTION = frozenset({"/chat/completions", "/completions"})


@dataclass(frozen=True)
class Route:
    surface: str        # "anthropic" or "openai": the API format the client speaks
    upstream_path: str  # appended to that provider's base URL
    json_body: bool


def surface_of(path: str) -> str:
    """The API format to answer in, even for a path that matches no route."""
    return "openai" if path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/") else "anthropic"


def resolve(method: str, path: str) -> Optional[Route]:
    if path.startswith(OPENAI_PREFIX + "/"):
        surface, upstream_path = "openai", path[len(OPENAI_PREFIX):]
    elif path.startswith("/v1/"):
        surface, upstream_path = "anthropic", path
    else:
        return None
    json_body = method == "POST" and upstream_path in _JSON_ENDPOINTS[surface]
    return Route(surface, upstream_path, json_body)


def is_safe_path(path: str) -> bool:
    """No dot segments, encoded slashes or backslashes that could step outside the API's tree."""
    if "\\" in path or "%2f" in path.lower() or "%5c" in path.lower():
        return False
    return all(unquote(segment) not in (".", "..") for segment in path.split("/"))

"""The route table: which surface a path belongs to, where it goes upstream, and what relay
knows of the endpoint.

Anthropic's API lives at the root (ANTHROPIC_BASE_URL=<relay>); OpenAI's under
/openai/v1 (OPENAI_BASE_URL=<relay>/openai/v1), so both SDKs work side by side.

Relay reads the requests of a few endpoints (their model, whether they stream, then the
usage in their answer) and knows that reading the model catalogue costs nothing: those
are the `known` routes, the only ones a key with an allowed-model list or a budget may
use (policy.py). Every other path under /v1/ passes through unread.

One spelling per route. What relay does for a route it reads (the key's allowed models
and budget, its open streams, the usage row, prompt-cache markers) is bound to the path
it recognises, but an upstream may serve `/v1/messages/`, `/v1//messages`,
`/v1/%6Dessages` or `/v1/messages;x` as Messages too, in ways relay cannot learn. So a
path that folds to such a route without being spelled as it is (`variant_of`) is refused
with 400 naming the route's one spelling, for every key: the client learns how to reach
the route, and nothing relay did not check reaches the upstream. Rewriting it to the
route instead would forward a path the client never sent and accept endless spellings of
each route; the SDKs and Claude Code send each route's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

OPENAI_PREFIX = "/openai/v1"

# POST endpoints whose body relay reads as a JSON object (everything else passes as bytes).
_JSON_ENDPOINTS = {
    "anthropic": ("/v1/messages", "/v1/messages/count_tokens"),
    "openai": ("/chat/completions", "/completions", "/embeddings", "/responses"),
}
# The model catalogue: the list (which relay answers itself when RELAY_ROUTES is set) and one model.
MODEL_LIST = {"anthropic": "/v1/models", "openai": "/models"}
_MODEL = re.compile(r"/[A-Za-z0-9._:%-]+")

# Known endpoints that cost nothing: counting a request's tokens is free.
FREE_ENDPOINTS = frozenset({"/v1/messages/count_tokens"})

# OpenAI endpoints whose streams report usage only when asked (`stream_options.include_usage`):
# Chat Completions and the legacy Completions define the option. A Responses stream always
# ends with its usage (`response.completed`), and its `stream_options` has no such field.
STREAM_USAGE_OPTION = frozenset({"/chat/completions", "/completions"})


@dataclass(frozen=True)
class Route:
    surface: str  # "anthropic" or "openai": the API format the client speaks
    upstream_path: str  # appended to that provider's base URL
    json_body: bool
    known: bool  # relay reads its model and cost (a JSON body), or it has neither (the catalogue)


def surface_of(path: str) -> str:
    """The API format to answer in, even for a path that matches no route."""
    return "openai" if path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/") else "anthropic"


def _client_path(surface: str, upstream_path: str) -> str:
    return OPENAI_PREFIX + upstream_path if surface == "openai" else upstream_path


def resolve(method: str, path: str) -> Route | None:
    if path.startswith(OPENAI_PREFIX + "/"):
        surface, upstream_path = "openai", path[len(OPENAI_PREFIX) :]
    elif path.startswith("/v1/"):
        surface, upstream_path = "anthropic", path
    else:
        return None
    json_body = method == "POST" and upstream_path in _JSON_ENDPOINTS[surface]
    catalogue = MODEL_LIST[surface]
    reads_catalogue = method == "GET" and (
        upstream_path == catalogue
        or (upstream_path.startswith(catalogue) and _MODEL.fullmatch(upstream_path[len(catalogue) :]) is not None)
    )
    return Route(surface, upstream_path, json_body, known=json_body or reads_catalogue)


def known_endpoints(surface: str) -> str:
    """The known routes of a surface, for a message: "POST /v1/messages, ... and GET /v1/models"."""
    posts = ", ".join(_client_path(surface, path) for path in _JSON_ENDPOINTS[surface])
    catalogue = _client_path(surface, MODEL_LIST[surface])
    return f"POST {posts}, and GET {catalogue} (or {catalogue}/<model>)"


# Every route relay reads, as clients spell it.
_READ = frozenset(
    _client_path(surface, path)
    for surface in _JSON_ENDPOINTS
    for path in (*_JSON_ENDPOINTS[surface], MODEL_LIST[surface])
)


def _folded(path: str) -> str:
    """`path` with the differences an upstream might ignore taken out: percent-encoding
    (however deep), `;` parameters, surrounding blanks, case, empty segments."""
    segments = []
    for segment in path.split("/"):
        for _ in range(4):
            decoded = unquote(segment)
            if decoded == segment:
                break
            segment = decoded
        segment = segment.split(";", 1)[0].strip().lower()
        if segment:
            segments.append(segment)
    return "/" + "/".join(segments)


def variant_of(path: str) -> str | None:
    """The route relay reads that `path` is another spelling of, or None (see the module's
    docstring: such a path is refused, not served)."""
    if path in _READ:
        return None
    folded = _folded(path)
    return folded if folded in _READ else None


def is_safe_path(path: str) -> bool:
    """No dot segments, encoded slashes or backslashes that could step outside the API's tree."""
    if "\\" in path or "%2f" in path.lower() or "%5c" in path.lower():
        return False
    return all(unquote(segment) not in (".", "..") for segment in path.split("/"))

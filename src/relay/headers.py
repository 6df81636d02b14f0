"""Which header fields cross relay, in each direction.

Everything the client sends reaches the upstream byte-identical (anthropic-version,
anthropic-beta, x-stainless-*, user-agent, unknown x-*), except the fields that
describe the client's own connection or credentials.
"""

from __future__ import annotations

from typing import Iterable

from .http import Headers

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
    "proxy-authenticate", "proxy-authorization", "proxy-connection",
})

# The client's credentials for relay, and the address it used.
_CLIENT_ONLY = frozenset({"host", "authorization", "x-api-key"})

# The runtime frames the body it actually sends, which relay may have rewritten.
_FRAMING = frozenset({"content-length"})


def _connection_tokens(headers: Headers) -> set[str]:
    """Fields the sender declared hop-by-hop in its Connection header (RFC 9110 7.6.1)."""
    value = headers.get("connection") or ""
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def _passes(name: str, dropped: set[str], prefixes: tuple[str, ...]) -> bool:
    return not (name in HOP_BY_HOP or name in dropped or name.startswith(prefixes))


def upstream_request_headers(client: Headers, credential: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's fields minus its own connection and credentials, plus the upstream credential."""
    dropped = _connection_tokens(client) | _CLIENT_ONLY | _FRAMING
    # cf-* fields are the platform's own view of the client (IP, country, ray id).
    kept = [(name, value) for name, value in client.items()
            if _passes(name, dropped, ("proxy-", "cf-"))]
    return kept + list(credential)


def client_response_headers(upstream: Headers) -> list[tuple[str, str]]:
    """The upstream's fields minus hop-by-hop and framing ones and its CORS answer.

    CORS is relay's decision (cors.py), not the upstream's.
    """
    dropped = _connection_tokens(upstream) | _FRAMING
    return [(name, value) for name, value in upstream.items()
            if _passes(name, dropped, ("proxy-", "access-control-"))]

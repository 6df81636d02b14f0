"""Which header fields cross relay, in each direction.

Everything the client sends reaches the upstream byte-identical (anthropic-version,
anthropic-beta, x-stainless-*, user-agent, unknown x-*), except the fields that
describe the client's own connection or credentials, and those a request on relay's
pooled upstream key must not carry for a client. Everything the upstream answers reaches
the client, except its connection's fields and those that belong to relay's account.
"""

from __future__ import annotations

from collections.abc import Iterable

from relay.http.messages import Headers


def bearer_token(headers: Headers) -> str | None:
    """The token of `Authorization: Bearer <token>` (the scheme in any case), or None."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
    }
)

# The client's credentials for relay, and the address it used.
_CLIENT_ONLY = frozenset({"host", "authorization", "x-api-key"})

# What a client may not send on relay's pooled key: its cookies (relay's site's, not the
# provider's); the addresses it claims for itself or its proxies (these and x-forwarded-*:
# relay vouches for none, and a provider has no business with its clients' addresses: it
# sees relay); and the OpenAI organisation or project to bill, which would let the client
# choose among the accounts relay's key belongs to (a provider's configured `headers` may
# set them).
_NOT_ON_THE_POOL = frozenset(
    {
        "cookie",
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "client-ip",
        "fastly-client-ip",
        "x-originating-ip",
        "openai-organization",
        "openai-project",
    }
)

# What an upstream answers about relay's own connection and account, not the client's:
# cookies it (or its CDN) sets, its challenge for relay's credential and any credential it
# might echo, and the organisation or project relay's key bills.
_RELAYS_OWN = frozenset(
    {
        "set-cookie",
        "set-cookie2",
        "www-authenticate",
        "authentication-info",
        "authorization",
        "x-api-key",
        "anthropic-organization-id",
        "openai-organization",
        "openai-project",
    }
)

# The runtime frames the body it actually sends, which relay may have rewritten.
_FRAMING = frozenset({"content-length"})


def _connection_tokens(headers: Headers) -> set[str]:
    """Fields the sender declared hop-by-hop in its Connection header (RFC 9110 7.6.1)."""
    value = headers.get("connection") or ""
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def upstream_request_headers(client: Headers, credential: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's fields minus its own connection and credentials, plus the upstream credential."""
    dropped = HOP_BY_HOP | _connection_tokens(client) | _CLIENT_ONLY | _FRAMING | _NOT_ON_THE_POOL
    # cf-* fields are the platform's own view of the client (IP, country, ray id).
    prefixes = ("proxy-", "cf-", "x-forwarded-")
    kept = [(name, value) for name, value in client.items() if not (name in dropped or name.startswith(prefixes))]
    return kept + list(credential)


def client_response_headers(upstream: Headers) -> list[tuple[str, str]]:
    """The upstream's fields minus hop-by-hop and framing ones, relay's own, and its CORS
    answer.

    CORS is relay's decision (cors.py), not the upstream's.
    """
    dropped = HOP_BY_HOP | _connection_tokens(upstream) | _FRAMING | _RELAYS_OWN
    prefixes = ("proxy-", "access-control-")
    return [(name, value) for name, value in upstream.items() if not (name in dropped or name.startswith(prefixes))]

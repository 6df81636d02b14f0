"""Who may use relay: the client key a request presents, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Optional

from .http import Headers


def presented_key(headers: Headers) -> Optional[str]:
    """The key from `x-api-key` (Anthropic SDKs) or `Authorization: Bearer` (OpenAI SDKs)."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def is_accepted(key: Optional[str], accepted: Iterable[str]) -> bool:
    """True when `key` is one of `accepted`; every candidate is compared, in constant time."""
    if not key:
        return False
    presented = _digest(key)
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(presented, _digest(candidate))
    return found

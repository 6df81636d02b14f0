"""The identity provider's refresh token, sealed before it is stored in D1.

relay keeps the IdP's refresh token so that each refresh of a relay session asks the IdP
whether the person may still sign in. Such a token is a credential at the IdP, so D1 holds
it only sealed under a key derived from RELAY_SESSION_SECRET: a copy of the database alone
gives it away to no one. Pure Python (no AES on Pyodide without a C extension, and
WebCrypto's calls are asynchronous JS): a stream cipher whose key stream is HMAC-SHA256 in
counter mode over a random nonce, then HMAC-SHA256 over nonce and ciphertext
(encrypt-then-MAC), each under its own key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from relay.identity.access_tokens import b64url, derived_key, unb64url

_NONCE = 16
_TAG = 32


def _stream(key: bytes, nonce: bytes, size: int) -> bytes:
    blocks = (hmac.new(key, nonce + n.to_bytes(8, "big"), hashlib.sha256).digest() for n in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def seal(secret: str, plain: str) -> str:
    nonce = secrets.token_bytes(_NONCE)
    data = plain.encode()
    cipher = bytes(a ^ b for a, b in zip(data, _stream(derived_key(secret, "seal-stream"), nonce, len(data))))
    tag = hmac.new(derived_key(secret, "seal-tag"), nonce + cipher, hashlib.sha256).digest()
    return b64url(nonce + cipher + tag)


def unseal(secret: str, sealed: str) -> str | None:
    """The sealed text, or None when it was not sealed under this secret (or was altered)."""
    try:
        raw = unb64url(sealed)
    except ValueError:
        return None
    if len(raw) < _NONCE + _TAG:
        return None
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    expected = hmac.new(derived_key(secret, "seal-tag"), nonce + cipher, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        return None
    stream = _stream(derived_key(secret, "seal-stream"), nonce, len(cipher))
    return bytes(a ^ b for a, b in zip(cipher, stream)).decode(errors="replace")

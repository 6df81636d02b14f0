"""relay's own bearer tokens for signed-in people, and the keyed hashes of what it stores.

An access token is a JWT signed with HS256 under a key derived from RELAY_SESSION_SECRET:
`sub` (the person's id), `email`, `name`, `groups`, `sid` (the session), `iat`, `exp` and
`aud` ["claude-gateway", "relay"]. Claude Code reads only `exp` (it refreshes before it)
and recognises the `claude-gateway` audience; relay checks the signature, `alg` (HS256
only: `none` and every other algorithm are refused before any key is used), `exp` and that
its own audience is there.

Device codes, user codes, refresh tokens and the browser's sign-in cookie are stored only
as `keyed_hash`es (HMAC-SHA256 under another derived key): a user code has about 34 bits
of entropy, which a plain hash would give away to anyone holding a copy of D1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

AUDIENCE = ("claude-gateway", "relay")
# Longest token relay reads: its own are about 600 bytes.
MAX_TOKEN_CHARS = 4096
_FORM = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class BadToken(Exception):
    """The token is not a valid, current relay access token; the message says why (never the token)."""


def derived_key(secret: str, purpose: str) -> bytes:
    """One key per purpose from RELAY_SESSION_SECRET, so no two uses share a key."""
    return hmac.new(secret.encode(), b"relay:" + purpose.encode(), hashlib.sha256).digest()


def keyed_hash(secret: str, value: str) -> str:
    """The only form in which relay stores a code or token it handed out."""
    return hmac.new(derived_key(secret, "stored-hash"), value.encode(), hashlib.sha256).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """Raises ValueError (binascii.Error is one) on text that is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def has_token_form(text: str) -> bool:
    """Whether `text` could be a JWT (relay keys never look like one)."""
    return len(text) <= MAX_TOKEN_CHARS and _FORM.fullmatch(text) is not None


@dataclass(frozen=True)
class Claims:
    person_id: str
    session_id: str
    email: str | None
    name: str | None
    groups: tuple[str, ...]
    expires_at: int


def mint(secret: str, issuer: str, claims: Claims, now: float) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {
        "iss": issuer,
        "aud": list(AUDIENCE),
        "sub": claims.person_id,
        "sid": claims.session_id,
        "session_id": claims.session_id,
        "email": claims.email,
        "name": claims.name,
        "groups": list(claims.groups),
        "iat": int(now),
        "exp": claims.expires_at,
    }
    signing_input = _part(header) + "." + _part(payload)
    return signing_input + "." + b64url(_signature(secret, signing_input))


def _part(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _signature(secret: str, signing_input: str) -> bytes:
    return hmac.new(derived_key(secret, "access-token"), signing_input.encode(), hashlib.sha256).digest()


def verify(secret: str, token: str, now: float, check_expiry: bool = True) -> Claims:
    """The claims of a token relay signed, or BadToken. `check_expiry=False` serves
    revocation, which must accept an expired token (RFC 7009 §2.2)."""
    if not has_token_form(token):
        raise BadToken("not a relay access token")
    head, body, signature = token.split(".")
    header, payload = _decoded(head), _decoded(body)
    if header.get("alg") != "HS256":
        raise BadToken("access token is not signed with HS256")
    try:
        presented = unb64url(signature)
    except ValueError:
        raise BadToken("access token signature is malformed") from None
    if not hmac.compare_digest(presented, _signature(secret, head + "." + body)):
        raise BadToken("access token signature does not verify")
    audience = payload.get("aud")
    audience = audience if isinstance(audience, list) else [audience]
    if "relay" not in audience or "claude-gateway" not in audience:
        raise BadToken("access token is not for relay")
    expires = payload.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise BadToken("access token has no expiry")
    if check_expiry and expires <= now:
        raise BadToken("access token has expired: refresh it (Claude Code: /login)")
    groups = payload.get("groups")
    person, session = payload.get("sub"), payload.get("sid")
    if not isinstance(person, str) or not isinstance(session, str):
        raise BadToken("access token names no person or session")
    return Claims(
        person_id=person,
        session_id=session,
        email=_text(payload.get("email")),
        name=_text(payload.get("name")),
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        expires_at=expires,
    )


def _decoded(part: str) -> dict[str, Any]:
    try:
        value = json.loads(unb64url(part))
    except (ValueError, UnicodeDecodeError):
        raise BadToken("access token is malformed") from None
    if not isinstance(value, dict):
        raise BadToken("access token is malformed")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

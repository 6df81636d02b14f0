"""A Google Cloud access token from a service-account key, made in the Worker.

The key (the JSON file Google issues, held as one secret) signs a JWT with RS256, which
its `token_uri` exchanges for an access token (OAuth 2.0 JWT bearer grant, RFC 7523).
RSA signing is done here in plain Python (the key's CRT form with `pow`); it runs once per
token, and a token is kept in the isolate until TOKEN_MARGIN_SECONDS before it expires.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from relay.http.bodies import whole_body
from relay.http.json_spans import loads_or_none
from relay.http.messages import Transport, UpstreamUnreachable

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_SECONDS = 3600
TOKEN_MARGIN_SECONDS = 300
# DER of the DigestInfo that precedes a SHA-256 digest in PKCS #1 v1.5 signatures.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_PEM = re.compile(r"-----BEGIN (RSA )?PRIVATE KEY-----(.+?)-----END (?:RSA )?PRIVATE KEY-----", re.S)


class TokenError(Exception):
    """No access token could be had; the message names no secret."""


@dataclass(frozen=True)
class RsaKey:
    n: int
    d: int = field(repr=False)
    p: int = field(repr=False)
    q: int = field(repr=False)
    dp: int = field(repr=False)
    dq: int = field(repr=False)
    qinv: int = field(repr=False)

    def sign_sha256(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2), by the Chinese remainder theorem."""
        size = (self.n.bit_length() + 7) // 8
        digest = _SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
        encoded = b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest
        m = int.from_bytes(encoded, "big")
        m1, m2 = pow(m, self.dp, self.p), pow(m, self.dq, self.q)
        s = m2 + (self.qinv * (m1 - m2) % self.p) * self.q
        return s.to_bytes(size, "big")


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    token_uri: str
    project_id: str | None
    key: RsaKey = field(repr=False)


def _der(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, contents, offset after) of the DER element at `at`."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    return tag, data[at : at + length], at + length


def _sequence(data: bytes) -> list[tuple[int, bytes]]:
    items, at = [], 0
    while at < len(data):
        tag, contents, at = _der(data, at)
        items.append((tag, contents))
    return items


def rsa_key(pem: str) -> RsaKey:
    """The RSA private key of a PEM (PKCS #8, as Google issues them, or PKCS #1)."""
    match = _PEM.search(pem)
    if match is None:
        raise ValueError("no PEM private key")
    der = base64.b64decode("".join(match.group(2).split()))
    tag, outer, _ = _der(der, 0)
    items = _sequence(outer)
    if not match.group(1):  # PKCS #8: version, algorithm, then the PKCS #1 key in an octet string
        _, inner, _ = _der(items[2][1], 0)
        items = _sequence(inner)
    numbers = [int.from_bytes(contents, "big") for t, contents in items if t == 0x02]
    _, n, _e, d, p, q, dp, dq, qinv = numbers[:9]
    return RsaKey(n, d, p, q, dp, dq, qinv)


def service_account(text: str) -> ServiceAccount | None:
    """The service account of a key file's JSON, or None if it is not one relay can use."""
    try:
        document = json.loads(text)
        email, uri, pem = document["client_email"], document["token_uri"], document["private_key"]
        if not all(isinstance(v, str) for v in (email, uri, pem)) or not uri.startswith(("https://", "http://")):
            return None
        project = document.get("project_id")
        return ServiceAccount(email, uri, project if isinstance(project, str) else None, rsa_key(pem))
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(account: ServiceAccount, now: float) -> str:
    """The signed JWT that asks `token_uri` for an access token."""
    header = {"alg": "RS256", "typ": "JWT"}
    issued = int(now)
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_SECONDS,
    }
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64url(account.key.sign_sha256(signing_input.encode()))}"


async def access_token(
    key_id: str, secret: str, tokens: dict[str, tuple[str, float]], transport: Transport, now: float, timeout: float
) -> str:
    """A valid access token for the service account in `secret`, from `tokens` (the
    isolate's, by key id) or newly exchanged; raises TokenError."""
    held = tokens.get(key_id)
    if held and held[1] - TOKEN_MARGIN_SECONDS > now:
        return held[0]
    account = service_account(secret)
    if account is None:
        raise TokenError("the service-account key cannot be read")
    form = urlencode({"grant_type": GRANT_TYPE, "assertion": assertion(account, now)}).encode()
    headers = [("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json")]
    try:
        answer = await transport.send("POST", account.token_uri, headers, form, timeout)
        raw = await whole_body(transport, answer)
    except UpstreamUnreachable:
        raise TokenError("the token endpoint could not be reached") from None
    document = loads_or_none(raw)
    token = document.get("access_token") if isinstance(document, dict) else None
    if answer.status != 200 or not isinstance(token, str):
        error = document.get("error") if isinstance(document, dict) else None
        raise TokenError(f"the token endpoint answered {answer.status} {error if isinstance(error, str) else ''}")
    lifetime = document.get("expires_in")
    lifetime = lifetime if isinstance(lifetime, int) and lifetime > 0 else ASSERTION_SECONDS
    tokens[key_id] = (token, now + lifetime)
    return token

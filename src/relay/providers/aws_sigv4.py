"""AWS Signature Version 4 for one request, in stdlib hmac/hashlib (Bedrock's credential).

The signature covers the method, the path as sent (each segment URI-encoded once more, as
every AWS service but S3 expects: a model id's `:` travels as `%3A` and is signed as
`%253A`), the sorted query, the signed header fields and the body's SHA-256. relay signs
`host`, `x-amz-date`, `x-amz-content-sha256` and, for temporary credentials,
`x-amz-security-token`; the other fields it sends are not signed, which AWS allows.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def parse_credentials(secret: str) -> Credentials | None:
    """`ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]` (none of the three holds a `:`), else None."""
    parts = secret.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        return None
    return Credentials(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def amz_date(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_path(path: str) -> str:
    """The path as AWS signs it: each segment encoded again (the path is sent encoded once)."""
    return "/".join(_encode(segment) for segment in (path or "/").split("/"))


def canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_access_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(
    method: str,
    url: str,
    signed: list[tuple[str, str]],
    payload_hash: str,
    credentials: Credentials,
    region: str,
    service: str,
    when: str,
) -> tuple[str, str]:
    """(signed header names, hex signature) of a request; `signed` are the fields to sign,
    `when` the x-amz-date value."""
    parts = urlsplit(url)
    fields = sorted((name.lower(), " ".join(value.split())) for name, value in signed)
    names = ";".join(name for name, _ in fields)
    canonical = "\n".join(
        [
            method,
            canonical_path(parts.path),
            canonical_query(parts.query),
            "".join(f"{name}:{value}\n" for name, value in fields),
            names,
            payload_hash,
        ]
    )
    scope = f"{when[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, when, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(credentials.secret_access_key, when[:8], region, service)
    return names, hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    method: str, url: str, body: bytes | None, credentials: Credentials, region: str, service: str, now: float
) -> list[tuple[str, str]]:
    """The header fields that authenticate this request: x-amz-*, and authorization."""
    when = amz_date(now)
    payload_hash = hashlib.sha256(body or b"").hexdigest()
    added = [("x-amz-date", when), ("x-amz-content-sha256", payload_hash)]
    if credentials.session_token:
        added.append(("x-amz-security-token", credentials.session_token))
    host = urlsplit(url).netloc
    names, hex_signature = signature(
        method, url, [("host", host), *added], payload_hash, credentials, region, service, when
    )
    scope = f"{when[:8]}/{region}/{service}/aws4_request"
    authorization = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, SignedHeaders={names}, Signature={hex_signature}"
    )
    return [*added, ("authorization", authorization)]

"""relay as an OpenID Connect client of the company's identity provider.

Discovery (`{issuer}/.well-known/openid-configuration`, whose `issuer` must be the one
configured), the authorization code flow with PKCE (S256) and a nonce, the code exchange
and the IdP's refresh grant (client_secret_basic), and the ID token's check: RS256 only,
its signature against the provider's JWKS (fetched again once when a token names an
unknown `kid`), then `iss`, `aud` (and `azp` when there are several audiences), `exp`,
`iat` and, at sign-in, `nonce`.

The PKCE verifier and the nonce are not stored: both are derived from the sign-in's
`state` with a key only relay holds, so the callback recomputes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from relay.http.bodies import answer_body
from relay.http.messages import UpstreamUnreachable
from relay.identity import rsa_signatures
from relay.identity.access_tokens import b64url, derived_key, unb64url
from relay.identity.gateway_settings import GatewaySettings
from relay.services import Services

CLOCK_SKEW_SECONDS = 120
DISCOVERY_SECONDS = 3600  # how long an isolate keeps the provider's metadata and keys
JWKS_REFETCH_SECONDS = 60  # the soonest an unknown kid fetches the keys again
MAX_ANSWER_BYTES = 256 * 1024
TIMEOUT_SECONDS = 15


class IdpError(Exception):
    """The identity provider could not be used (unreachable, or an answer relay cannot read)."""


class InvalidIdToken(Exception):
    """The ID token fails a check; the message says which (never the token)."""


class Refused(Exception):
    """The identity provider refused a grant (OAuth `invalid_grant` and the like)."""


@dataclass(frozen=True)
class Identity:
    subject: str  # "<issuer> <sub>": unique across providers
    email: str | None
    name: str | None
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    identity: Identity | None  # None: the IdP sent no ID token (some refresh answers)
    refresh_token: str | None


def _derived(settings: GatewaySettings, purpose: str, state: str) -> str:
    return b64url(hmac.new(derived_key(settings.session_secret, purpose), state.encode(), hashlib.sha256).digest())


def verifier_for(settings: GatewaySettings, state: str) -> str:
    return _derived(settings, "pkce", state)


def nonce_for(settings: GatewaySettings, state: str) -> str:
    return _derived(settings, "nonce", state)


async def _answer(
    services: Services, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
) -> tuple[int, Any]:
    try:
        response = await services.transport.send(method, url, headers, body, TIMEOUT_SECONDS)
    except UpstreamUnreachable as exc:
        raise IdpError(f"the identity provider did not answer ({exc})") from None
    data = await answer_body(services.transport, response, MAX_ANSWER_BYTES)
    if data is None:
        raise IdpError("the identity provider's answer is too large")
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, None


Json = dict[str, Any]
Keys = dict[str | None, tuple[int, int]]


async def _json_get(services: Services, url: str) -> Json:
    status, payload = await _answer(services, "GET", url, [("accept", "application/json")], None)
    if status != 200 or not isinstance(payload, dict):
        raise IdpError(f"the identity provider answered {status} to GET {url.split('?')[0]}")
    return dict(payload)


async def metadata(settings: GatewaySettings, services: Services, now: float) -> Json:
    cache = services.state.oidc
    cached = cache.get("metadata")
    if cached is not None and now - cached[1] < DISCOVERY_SECONDS and cached[0].get("issuer") == settings.issuer:
        return dict(cached[0])
    document = await _json_get(services, settings.issuer + "/.well-known/openid-configuration")
    if document.get("issuer") != settings.issuer:
        raise IdpError("the identity provider's discovery document names another issuer")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(name), str) or not document[name].startswith(("https://", "http://")):
            raise IdpError(f"the identity provider's discovery document has no {name}")
    cache["metadata"] = (document, now)
    return document


async def _keys(settings: GatewaySettings, services: Services, now: float, refetch: bool) -> Keys:
    cache = services.state.oidc
    cached = cache.get("jwks")
    # A refetch asked for (an unknown kid) waits JWKS_REFETCH_SECONDS since the last fetch.
    age = now - cached[1] if cached is not None else None
    if (
        cached is not None
        and age is not None
        and age < DISCOVERY_SECONDS
        and not (refetch and age >= JWKS_REFETCH_SECONDS)
    ):
        return dict(cached[0])
    document = await _json_get(services, (await metadata(settings, services, now))["jwks_uri"])
    keys: Keys = {}
    for key in document.get("keys") or []:
        if isinstance(key, dict) and key.get("kty") == "RSA" and key.get("use", "sig") == "sig":
            try:
                keys[key.get("kid")] = (_int(key["n"]), _int(key["e"]))
            except (KeyError, TypeError, ValueError):
                continue
    cache["jwks"] = (keys, now)
    return keys


def _int(text: str) -> int:
    return int.from_bytes(unb64url(text), "big")


async def authorization_url(
    settings: GatewaySettings, services: Services, state: str, redirect_uri: str, now: float
) -> str:
    endpoint = (await metadata(settings, services, now))["authorization_endpoint"]
    challenge = b64url(hashlib.sha256(verifier_for(settings, state).encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": settings.scopes,
            "state": state,
            "nonce": nonce_for(settings, state),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        quote_via=quote,
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _client_auth(settings: GatewaySettings) -> tuple[str, str]:
    pair = f"{quote(settings.client_id, safe='')}:{quote(settings.client_secret, safe='')}"
    return "authorization", "Basic " + base64.b64encode(pair.encode()).decode()


async def _token_request(settings: GatewaySettings, services: Services, form: dict[str, str], now: float) -> Json:
    endpoint = (await metadata(settings, services, now))["token_endpoint"]
    headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
        _client_auth(settings),
    ]
    status, payload = await _answer(services, "POST", endpoint, headers, urlencode(form).encode())
    if status in (400, 401) and isinstance(payload, dict) and isinstance(payload.get("error"), str):
        raise Refused(payload["error"])
    if status != 200 or not isinstance(payload, dict):
        raise IdpError(f"the identity provider's token endpoint answered {status}")
    return dict(payload)


async def exchange_code(
    settings: GatewaySettings, services: Services, code: str, state: str, redirect_uri: str, now: float
) -> Grant:
    """The person the IdP signed in, from the code it sent to the callback."""
    payload = await _token_request(
        settings,
        services,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier_for(settings, state),
        },
        now,
    )
    token = payload.get("id_token")
    if not isinstance(token, str):
        raise IdpError("the identity provider sent no ID token (is the openid scope allowed?)")
    identity = await check_id_token(settings, services, token, now, nonce_for(settings, state))
    return Grant(identity, _text(payload.get("refresh_token")))


async def refresh(settings: GatewaySettings, services: Services, refresh_token: str, now: float) -> Grant:
    """Ask the IdP whether the person may still sign in; Refused when not."""
    payload = await _token_request(
        settings, services, {"grant_type": "refresh_token", "refresh_token": refresh_token}, now
    )
    token = payload.get("id_token")
    identity = await check_id_token(settings, services, token, now, None) if isinstance(token, str) else None
    return Grant(identity, _text(payload.get("refresh_token")) or refresh_token)


async def check_id_token(
    settings: GatewaySettings, services: Services, token: str, now: float, nonce: str | None
) -> Identity:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidIdToken("the ID token is not a JWS")
    try:
        header, claims = json.loads(unb64url(parts[0])), json.loads(unb64url(parts[1]))
        signature = unb64url(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise InvalidIdToken("the ID token is malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidIdToken("the ID token is malformed")
    if header.get("alg") != "RS256":
        raise InvalidIdToken(f"the ID token is signed with {str(header.get('alg'))[:20]}, relay accepts RS256 only")
    signed = (parts[0] + "." + parts[1]).encode()
    key = _key_named(await _keys(settings, services, now, refetch=False), header.get("kid"))
    if key is None:
        key = _key_named(await _keys(settings, services, now, refetch=True), header.get("kid"))
    if key is None:
        raise InvalidIdToken("the ID token is signed with a key the provider does not publish")
    if not rsa_signatures.verify(key[0], key[1], signed, signature):
        raise InvalidIdToken("the ID token's signature does not verify")
    _check_claims(settings, claims, now, nonce)
    groups = claims.get(settings.groups_claim)
    if isinstance(groups, str):
        groups = [groups]
    return Identity(
        subject=f"{settings.issuer} {claims['sub']}",
        email=_text(claims.get("email")),
        name=_text(claims.get("name")),
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
    )


def _key_named(keys: Keys, kid: Any) -> tuple[int, int] | None:
    """The key a token's `kid` names; a token without one may use the provider's only key."""
    if kid is None and len(keys) == 1:
        return next(iter(keys.values()))
    return keys.get(kid) if isinstance(kid, str) else None


def _check_claims(settings: GatewaySettings, claims: Json, now: float, nonce: str | None) -> None:
    if claims.get("iss") != settings.issuer:
        raise InvalidIdToken("the ID token is from another issuer")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if settings.client_id not in audiences:
        raise InvalidIdToken("the ID token is not for relay's client id")
    if len(audiences) > 1 and claims.get("azp") != settings.client_id:
        raise InvalidIdToken("the ID token has several audiences and relay is not its authorized party")
    expires, issued = claims.get("exp"), claims.get("iat")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool) or expires + CLOCK_SKEW_SECONDS <= now:
        raise InvalidIdToken("the ID token has expired")
    if issued is not None and (not _number(issued) or issued > now + CLOCK_SKEW_SECONDS):
        raise InvalidIdToken("the ID token was issued in the future")
    if nonce is not None and not (isinstance(claims.get("nonce"), str) and hmac.compare_digest(claims["nonce"], nonce)):
        raise InvalidIdToken("the ID token's nonce is not this sign-in's")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidIdToken("the ID token names no subject")
    if claims.get("email_verified") is False:
        raise InvalidIdToken("the identity provider has not verified this email address")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

"""The gateway's OAuth surface, as Claude Code signs in to it: RFC 8414 metadata, RFC 8628
device authorization, the token endpoint (device and refresh grants) and RFC 7009
revocation. Unauthenticated, form-encoded, answered in RFC 6749's error form
(`{"error", "error_description"}`), never in the Anthropic envelope.

Unknown form parameters are ignored (Claude Code sends `surface=claude_code`, and no
`client_id`); a parameter given twice is `invalid_request` (RFC 6749 §3.1).
"""

from __future__ import annotations

import json
import re
import secrets
from urllib.parse import parse_qsl

from relay.http.messages import Request, Response
from relay.identity import access_tokens, gateway_sessions, oidc, people
from relay.identity.gateway_settings import GatewaySettings
from relay.limits import key_limits
from relay.log import log
from relay.services import Services

METADATA_PATH = "/.well-known/oauth-authorization-server"
DEVICE_PATH = "/oauth/device_authorization"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"
VERIFICATION_PATH = "/device"
CALLBACK_PATH = "/oauth/callback"

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_CODE_SECONDS = 600
POLL_SECONDS = 5
SLOW_DOWN_SECONDS = 5  # RFC 8628 §3.5
MAX_FORM_BYTES = 8 * 1024
MAX_FIELDS = 32
# RFC 8628 §6.1: 20 consonants, no vowels (no words), case-insensitive, 8 characters (~34 bits).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
# Per client IP and minute (Workers Rate Limiting tiers, as relay keys' rpm): device codes
# issued (each a D1 row), and user codes tried on the verification page (RFC 8628 §5.1:
# about 34 bits each, so 10 tries a minute leave a guess at a live code hopeless).
DEVICE_CODES_PER_MINUTE = 60
USER_CODE_TRIES_PER_MINUTE = 10
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class BadForm(Exception):
    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status, self.description = status, description


def oauth_error(status: int, error: str, description: str) -> Response:
    body = json.dumps({"error": error, "error_description": description}).encode()
    fields = [("content-type", "application/json"), ("cache-control", "no-store")]
    if status == 401:
        fields.append(("x-should-retry", "false"))
    return Response(status, fields, body)


def _json(payload: dict[str, object]) -> Response:
    return Response(
        200, [("content-type", "application/json"), ("cache-control", "no-store")], json.dumps(payload).encode()
    )


def base_url(request: Request, gateway: GatewaySettings) -> str:
    """Where clients reach relay: RELAY_PUBLIC_URL, else the request's own Host (http only on loopback)."""
    if gateway.public_url:
        return gateway.public_url
    host = (request.headers.get("host") or "").strip()
    if not _HOST.fullmatch(host):
        host = "localhost"
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return ("http://" if name.lower() in _LOOPBACK else "https://") + host


async def read_form(request: Request) -> dict[str, str]:
    """A form-encoded body's fields; BadForm when too large, not a form or a field repeats."""
    if request.method != "POST":
        raise BadForm(405, f"{request.method} is not allowed here: use POST")
    body = await request.read_body(MAX_FORM_BYTES)
    if body is None:
        raise BadForm(413, f"the form exceeds {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadForm(400, "the body is not a UTF-8 form (application/x-www-form-urlencoded)") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise BadForm(400, f"the form gives {name[:40]} more than once")
        form[name] = value
    return form


async def within_rate(request: Request, services: Services, purpose: str, per_minute: int) -> bool:
    """Count one `purpose` attempt of the client's IP; False when it is over `per_minute`.
    Without rate-limit bindings there is no limit (as for relay keys)."""
    tier = key_limits.tier_for(per_minute, services.limiters)
    if tier is None:
        return True
    ip = request.headers.get("cf-connecting-ip") or "unknown"
    return await services.limiters[tier].allow(f"{purpose}:{ip}")


def metadata(request: Request, gateway: GatewaySettings) -> Response:
    base = base_url(request, gateway)
    return _json(
        {
            "issuer": base,
            "device_authorization_endpoint": base + DEVICE_PATH,
            "token_endpoint": base + TOKEN_PATH,
            "revocation_endpoint": base + REVOKE_PATH,
            "grant_types_supported": [DEVICE_GRANT, "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "gateway_protocol_version": 1,
        }
    )


def new_user_code() -> str:
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return letters[:4] + "-" + letters[4:]


def normal_user_code(text: str) -> str:
    """The user code as stored: upper case, without the dash or spaces a person may type."""
    return "".join(ch for ch in text.upper() if ch in USER_CODE_ALPHABET)


async def device_authorization(request: Request, gateway: GatewaySettings, services: Services, now: float) -> Response:
    await read_form(request)  # its fields are all optional and ignored, but it must be a form
    if not await within_rate(request, services, "device-codes", DEVICE_CODES_PER_MINUTE):
        answer = oauth_error(429, "slow_down", "too many sign-ins from this address: wait a minute")
        return Response(429, [*answer.headers, ("retry-after", "60")], answer.body)
    device_code, user_code = secrets.token_urlsafe(32), new_user_code()
    secret = gateway.session_secret
    await people.forget_expired(people.db_of(services), now)
    await people.create_grant(
        people.db_of(services),
        access_tokens.keyed_hash(secret, device_code),
        access_tokens.keyed_hash(secret, normal_user_code(user_code)),
        now + DEVICE_CODE_SECONDS,
        POLL_SECONDS,
    )
    base = base_url(request, gateway)
    return _json(
        {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": base + VERIFICATION_PATH,
            "verification_uri_complete": f"{base}{VERIFICATION_PATH}?user_code={user_code}",
            "expires_in": DEVICE_CODE_SECONDS,
            "interval": POLL_SECONDS,
        }
    )


async def token(request: Request, gateway: GatewaySettings, services: Services, now: float) -> Response:
    form = await read_form(request)
    grant_type = form.get("grant_type")
    if grant_type == DEVICE_GRANT:
        return await _device_grant(request, form, gateway, services, now)
    if grant_type == "refresh_token":
        refresh = form.get("refresh_token") or ""
        if not refresh:
            return oauth_error(400, "invalid_request", "refresh_token is missing")
        try:
            pair = await gateway_sessions.refresh(gateway, services, base_url(request, gateway), refresh, now)
        except gateway_sessions.InvalidGrant as exc:
            return oauth_error(401, "invalid_grant", str(exc))
        except oidc.IdpError as exc:
            log(f"sign-in: refresh not checked with the identity provider: {exc}")
            return oauth_error(503, "temporarily_unavailable", "the identity provider cannot be reached; try again")
        return _tokens(pair)
    if not grant_type:
        return oauth_error(400, "invalid_request", "grant_type is missing")
    return oauth_error(400, "unsupported_grant_type", f"relay supports {DEVICE_GRANT} and refresh_token")


async def _device_grant(
    request: Request, form: dict[str, str], gateway: GatewaySettings, services: Services, now: float
) -> Response:
    code = form.get("device_code") or ""
    if not code:
        return oauth_error(400, "invalid_request", "device_code is missing")
    device_hash = access_tokens.keyed_hash(gateway.session_secret, code)
    grant = await people.grant(people.db_of(services), device_hash)
    if grant is None:
        # expired_token, not invalid_grant: the one error of the device grant after which the
        # gateway protocol has the client stop (the reference gateway answers the same).
        return oauth_error(400, "expired_token", "unknown device code (it may have been used already)")
    if grant["expires_at"] <= now:
        await people.take_grant(people.db_of(services), device_hash, grant["status"])
        return oauth_error(400, "expired_token", "the device code has expired: start the sign-in again")
    if grant["status"] == "denied":
        await people.take_grant(people.db_of(services), device_hash, "denied")
        return oauth_error(400, "access_denied", "the sign-in was refused")
    if grant["status"] == "pending":
        interval = grant["interval_seconds"]
        if grant["polled_at"] is not None and now - grant["polled_at"] < interval:
            await people.note_poll(people.db_of(services), device_hash, now, interval + SLOW_DOWN_SECONDS)
            return oauth_error(400, "slow_down", f"poll at most every {interval + SLOW_DOWN_SECONDS} seconds")
        await people.note_poll(people.db_of(services), device_hash, now, interval)
        return oauth_error(400, "authorization_pending", "the person has not finished signing in yet")
    taken = await people.take_grant(people.db_of(services), device_hash, "approved")
    if taken is None:
        return oauth_error(400, "expired_token", "the device code has been used already")
    person = await people.get_person(people.db_of(services), taken["person_id"])
    if person is None:
        return oauth_error(400, "access_denied", "the signed-in person is gone")
    pair = await gateway_sessions.open_session(
        gateway, services, base_url(request, gateway), person, taken["idp_refresh"], now
    )
    # `email`: the account that approved the code, which Claude Code shows and asks the person
    # to confirm before it stores the credential (a code approved by someone else is caught).
    return _tokens(pair, person.get("email"))


def _tokens(pair: gateway_sessions.TokenPair, email: str | None = None) -> Response:
    payload: dict[str, object] = {
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
    }
    if email:
        payload["email"] = email
    return _json(payload)


async def revoke(request: Request, gateway: GatewaySettings, services: Services, now: float) -> Response:
    form = await read_form(request)
    presented = form.get("token") or ""
    if not presented:
        return oauth_error(400, "invalid_request", "token is missing")
    await gateway_sessions.revoke_token(gateway, services, presented, now)
    return Response(200, [("cache-control", "no-store")], b"")

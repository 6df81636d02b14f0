"""The verification page (RFC 8628 §3.3) and the IdP's callback: where a person's browser
approves the code Claude Code shows.

`GET /device` shows a form for the user code (pre-filled from `?user_code=`, never sent
by itself: a link alone must not approve anyone's device). `POST /device` checks the form
against the browser's cookie (CSRF: the form carries an HMAC of the cookie's random value,
which another site can neither read nor forge), counts the attempt against the client's
IP, finds the pending grant and sends the browser to the IdP with a `state` bound to that
grant and that browser. `GET /oauth/callback` takes the state once, exchanges the code,
checks the ID token and the sign-in policy, and approves (or denies) the grant.
"""

from __future__ import annotations

import hmac
import html
import secrets
from urllib.parse import parse_qsl

from relay.http.messages import Request, Response
from relay.identity import access_tokens, oidc, people, sealed
from relay.identity.gateway_settings import GatewaySettings
from relay.identity.oauth import (
    CALLBACK_PATH,
    USER_CODE_TRIES_PER_MINUTE,
    VERIFICATION_PATH,
    BadForm,
    base_url,
    normal_user_code,
    read_form,
    within_rate,
)
from relay.log import log
from relay.services import Services

COOKIE = "relay_signin"
TRIP_SECONDS = 600


def _page(status: int, title: str, body: str, *headers: tuple[str, str]) -> Response:
    text = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>body{{font:16px system-ui;max-width:32em;margin:3em auto;"
        "padding:0 1em}input{font:inherit;letter-spacing:.1em;text-transform:uppercase}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    fields = [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("referrer-policy", "no-referrer"),
        *headers,
    ]
    return Response(status, fields, text.encode())


def _cookie_value(request: Request) -> str | None:
    for part in (request.headers.get("cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and 20 <= len(value) <= 100:
            return value
    return None


def _set_cookie(request: Request, gateway: GatewaySettings, value: str) -> tuple[str, str]:
    secure = "; Secure" if base_url(request, gateway).startswith("https://") else ""
    return "set-cookie", f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={TRIP_SECONDS}{secure}"


def _csrf(gateway: GatewaySettings, cookie: str) -> str:
    return access_tokens.keyed_hash(gateway.session_secret, "csrf:" + cookie)


def _form(gateway: GatewaySettings, cookie: str, user_code: str, problem: str = "") -> str:
    note = f"<p role=alert><strong>{html.escape(problem)}</strong></p>" if problem else ""
    return (
        f"{note}<p>Enter the code Claude Code shows you, then sign in with your company account.</p>"
        "<p><strong>Only continue if you started this sign-in yourself</strong>, in Claude Code on your own "
        "machine, just now: whoever started it gets access in your name.</p>"
        f'<form method=post action="{VERIFICATION_PATH}">'
        f'<input type=hidden name=csrf value="{_csrf(gateway, cookie)}">'
        f'<label>Code <input name=user_code value="{html.escape(user_code[:20])}" autocomplete=off '
        "autocapitalize=characters maxlength=20 required></label> <button>Continue</button></form>"
    )


def show(request: Request, gateway: GatewaySettings) -> Response:
    cookie = _cookie_value(request) or secrets.token_urlsafe(32)
    query = dict(parse_qsl(request.query, max_num_fields=8))
    code = query.get("user_code", "")
    return _page(200, "Sign in to relay", _form(gateway, cookie, code), _set_cookie(request, gateway, cookie))


async def submit(request: Request, gateway: GatewaySettings, services: Services, now: float) -> Response:
    cookie = _cookie_value(request)
    try:
        form = await read_form(request)
    except BadForm as exc:
        return _page(exc.status, "Sign in to relay", f"<p>{html.escape(exc.description)}</p>")
    if cookie is None or not hmac.compare_digest(form.get("csrf", ""), _csrf(gateway, cookie)):
        return _page(
            403, "Sign in to relay", f'<p>This form has expired. <a href="{VERIFICATION_PATH}">Start again</a>.</p>'
        )
    if not await within_rate(request, services, "user-codes", USER_CODE_TRIES_PER_MINUTE):
        return _page(429, "Too many attempts", "<p>Wait a minute, then try again.</p>", ("retry-after", "60"))
    user_code = form.get("user_code", "")
    secret = gateway.session_secret
    grant = await people.pending_grant_for_user_code(
        people.db_of(services), access_tokens.keyed_hash(secret, normal_user_code(user_code)), now
    )
    if grant is None:
        body = _form(gateway, cookie, user_code, "That code is unknown or has expired. Check it and try again.")
        return _page(400, "Sign in to relay", body)
    state = secrets.token_urlsafe(32)
    await people.create_trip(
        people.db_of(services),
        access_tokens.keyed_hash(secret, state),
        grant["device_hash"],
        access_tokens.keyed_hash(secret, "browser:" + cookie),
        now + TRIP_SECONDS,
    )
    try:
        target = await oidc.authorization_url(gateway, services, state, base_url(request, gateway) + CALLBACK_PATH, now)
    except oidc.IdpError as exc:
        log(f"sign-in: {exc}")
        return _page(502, "Sign-in unavailable", "<p>relay cannot reach the identity provider. Try again later.</p>")
    return Response(302, [("location", target), ("cache-control", "no-store"), ("referrer-policy", "no-referrer")], b"")


async def callback(request: Request, gateway: GatewaySettings, services: Services, now: float) -> Response:
    query = dict(parse_qsl(request.query, keep_blank_values=True, max_num_fields=16))
    state, cookie, secret = query.get("state", ""), _cookie_value(request), gateway.session_secret
    trip = await people.take_trip(people.db_of(services), access_tokens.keyed_hash(secret, state)) if state else None
    start_again = f'<p><a href="{VERIFICATION_PATH}">Start again</a> with the code Claude Code shows.</p>'
    if trip is None or trip["expires_at"] <= now:
        return _page(400, "Sign-in expired", "<p>This sign-in link is unknown, used or expired.</p>" + start_again)
    if cookie is None or not hmac.compare_digest(
        trip["browser_hash"], access_tokens.keyed_hash(secret, "browser:" + cookie)
    ):
        return _page(403, "Sign-in not completed", "<p>This sign-in began in another browser.</p>" + start_again)
    if query.get("error") or not query.get("code"):
        return _page(403, "Sign-in not completed", "<p>The identity provider did not sign you in.</p>" + start_again)
    redirect_uri = base_url(request, gateway) + CALLBACK_PATH
    try:
        grant = await oidc.exchange_code(gateway, services, query["code"], state, redirect_uri, now)
    except oidc.Refused as exc:
        log(f"sign-in: the identity provider refused the code ({exc})")
        return _page(403, "Sign-in not completed", "<p>The identity provider refused the sign-in.</p>" + start_again)
    except oidc.InvalidIdToken as exc:
        log(f"sign-in: ID token refused: {exc}")
        return _page(
            403, "Sign-in not completed", "<p>The identity provider's answer did not verify.</p>" + start_again
        )
    except oidc.IdpError as exc:
        log(f"sign-in: {exc}")
        return _page(502, "Sign-in unavailable", "<p>relay cannot reach the identity provider. Try again later.</p>")
    identity = grant.identity
    assert identity is not None  # exchange_code always checks an ID token
    refusal = gateway.may_sign_in(identity.email, identity.groups)
    if refusal is not None:
        await people.settle_grant(people.db_of(services), trip["device_hash"], None, None)
        return _page(403, "Not allowed", f"<p>You are signed in, but {html.escape(refusal)}.</p>")
    person = await people.upsert_person(people.db_of(services), identity, now)
    sealed_refresh = sealed.seal(secret, grant.refresh_token) if grant.refresh_token else None
    if not await people.settle_grant(people.db_of(services), trip["device_hash"], person["id"], sealed_refresh):
        return _page(400, "Sign-in expired", "<p>This code was used or has expired.</p>" + start_again)
    who = html.escape(identity.email or identity.name or "you")
    return _page(200, "Signed in", f"<p>Signed in as {who}. You can close this page and return to Claude Code.</p>")

"""The paths of Claude Code's gateway protocol that are not the Anthropic API: sign-in
(unauthenticated), managed settings and telemetry (bearer). Served only when sign-in is
configured (RELAY_OIDC_ISSUER); otherwise these paths are relay's as before."""

from __future__ import annotations

from relay.config import Settings
from relay.http.errors import Refused
from relay.http.messages import Request, Response
from relay.identity import managed_settings, oauth, relay_keys, verification_page
from relay.services import Services
from relay.telemetry import otlp_relay

_SIGN_IN = {
    oauth.METADATA_PATH: ("GET",),
    oauth.DEVICE_PATH: ("POST",),
    oauth.TOKEN_PATH: ("POST",),
    oauth.REVOKE_PATH: ("POST",),
    oauth.VERIFICATION_PATH: ("GET", "POST"),
    oauth.CALLBACK_PATH: ("GET",),
}
_BEARER = {managed_settings.PATH: ("GET",), **{path: ("POST",) for path in otlp_relay.PATHS}}


def serves(settings: Settings, path: str) -> bool:
    return settings.gateway is not None and (path in _SIGN_IN or path in _BEARER)


async def handle(request: Request, settings: Settings, services: Services, now: float) -> Response:
    gateway, path, method = settings.gateway, request.path, request.method
    assert gateway is not None  # serves() said so
    allowed = _SIGN_IN.get(path) or _BEARER[path]
    if method not in allowed and not (method == "HEAD" and "GET" in allowed):
        fields = (("allow", ", ".join(allowed)),)
        if path in _SIGN_IN:
            answer = oauth.oauth_error(405, "invalid_request", f"use {' or '.join(allowed)} on {path}")
            return Response(405, [*answer.headers, *fields], answer.body)
        raise Refused(405, f"{method} is not allowed on {path} (allowed: {', '.join(allowed)})", fields)
    if services.db is None and path != oauth.METADATA_PATH:
        message = "sign-in needs relay's D1 database (bound as DB)"
        if path in _SIGN_IN:
            return oauth.oauth_error(503, "temporarily_unavailable", message)
        raise Refused(503, message)
    if path in _SIGN_IN:
        try:
            return await _sign_in(request, settings, services, now)
        except oauth.BadForm as exc:
            return oauth.oauth_error(exc.status, "invalid_request", exc.description)
    caller = await relay_keys.authenticate(request.headers, settings, services, now)
    if path == managed_settings.PATH:
        if not caller.person_id:
            raise Refused(404, "managed settings are for signed-in people, not relay keys")
        telemetry_to = oauth.base_url(request, gateway) if gateway.collectors else None
        policy = gateway.policy_for(caller.groups)
        return managed_settings.response(policy, request.headers.get("if-none-match"), telemetry_to)
    body = await request.read_body(otlp_relay.MAX_BODY_BYTES)
    if body is None:
        raise Refused(413, f"telemetry body exceeds relay's limit of {otlp_relay.MAX_BODY_BYTES} bytes")
    otlp_relay.relay(path, request.headers, body, gateway.collectors, services)
    return otlp_relay.accepted(request.headers)


async def _sign_in(request: Request, settings: Settings, services: Services, now: float) -> Response:
    gateway = settings.gateway
    assert gateway is not None
    path = request.path
    if path == oauth.METADATA_PATH:
        return oauth.metadata(request, gateway)
    if path == oauth.DEVICE_PATH:
        return await oauth.device_authorization(request, gateway, services, now)
    if path == oauth.TOKEN_PATH:
        return await oauth.token(request, gateway, services, now)
    if path == oauth.REVOKE_PATH:
        return await oauth.revoke(request, gateway, services, now)
    if path == oauth.CALLBACK_PATH:
        return await verification_page.callback(request, gateway, services, now)
    if request.method == "POST":
        return await verification_page.submit(request, gateway, services, now)
    return verification_page.show(request, gateway)

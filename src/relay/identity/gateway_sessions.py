"""Sessions of signed-in people: opened when a device grant is exchanged, refreshed with a
rotating refresh token, checked on every API request, revoked by the client or an admin.

Refresh tokens rotate at each use; one presented again after its rotation ends its session
(the newer one may be in another's hands). Refresh re-checks the person: when the IdP gave
relay a refresh token, relay uses it at the IdP at every refresh (hourly, with the default
access token lifetime), so a person removed or disabled there loses access at the next
refresh, and their groups stay current; the sign-in policy (RELAY_SIGNIN_EMAIL_DOMAINS,
RELAY_SIGNIN_GROUPS) is applied again to what the IdP says. When the IdP gave none, the
session ends NO_IDP_REFRESH_SECONDS after sign-in, and the person signs in again.

An access token names its session; each API request checks that the session is not
revoked, through a per-isolate cache of RELAY_KEY_CACHE_SECONDS (as relay keys are), so
an admin's revocation takes effect everywhere within that time, at once in the isolate
that made it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from relay.http.errors import Refused
from relay.identity import access_tokens, oidc, people, sealed
from relay.identity.gateway_settings import GatewaySettings
from relay.log import log
from relay.services import Services

SESSION_SECONDS = 90 * 86400  # with the IdP re-checking each refresh
NO_IDP_REFRESH_SECONDS = 12 * 3600
SESSIONS_CACHED = 10_000


class InvalidGrant(Exception):
    """The refresh token no longer opens a session; the message is for the client."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def new_refresh_token() -> str:
    return "rrt-" + secrets.token_urlsafe(32)


def _pair(
    gateway: GatewaySettings, issuer: str, person: people.Row, session_id: str, refresh: str, now: float
) -> TokenPair:
    claims = access_tokens.Claims(
        person_id=person["id"],
        session_id=session_id,
        email=person.get("email"),
        name=person.get("name"),
        groups=tuple(person.get("groups") or ()),
        expires_at=int(now) + gateway.access_token_seconds,
    )
    token = access_tokens.mint(gateway.session_secret, issuer, claims, now)
    return TokenPair(token, refresh, gateway.access_token_seconds)


async def open_session(
    gateway: GatewaySettings, services: Services, issuer: str, person: people.Row, idp_refresh: str | None, now: float
) -> TokenPair:
    refresh = new_refresh_token()
    lifetime = SESSION_SECONDS if idp_refresh else NO_IDP_REFRESH_SECONDS
    session_id = await people.create_session(
        people.db_of(services),
        person["id"],
        access_tokens.keyed_hash(gateway.session_secret, refresh),
        idp_refresh,
        now,
        now + lifetime,
    )
    log(f"sign-in: session {session_id} opened for person {person['id']}")
    return _pair(gateway, issuer, person, session_id, refresh, now)


async def refresh(
    gateway: GatewaySettings, services: Services, issuer: str, refresh_token: str, now: float
) -> TokenPair:
    """A new pair for a refresh token, or InvalidGrant (oidc.IdpError when the IdP cannot be asked)."""
    secret = gateway.session_secret
    old_hash = access_tokens.keyed_hash(secret, refresh_token)
    session = await people.session_by_refresh(people.db_of(services), old_hash)
    if session is None:
        # A refresh token used twice was copied: whoever holds the newer one may be someone
        # else, so the session ends for both (OAuth 2.0 Security BCP, refresh token rotation).
        replaced = await people.session_replaced_by(people.db_of(services), old_hash)
        if replaced is not None:
            await _end(services, replaced, now, "a refresh token was used again after its rotation")
            raise InvalidGrant("this refresh token was used already, so its session has ended: sign in again")
        raise InvalidGrant("unknown refresh token: sign in again")
    if session["revoked_at"]:
        raise InvalidGrant("this session has been revoked: sign in again")
    if session["expires_at"] <= now:
        raise InvalidGrant("this session has ended: sign in again")
    idp_refresh = sealed.unseal(secret, session["idp_refresh"]) if session["idp_refresh"] else None
    person = {
        "id": session["person_id"],
        "email": session["email"],
        "name": session["name"],
        "groups": session["groups"],
    }
    if idp_refresh is not None:
        try:
            grant = await oidc.refresh(gateway, services, idp_refresh, now)
        except oidc.Refused:
            await _end(services, session["id"], now, "the identity provider refused its refresh")
            raise InvalidGrant("the identity provider no longer signs you in: sign in again") from None
        except oidc.InvalidIdToken as exc:
            await _end(services, session["id"], now, str(exc))
            raise InvalidGrant("the identity provider's answer did not verify: sign in again") from None
        if grant.identity is not None:
            if grant.identity.subject != session["subject"]:
                await _end(services, session["id"], now, "the identity provider named another person")
                raise InvalidGrant("the identity provider named another person: sign in again")
            await people.update_person(people.db_of(services), session["person_id"], grant.identity, now)
            person.update(email=grant.identity.email, name=grant.identity.name, groups=list(grant.identity.groups))
        idp_refresh = grant.refresh_token
    refusal = gateway.may_sign_in(person["email"], tuple(person["groups"]))
    if refusal is not None:
        await _end(services, session["id"], now, "the sign-in policy no longer admits the person")
        raise InvalidGrant(refusal)
    new = new_refresh_token()
    rotated = await people.rotate(
        people.db_of(services),
        session["id"],
        old_hash,
        access_tokens.keyed_hash(secret, new),
        sealed.seal(secret, idp_refresh) if idp_refresh else None,
        now,
    )
    if not rotated:
        raise InvalidGrant("this refresh token was used already: sign in again")
    return _pair(gateway, issuer, person, session["id"], new, now)


async def _end(services: Services, session_id: str, now: float, why: str) -> None:
    await people.revoke_session(people.db_of(services), now, session_id=session_id)
    forget(services, session_id)
    log(f"sign-in: session {session_id} ended: {why}")


async def revoke_token(gateway: GatewaySettings, services: Services, token: str, now: float) -> None:
    """RFC 7009: revoke the session an access or refresh token belongs to; unknown tokens are no error."""
    if access_tokens.has_token_form(token):
        try:
            claims = access_tokens.verify(gateway.session_secret, token, now, check_expiry=False)
        except access_tokens.BadToken:
            return
        await _end(services, claims.session_id, now, "revoked by the client")
        return
    session = await people.session_by_refresh(
        people.db_of(services), access_tokens.keyed_hash(gateway.session_secret, token)
    )
    if session is not None:
        await _end(services, session["id"], now, "revoked by the client")


def forget(services: Services, session_id: str) -> None:
    services.state.gateway_sessions.pop(session_id, None)


async def bearer(
    gateway: GatewaySettings, services: Services, token: str, now: float, cache_seconds: int
) -> access_tokens.Claims:
    """The claims of a current access token whose session is open, or Refused (401)."""
    try:
        claims = access_tokens.verify(gateway.session_secret, token, now)
    except access_tokens.BadToken as exc:
        raise Refused(401, str(exc)) from None
    cache = services.state.gateway_sessions
    cached = cache.get(claims.session_id)
    if cached is None or now - cached[1] >= cache_seconds:
        state = await people.session_state(services.db, claims.session_id) if services.db is not None else None
        cached = (state is not None and not state["revoked_at"], now)
        cache.pop(claims.session_id, None)
        cache[claims.session_id] = cached
        if len(cache) > SESSIONS_CACHED:
            del cache[next(iter(cache))]
    if not cached[0]:
        raise Refused(401, "this session has been revoked: sign in again (Claude Code: /login)")
    return claims

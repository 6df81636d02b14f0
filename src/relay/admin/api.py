"""The admin API under /admin/: virtual relay keys (create, list, show, update, revoke),
spend caps (set, list with their standing, delete), usage reports and the isolate's status.

Only `Authorization: Bearer <RELAY_ADMIN_TOKEN>` opens it; relay keys never do, and the
admin token is not a relay key. Answers are JSON (reports also CSV); errors use the
Anthropic error shape. A created key appears once, in the 201 answer; nothing else
(records, logs) carries it. The usage page's files (usage_page.py) are the exception to
the token: they hold no data, and a browser cannot send a bearer token when it opens a page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from relay import times
from relay.admin import usage_page
from relay.config import Settings
from relay.http.bodies import read_bounded
from relay.http.errors import Refused
from relay.http.headers import bearer_token
from relay.http.json_spans import unknown_fields
from relay.http.messages import Headers, Request, Response, json_response
from relay.identity import gateway_sessions, key_store, people
from relay.identity.key_store import KeyRecord
from relay.limits import cap_headers, key_limits, spend_caps, token_rates
from relay.log import log
from relay.prompt_cache.markers import POLICIES
from relay.services import Database, Services
from relay.usage import export, pricing, reports

MAX_BODY_BYTES = 64 * 1024
MAX_TEXT = 256  # longest name, billing tag or model glob
MAX_MODELS = 100
_ID = re.compile(r"rk_[0-9a-f]{8}")  # key_store.new_id()
# Nothing the admin API answers may be cached.
_NO_STORE = (("cache-control", "no-store"),)
_CAP_ID = re.compile(r"cap_[0-9a-f]{8}")  # spend_caps.new_cap_id()


def _json(status: int, payload: Any) -> Response:
    return json_response(status, payload, _NO_STORE)


def _refused(status: int, message: str, *headers: tuple[str, str]) -> Refused:
    """The admin API's refusal, to raise: answered as every refusal is (pipeline.app), in
    the Anthropic error shape."""
    return Refused(status, message, (*_NO_STORE, *headers))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _authorize(headers: Headers, settings: Settings) -> None:
    """Refused unless this request may use the admin API."""
    token = settings.admin_token
    if not token:
        raise _refused(503, "admin API disabled: set RELAY_ADMIN_TOKEN")
    if any(hmac.compare_digest(_digest(token), _digest(key)) for key in settings.client_keys):
        raise _refused(503, "admin API disabled: RELAY_ADMIN_TOKEN must differ from every RELAY_CLIENT_KEYS entry")
    presented = bearer_token(headers)
    if presented is None:
        raise _refused(401, "missing admin token: send Authorization: Bearer <RELAY_ADMIN_TOKEN>")
    # Digests first: compare_digest is constant-time only for inputs of equal length.
    if not hmac.compare_digest(_digest(presented), _digest(token)):
        raise _refused(401, "invalid admin token")


# --- request bodies -------------------------------------------------------------------


def _text(value: Any, field: str, problems: list[str]) -> Any:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{field} must be a non-empty string")
    elif len(value) > MAX_TEXT:
        problems.append(f"{field} must be at most {MAX_TEXT} characters")
    return value


def _positive_int(value: Any, field: str, problems: list[str]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"{field} must be a positive whole number")
    return value


def _rpm(value: Any, field: str, problems: list[str]) -> Any:
    """A limit below the lowest rate-limit tier fits none: the key could never be used."""
    known = len(problems)
    _positive_int(value, field, problems)
    if len(problems) == known and value < key_limits.MIN_RPM:
        problems.append(
            f"{field} must be at least {key_limits.MIN_RPM} (requests per minute): "
            f"the lowest rate-limit tier is {key_limits.MIN_RPM}"
        )
    return value


def _budget(value: Any, field: str, problems: list[str]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        problems.append(f"{field} must be a non-negative number (US dollars)")
    return value


def _models(value: Any, field: str, problems: list[str]) -> Any:
    if (
        not isinstance(value, list)
        or len(value) > MAX_MODELS
        or not all(isinstance(glob, str) and glob.strip() and len(glob) <= MAX_TEXT for glob in value)
    ):
        problems.append(
            f'{field} must be a list of at most {MAX_MODELS} model globs (non-empty strings such as "claude-haiku-*")'
        )
    return value


def _expiry(value: Any, field: str, problems: list[str], now: float) -> Any:
    moment = None
    if isinstance(value, str):
        try:
            moment = times.parse_time(value)
            times.iso(moment)  # and it must be a time the store can write
        except (ValueError, OverflowError):
            moment = None
    if moment is None:
        problems.append(f'{field} must be an ISO 8601 time such as "2026-12-31T23:59:59Z"')
    elif moment <= now:
        problems.append(f"{field} must be in the future")
    return moment


def _cache_policy(value: Any, field: str, problems: list[str]) -> Any:
    if value not in POLICIES:
        problems.append(f"{field} must be one of {', '.join(POLICIES)} (or null for relay's default)")
    return value


_FIELDS: dict[str, Callable[[Any, str, list[str]], Any]] = {
    "name": _text,
    "billing_tag": _text,
    "allowed_models": _models,
    "rpm_limit": _rpm,
    "max_concurrent_streams": _positive_int,
    "monthly_budget_usd": _budget,
    "cache_policy": _cache_policy,
}


def _new_key_fields(body: Any, now: float) -> tuple[dict[str, Any], list[str]]:
    """The create_key arguments in a POST /admin/keys body, and every problem with it."""
    if not isinstance(body, dict):
        return {}, ["request body must be a JSON object"]
    problems: list[str] = []
    unknown = unknown_fields(body, [*_FIELDS, "expires_at"])
    if unknown is not None:
        problems.append(unknown)
    if body.get("name") is None:
        problems.append("name is required")
    fields: dict[str, Any] = {}
    for field, check in _FIELDS.items():
        if body.get(field) is not None:
            fields[field] = check(body[field], field, problems)
    if body.get("expires_at") is not None:
        fields["expires_at"] = _expiry(body["expires_at"], "expires_at", problems, now)
    return fields, problems


async def _json_body(request: Request) -> Any:
    raw = await read_bounded(request, MAX_BODY_BYTES, "the admin API's", _NO_STORE)
    try:
        return json.loads(raw)
    except ValueError:
        raise _refused(400, "request body is not valid JSON (UTF-8)") from None


# --- routes ---------------------------------------------------------------------------


def _forget(services: Services, key_id: str) -> None:
    """Drop this isolate's cached lookups of a key, so its revocation applies here at
    once (other isolates trust their cache for up to RELAY_KEY_CACHE_SECONDS)."""
    cache = services.state.relay_keys
    for hashed, (record, _) in list(cache.items()):
        if record.get("id") == key_id:
            del cache[hashed]


def _database(services: Services) -> Database:
    """The D1 database every route but /admin/status reads; Refused (503) without one."""
    if services.db is None:
        raise _refused(503, "admin API unavailable: relay has no D1 database bound as DB")
    return services.db


async def _create(request: Request, services: Services, now: float) -> Response:
    db = _database(services)
    fields, problems = _new_key_fields(await _json_body(request), now)
    if problems:
        raise _refused(400, "; ".join(problems))
    record, key = await key_store.create_key(db, now=now, **fields)
    log(f"admin: created relay key {record['id']}")
    return _json(201, {"key": key, **record})


async def _list(services: Services) -> Response:
    return _json(200, {"data": await key_store.list_keys(_database(services))})


def _not_found(key_id: str) -> Refused:
    # Echo only what looks like an id: a key pasted by mistake must not come back.
    shown = f" {key_id}" if _ID.fullmatch(key_id) else ""
    return _refused(404, f"no relay key with id{shown}")


async def _show(services: Services, key_id: str) -> Response:
    db = _database(services)
    record = await key_store.get_key(db, key_id) if _ID.fullmatch(key_id) else None
    if not record:
        raise _not_found(key_id)
    return _json(200, record)


async def _update(request: Request, services: Services, key_id: str) -> Response:
    """PATCH a key: only its cache_policy may change (null restores relay's default)."""
    db = _database(services)
    body = await _json_body(request)
    problems: list[str] = []
    if not isinstance(body, dict) or set(body) != {"cache_policy"}:
        problems.append('the body must be {"cache_policy": ...}: only the cache policy of a key can change')
    elif body["cache_policy"] is not None:
        _cache_policy(body["cache_policy"], "cache_policy", problems)
    if problems:
        raise _refused(400, "; ".join(problems))
    record = await key_store.set_cache_policy(db, key_id, body["cache_policy"]) if _ID.fullmatch(key_id) else None
    return _changed(services, key_id, record, "set the cache policy of")


async def _revoke(services: Services, key_id: str, now: float) -> Response:
    db = _database(services)
    record = await key_store.revoke_key(db, key_id, now) if _ID.fullmatch(key_id) else None
    return _changed(services, key_id, record, "revoked")


def _changed(services: Services, key_id: str, record: KeyRecord | None, done: str) -> Response:
    """The answer to a change of one key: its record (this isolate forgets its cached
    lookup, so the change applies here at once), or 404 when there is no such key."""
    if record is None:
        raise _not_found(key_id)
    _forget(services, key_id)
    log(f"admin: {done} relay key {key_id}")
    return _json(200, record)


def _cap_fields(body: Any) -> tuple[spend_caps.Owner | None, Any, Any, list[str]]:
    """The owner, period and limit a POST /admin/caps body sets, and every problem with it."""
    if not isinstance(body, dict):
        return None, None, None, ["request body must be a JSON object"]
    problems: list[str] = []
    unknown = unknown_fields(body, ("owner_kind", "owner_id", "period", "limit_usd"))
    if unknown is not None:
        problems.append(unknown)
    kind, owner_id = body.get("owner_kind"), body.get("owner_id")
    if kind not in spend_caps.OWNER_KINDS:
        problems.append(f"owner_kind must be one of {', '.join(spend_caps.OWNER_KINDS)}")
    elif kind == "relay":
        if owner_id not in (None, ""):
            problems.append("a relay-wide cap has no owner_id")
        owner_id = ""
    else:
        _text(owner_id, "owner_id", problems)
    if body.get("period") not in spend_caps.PERIODS:
        problems.append(f"period must be one of {', '.join(spend_caps.PERIODS)} (UTC windows)")
    if body.get("limit_usd") is None:
        problems.append("limit_usd is required")
    else:
        _budget(body["limit_usd"], "limit_usd", problems)
    owner = spend_caps.Owner(str(kind), str(owner_id)) if not problems else None
    return owner, body.get("period"), body.get("limit_usd"), problems


async def _set_cap(request: Request, services: Services, now: float) -> Response:
    body = await _json_body(request)
    owner, period, limit, problems = _cap_fields(body)
    if problems or owner is None:
        raise _refused(400, "; ".join(problems))
    record = await spend_caps.set_cap(_database(services), owner, period, limit, now)
    spend_caps.forget_caps(services.state)
    log(f"admin: set spend cap {record['id']} ({owner}, {period}, {cap_headers.usd(float(limit))})")
    return _json(200, record)


async def _list_caps(services: Services, now: float) -> Response:
    caps = await spend_caps.all_caps(_database(services))
    return _json(
        200, {"data": [spend_caps.record(s) for s in await spend_caps.standings(_database(services), caps, now)]}
    )


async def _delete_cap(services: Services, cap_id: str) -> Response:
    if not (_CAP_ID.fullmatch(cap_id) and await spend_caps.delete_cap(_database(services), cap_id)):
        raise _refused(404, f"no spend cap with id{' ' + cap_id if _CAP_ID.fullmatch(cap_id) else ''}")
    spend_caps.forget_caps(services.state)
    log(f"admin: deleted spend cap {cap_id}")
    return _json(200, {"id": cap_id, "deleted": True})


def _token_record(limit: token_rates.TokenLimit) -> dict[str, Any]:
    return {
        "owner_kind": limit.owner_kind,
        "owner_id": limit.owner_id,
        "input_per_minute": limit.input_per_minute,
        "output_per_minute": limit.output_per_minute,
    }


async def _set_token_limit(request: Request, services: Services) -> Response:
    """POST /admin/token-limits: a key's input and output tokens per minute (null: none of
    that kind; both null remove the limit)."""
    body = await _json_body(request)
    problems: list[str] = []
    if not isinstance(body, dict):
        raise _refused(400, "request body must be a JSON object")
    unknown = unknown_fields(body, ("owner_kind", "owner_id", "input_per_minute", "output_per_minute"))
    if unknown is not None:
        problems.append(unknown)
    if body.get("owner_kind") != "key":
        problems.append("owner_kind must be key (persons come with sign-in)")
    _text(body.get("owner_id"), "owner_id", problems)
    for field in ("input_per_minute", "output_per_minute"):
        if body.get(field) is not None:
            _positive_int(body[field], field, problems)
    if problems:
        raise _refused(400, "; ".join(problems))
    limit = token_rates.TokenLimit("key", body["owner_id"], body.get("input_per_minute"), body.get("output_per_minute"))
    await token_rates.set_limit(_database(services), limit)
    services.state.token_limits = None
    log(f"admin: set the tokens per minute of relay key {limit.owner_id}")
    return _json(200, _token_record(limit))


async def _list_token_limits(services: Services) -> Response:
    return _json(200, {"data": [_token_record(limit) for limit in await token_rates.all_limits(_database(services))]})


async def _usage(request: Request, services: Services, now: float) -> Response:
    db = _database(services)
    try:
        query = reports.parse_report_query(request.query, now)
    except reports.BadQuery as problem:
        raise _refused(400, str(problem)) from None
    report = await reports.usage_report(db, query)
    if query.format == "json":
        return _json(200, report)
    return Response(
        200,
        [
            ("content-type", "text/csv; charset=utf-8"),
            *_NO_STORE,
            ("content-disposition", f'attachment; filename="{reports.csv_filename(report)}"'),
        ],
        reports.report_csv(report).encode(),
    )


async def _requests(request: Request, services: Services) -> Response:
    db = _database(services)
    try:
        limit, before_id = reports.parse_requests_query(request.query)
    except reports.BadQuery as problem:
        raise _refused(400, str(problem)) from None
    return _json(200, await reports.recent_requests(db, limit, before_id))


async def _status(settings: Settings, services: Services, now: float) -> Response:
    """What this isolate knows that D1 cannot tell (audit rows it failed to write), and the
    price table: where it comes from, and the models of the last 30 days it had no price for."""
    status: dict[str, Any] = {
        "usage_write_failures": services.state.usage_write_failures,
        "telemetry_failures": services.state.telemetry_failures,
        "database_bound": services.db is not None,
        "prices": pricing.about(settings.prices),
    }
    if services.db is not None:
        status["unpriced_models"] = await reports.unpriced_models(services.db, now, settings.prices)
        status["export"] = await export.status(services.db, services.exports is not None)
    return _json(200, status)


_PERSON = re.compile(r"p_[0-9a-f]{8}")  # people.upsert_person's ids


async def _people(services: Services) -> Response:
    return _json(200, {"data": await people.list_people(_database(services))})


async def _revoke_person(services: Services, person_id: str, now: float) -> Response:
    """End every session of a signed-in person at once (in this isolate; elsewhere within
    RELAY_KEY_CACHE_SECONDS). They can sign in again unless the IdP no longer lets them."""
    db = _database(services)
    revoked = await people.revoke_person(db, person_id, now) if _PERSON.fullmatch(person_id) else []
    for session_id in revoked:
        gateway_sessions.forget(services, session_id)
    log(f"admin: revoked {len(revoked)} sessions of person {person_id if _PERSON.fullmatch(person_id) else '?'}")
    return _json(200, {"person_id": person_id if _PERSON.fullmatch(person_id) else None, "revoked_sessions": revoked})


Handler = Callable[[], Awaitable[Response]]


def _route(
    request: Request, settings: Settings, services: Services, now: float
) -> tuple[str, dict[str, Handler]] | None:
    """The request path's route and its handlers by method; None when no admin route has it.
    Messages name the route, never the path as sent (it could hold a pasted key)."""
    parts = request.path.rstrip("/").split("/")[2:]  # "/admin/keys/x" -> ["keys", "x"]
    if parts == ["keys"]:
        return "/admin/keys", {"GET": lambda: _list(services), "POST": lambda: _create(request, services, now)}
    if len(parts) == 2 and parts[0] == "keys" and parts[1]:
        return "/admin/keys/{id}", {
            "GET": lambda: _show(services, parts[1]),
            "PATCH": lambda: _update(request, services, parts[1]),
            "DELETE": lambda: _revoke(services, parts[1], now),
        }
    if len(parts) == 3 and parts[0] == "keys" and parts[1] and parts[2] == "revoke":
        return "/admin/keys/{id}/revoke", {"POST": lambda: _revoke(services, parts[1], now)}
    if parts == ["caps"]:
        return "/admin/caps", {
            "GET": lambda: _list_caps(services, now),
            "POST": lambda: _set_cap(request, services, now),
        }
    if len(parts) == 2 and parts[0] == "caps" and parts[1]:
        return "/admin/caps/{id}", {"DELETE": lambda: _delete_cap(services, parts[1])}
    if parts == ["token-limits"]:
        return "/admin/token-limits", {
            "GET": lambda: _list_token_limits(services),
            "POST": lambda: _set_token_limit(request, services),
        }
    if parts == ["usage"]:
        return "/admin/usage", {"GET": lambda: _usage(request, services, now)}
    if parts == ["usage", "requests"]:
        return "/admin/usage/requests", {"GET": lambda: _requests(request, services)}
    if parts == ["status"]:
        return "/admin/status", {"GET": lambda: _status(settings, services, now)}
    if parts == ["people"]:
        return "/admin/people", {"GET": lambda: _people(services)}
    if len(parts) == 3 and parts[0] == "people" and parts[1] and parts[2] == "revoke":
        return "/admin/people/{id}/revoke", {"POST": lambda: _revoke_person(services, parts[1], now)}
    return None


async def handle(request: Request, settings: Settings, services: Services) -> Response:
    """Answer one request whose path starts with /admin/; Refused when it may not have one."""
    page = usage_page.serve(request.method, request.path)
    if page is not None:
        return page
    _authorize(request.headers, settings)
    route = _route(request, settings, services, services.clock())
    if route is None:
        raise _refused(
            404,
            "no such admin route: the admin API has /admin/keys, /admin/keys/{id}, "
            "/admin/keys/{id}/revoke, /admin/caps, /admin/caps/{id}, /admin/token-limits, /admin/usage, "
            "/admin/usage/requests, /admin/status, /admin/people and /admin/people/{id}/revoke",
        )
    pattern, handlers = route
    handler = handlers.get(request.method)
    if handler is None:
        allowed = ", ".join(handlers)
        raise _refused(405, f"{request.method} is not allowed on {pattern} (allowed: {allowed})", ("allow", allowed))
    return await handler()

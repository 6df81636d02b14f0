"""What a relay key with an allowed-model list, a monthly budget or a stream limit may ask for.

Relay holds such a key to its limits with what it reads: the model a request names, whether
it streams and the usage its answer reports. An endpoint relay does not read would take any
model at any cost, streaming as often as it likes, on relay's pooled upstream key, so these
keys may use only the `known` routes (routes.py: the JSON endpoints relay reads, and the
model catalogue, which costs nothing); the rest get 403, the upstream never called. That
includes free reads of the upstream account's stored objects (files, batches, stored
responses): they are the whole pool's, not the key's, and such a key cannot create any
through relay.

On a known route the body must let relay read what it checks:

- the model, named, if the key has an allow-list (a stored prompt or an earlier response
  would choose one relay cannot see);
- the usage, if the key has a budget: no `background` response (it runs after the answer,
  unmetered), no stream told not to report usage (`include_usage: false`);
- the price, if the key has a budget: a model relay cannot price is recorded at no cost,
  so a budget key may not ask for one (`check_price`), nor leave the model to a stored
  prompt or an earlier response, which would choose it after relay has let the request go;
- one value per field, as UTF-8 JSON, `stream` a boolean: the upstream must read what
  relay read (a parser taking the first of two `model` fields, or `"stream": "true"` for
  true, would see another request).

Keys with none of these limits (a rate limit is counted per request, whatever it asks)
reach every /v1/ path as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relay.http.errors import Refused
from relay.http.json_spans import Layout
from relay.identity.relay_keys import Caller
from relay.pipeline.endpoints import FREE_ENDPOINTS, STREAM_USAGE_OPTION, Route, known_endpoints
from relay.providers.model_routes import Target
from relay.usage import pricing


def _kinds(caller: Caller) -> list[tuple[str, str]]:
    """(the limit, what relay must read to keep it) for each limit of the key that depends
    on what a request asks for."""
    present = (
        (bool(caller.allowed_models), "an allowed-model list", "model"),
        (caller.budgeted, "a monthly budget" if caller.monthly_budget_usd is not None else "a spend cap", "cost"),
        (bool(caller.max_concurrent_streams), "a limit on open streams", "streams"),
    )
    return [(limit, read) for has, limit, read in present if has]


def limited(caller: Caller) -> bool:
    """The key's limits depend on each request's model, cost or streaming."""
    return bool(_kinds(caller))


def _budget(caller: Caller) -> str:
    return "a monthly budget" if caller.monthly_budget_usd is not None else "a spend cap"


def _and(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]


def check_endpoint(caller: Caller, route: Route, method: str, path: str) -> None:
    """Refused (403) when this key may not use this endpoint."""
    kinds = _kinds(caller)
    if route.known or not kinds:
        return
    raise Refused(
        403,
        f"relay key {caller.key_id} has {_and([limit for limit, _ in kinds])}, so it may use only the "
        f"endpoints whose {_and([read for _, read in kinds])} relay reads ({known_endpoints(route.surface)}); "
        f"{method} {path} is not one of them",
    )


def check_body(caller: Caller, route: Route, parsed: Any, layout: Layout | None) -> None:
    """Refused (400: relay cannot tell what the upstream would read; 403: the key may not
    ask for it) when this key may not send this JSON body."""
    if not route.json_body:
        return
    model = parsed.get("model")
    model = model if isinstance(model, str) else None
    if limited(caller):
        problem = _unclear(caller, parsed, layout)
        if problem is not None:
            raise Refused(400, problem)
    if not caller.may_use(model):
        # The gateway protocol answers a signed-in person's denied model with 400
        # invalid_request_error (Claude Code shows it); a relay key gets 403 as before.
        status = 400 if caller.person_id else 403
        who = f"group {caller.group}" if caller.person_id else f"relay key {caller.key_id}"
        if model is None:
            raise Refused(
                status,
                f"{who} may use only the models {', '.join(caller.allowed_models)}, "
                f"and this request names no model (a stored prompt or an earlier response would "
                f'choose one relay cannot check): give "model"',
            )
        raise Refused(status, f"{who} may not use model {model}")
    if caller.budgeted:
        unmetered = _unmetered(route, parsed)
        if unmetered is not None:
            raise Refused(
                403, f"relay key {caller.key_id} has {_budget(caller)}, so relay must read the cost of {unmetered}"
            )


def _unclear(caller: Caller, parsed: dict[str, Any], layout: Layout | None) -> str | None:
    """Why the upstream might read this body otherwise than relay did, or None."""
    if layout is None:
        return f"relay reads the requests of key {caller.key_id} as UTF-8 JSON, and this body is not"
    if layout.repeated:
        fields = ", ".join(sorted(layout.repeated))
        return (
            f"the request body gives {fields} more than once: relay checks the requests of key "
            f"{caller.key_id} and would read one value, the upstream perhaps another"
        )
    if "stream" in parsed and not isinstance(parsed["stream"], bool):
        return '"stream" must be true or false'
    return None


def _unmetered(route: Route, parsed: dict[str, Any]) -> str | None:
    """What in this request relay could not meter, or None."""
    if parsed.get("background") not in (None, False):
        return "each request: a background response runs after the answer, where relay cannot see it"
    options = parsed.get("stream_options")
    asked = options is None or (isinstance(options, dict) and options.get("include_usage", True) is True)
    usage_optional = route.surface == "openai" and route.upstream_path in STREAM_USAGE_OPTION
    if parsed.get("stream") is True and usage_optional and not asked:
        return "each stream: leave out stream_options.include_usage, or set it to true"
    return None


def check_price(
    caller: Caller, route: Route, model: str | None, targets: Sequence[Target], prices: pricing.Prices = ()
) -> None:
    """Refused (403) when a budget key may not send this request: a model that may serve it
    has no price (RELAY_PRICES, then the built-in table), so its cost would count nothing
    against the budget; or it names no model to price. Passes when every target's model is
    priced, or the endpoint costs nothing."""
    if not caller.budgeted or not route.json_body or route.upstream_path in FREE_ENDPOINTS:
        return
    budget = f"relay key {caller.key_id} has {_budget(caller)}"
    if model is None:
        raise Refused(
            403,
            f"{budget}, so relay must price each request before sending it, and this request names no model "
            f'(a stored prompt or an earlier response would choose one): give "model"',
        )
    for target in targets:
        served = target.model or model
        if pricing.price_of(served, prices, target.provider.name) is None:
            via = "" if served == model else f" (what provider {target.provider.name} serves for {model})"
            raise Refused(
                403,
                f"{budget}, and relay has no price for model {served}{via}: its cost would count nothing "
                f"against the budget (RELAY_PRICES can give it one)",
            )

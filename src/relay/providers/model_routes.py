"""Which provider serves a model: providers and routes from `RELAY_ROUTES`, and the plan
(ordered targets) for one request.

Two providers always exist, built from the original vars: `anthropic`
(UPSTREAM_ANTHROPIC_URL, ANTHROPIC_API_KEYS) and `openai` (UPSTREAM_OPENAI_URL,
OPENAI_API_KEYS); `RELAY_ROUTES` may redefine them by name. A model that no route
matches goes to the provider named after the client's surface, in its own format, so
without `RELAY_ROUTES` every request goes where it always went.

`RELAY_ROUTES` is one JSON document (a Worker var, not a secret: it names the secrets
that hold keys, never a key):

    {"providers": {"groq": {"format": "openai", "base_url": "https://api.groq.com/openai/v1",
                            "keys": "GROQ_API_KEYS", "headers": {"x-team": "a"},
                            "betas": [], "reasoning": false}},
     "routes": [{"model": "claude-haiku-*", "expose": ["claude-haiku-4-5"],
                 "targets": [{"provider": "groq", "model": "llama-3.3-70b-versatile"},
                             {"provider": "anthropic"}]}]}

Routes are tried in order, first match wins. A route's targets are its fallbacks, in
order; targets given a `weight` share the first place in proportion to their weights
(a session always lands on the same one, so its prompt cache stays warm).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.http.json_spans import unknown_fields
from relay.providers import aws_sigv4, bedrock, google_auth, vertex
from relay.providers.key_pool import UpstreamKey, pool

VAR = "RELAY_ROUTES"
# The APIs relay speaks, and the clouds that serve Claude's Messages API in their own way.
FORMATS = ("anthropic", "openai")
CLOUDS = ("bedrock", "vertex", "foundry")
_REGION = re.compile(r"^[a-z0-9-]{1,40}$")
_SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


class RoutesError(ValueError):
    """RELAY_ROUTES cannot be used; the message says where, never a secret's value."""


@dataclass(frozen=True)
class Provider:
    name: str
    format: str  # the API it speaks: "anthropic" or "openai", or a cloud of CLOUDS (Messages, its way)
    base_url: str  # in the SDKs' form: OpenAI's includes /v1; a cloud's endpoint (Foundry's ends in /anthropic)
    keys_var: str  # the secret holding its keys (named in errors, never shown)
    keys: tuple[UpstreamKey, ...] = field(repr=False, default=())  # its pool, ids made once (keys.pool)
    headers: tuple[tuple[str, str], ...] = ()
    betas: frozenset[str] | None = None  # anthropic-beta values it accepts; None: all for Anthropic, none for OpenAI
    reasoning: bool = False  # an OpenAI-format model that takes `reasoning_effort`
    max_tokens_field: str = "max_tokens"
    region: str | None = None  # Bedrock's and Vertex's
    project: str | None = None  # Vertex's Google Cloud project
    models: tuple[tuple[str, str], ...] = ()  # a cloud's model ids: client's name -> the cloud's

    @property
    def api(self) -> str:
        """The API its requests and answers speak: Foundry's and Bedrock's and Vertex's are Anthropic's."""
        return "openai" if self.format == "openai" else "anthropic"

    @property
    def cloud(self) -> str | None:
        return self.format if self.format in CLOUDS else None

    def accepts_beta(self, beta: str) -> bool:
        if self.betas is None:
            if self.format == "bedrock":
                return beta in bedrock.BETAS
            return self.format != "openai"
        return beta in self.betas


@dataclass(frozen=True)
class Target:
    provider: Provider
    model: str | None = None  # the name to send; None keeps the client's
    weight: float | None = None


@dataclass(frozen=True)
class Rule:
    pattern: str
    targets: tuple[Target, ...]
    expose: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    providers: Mapping[str, Provider]
    rules: tuple[Rule, ...] = ()
    configured: bool = False  # RELAY_ROUTES is set: relay answers the model lists

    def rule_for(self, model: str | None) -> Rule | None:
        if model is None:
            return None
        return next((rule for rule in self.rules if fnmatch.fnmatchcase(model, rule.pattern)), None)

    def targets(self, surface: str, model: str | None, session: str | None) -> list[Target]:
        """The targets to try for `model`, first choice first."""
        rule = self.rule_for(model)
        if rule is None:
            return [Target(self.providers[surface])]
        return _ordered(list(rule.targets), session)

    def listed_models(self) -> list[tuple[str, str]]:
        """(model, provider of its first target) for every model the routes expose."""
        seen: dict[str, str] = {}
        for rule in self.rules:
            names = rule.expose or ((rule.pattern,) if not _is_glob(rule.pattern) else ())
            for name in names:
                seen.setdefault(name, rule.targets[0].provider.name)
        return list(seen.items())


def _is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def _ordered(targets: list[Target], session: str | None) -> list[Target]:
    weighted = [(t, t.weight) for t in targets if t.weight]
    if not weighted:
        return targets
    total = sum(weight for _, weight in weighted)
    if session:
        point = int.from_bytes(hashlib.sha256(session.encode()).digest()[:8], "big") / 2**64 * total
    else:
        point = random.random() * total
    first = weighted[-1][0]  # where rounding leaves the point past every weight
    for target, weight in weighted:
        point -= weight
        if point < 0:
            first = target
            break
    return [first] + [t for t in targets if t is not first]


def default_providers(urls: Mapping[str, str], keys: Mapping[str, tuple[str, ...]]) -> dict[str, Provider]:
    return {
        "anthropic": Provider(
            "anthropic", "anthropic", urls["anthropic"], "ANTHROPIC_API_KEYS", pool("anthropic", keys["anthropic"])
        ),
        "openai": Provider("openai", "openai", urls["openai"], "OPENAI_API_KEYS", pool("openai", keys["openai"])),
    }


def parse(
    raw: str | None, env: Mapping[str, str | None], defaults: dict[str, Provider], reserved: tuple[str, ...]
) -> Table:
    """The routing table; `reserved` are relay's own secrets, which no provider may name."""
    if raw is None or not raw.strip():
        return Table(defaults)
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RoutesError(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    _expect(isinstance(document, dict), 'must be a JSON object with "providers" and "routes"')
    _known_fields("", document, ("providers", "routes"))
    providers_doc = document.get("providers", {})
    _expect(isinstance(providers_doc, dict), '"providers" must be an object of name -> provider')
    providers = dict(defaults)
    for name, spec in providers_doc.items():
        providers[name] = _provider(name, spec, env, reserved)
    routes_doc = document.get("routes", [])
    _expect(isinstance(routes_doc, list), '"routes" must be a list')
    rules = tuple(_rule(n, spec, providers) for n, spec in enumerate(routes_doc))
    return Table(providers, rules, configured=True)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise RoutesError(message)


def _known_fields(where: str, spec: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = unknown_fields(spec, allowed)
    _expect(unknown is None, f"{where} has {unknown}".lstrip())


def _provider(name: str, spec: Any, env: Mapping[str, str | None], reserved: tuple[str, ...]) -> Provider:
    where = f"provider {name!r}"
    _expect(isinstance(spec, dict), f"{where} must be an object")
    _known_fields(
        where,
        spec,
        (
            "format",
            "base_url",
            "keys",
            "headers",
            "betas",
            "reasoning",
            "max_tokens_field",
            "region",
            "project",
            "models",
        ),
    )
    kind = spec.get("format")
    _expect(kind in FORMATS + CLOUDS, f'{where}: "format" must be one of {", ".join(FORMATS + CLOUDS)}')
    region = spec.get("region")
    if kind in ("bedrock", "vertex"):
        _expect(isinstance(region, str) and bool(_REGION.match(region)), f'{where}: "region" must name its region')
    else:
        _expect(region is None, f'{where}: "region" is for bedrock and vertex providers')
    base_url = spec.get("base_url")
    if base_url is None and kind == "bedrock":
        base_url = bedrock.default_base_url(region)
    elif base_url is None and kind == "vertex":
        base_url = vertex.default_base_url(region)
    _expect(
        isinstance(base_url, str) and base_url.startswith(("https://", "http://")),
        f'{where}: "base_url" must be an http(s) URL',
    )
    models = spec.get("models", {})
    _expect(
        isinstance(models, dict) and all(isinstance(v, str) and v for v in models.values()),
        f'{where}: "models" must be an object of model name -> the cloud\'s model id',
    )
    project = spec.get("project")
    _expect(
        project is None or (kind == "vertex" and isinstance(project, str) and bool(project)),
        f'{where}: "project" is a vertex provider\'s Google Cloud project',
    )
    keys_var = spec.get("keys")
    _expect(
        isinstance(keys_var, str) and bool(_SECRET_NAME.match(keys_var)),
        f'{where}: "keys" must name the secret holding its keys (A-Z, 0-9, _)',
    )
    _expect(keys_var not in reserved, f'{where}: "keys" may not name relay\'s own setting {keys_var}')
    raw_keys = env.get(keys_var)
    keys: tuple[str, ...]
    if kind == "vertex":  # one service-account key, a JSON document
        keys = (raw_keys.strip(),) if isinstance(raw_keys, str) and raw_keys.strip() else ()
    else:
        keys = tuple(k.strip() for k in raw_keys.split(",") if k.strip()) if isinstance(raw_keys, str) else ()
    _expect(bool(keys), f"{where}: the secret {keys_var} is unset, empty or not a secret")
    if kind == "bedrock":
        _expect(
            all(aws_sigv4.parse_credentials(k) for k in keys),
            f"{where}: {keys_var} must hold ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN], comma-separated",
        )
    if kind == "vertex":
        account = google_auth.service_account(keys[0])
        if account is None:
            raise RoutesError(f"{where}: the secret {keys_var} must hold a service-account key (JSON)")
        project = project or account.project_id
        _expect(bool(project), f'{where}: "project" is needed (the service-account key names none)')
    headers = spec.get("headers", {})
    _expect(
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values()),
        f'{where}: "headers" must be an object of header name -> string',
    )
    betas = spec.get("betas")
    _expect(
        betas is None or (isinstance(betas, list) and all(isinstance(b, str) for b in betas)),
        f'{where}: "betas" must be a list of anthropic-beta values',
    )
    _expect(isinstance(spec.get("reasoning", False), bool), f'{where}: "reasoning" must be true or false')
    max_tokens_field = spec.get("max_tokens_field", "max_tokens")
    _expect(
        max_tokens_field in _MAX_TOKENS_FIELDS,
        f'{where}: "max_tokens_field" must be one of {", ".join(_MAX_TOKENS_FIELDS)}',
    )
    return Provider(
        name,
        spec["format"],
        base_url.strip().rstrip("/"),
        keys_var,
        pool(name, keys),
        tuple((k.lower(), v) for k, v in headers.items()),
        None if betas is None else frozenset(betas),
        spec.get("reasoning", False),
        max_tokens_field,
        region,
        project,
        tuple(models.items()),
    )


def _rule(number: int, spec: Any, providers: Mapping[str, Provider]) -> Rule:
    where = f"route {number + 1}"
    _expect(isinstance(spec, dict), f"{where} must be an object")
    _known_fields(where, spec, ("model", "targets", "expose"))
    pattern = spec.get("model")
    _expect(isinstance(pattern, str) and bool(pattern), f'{where}: "model" must be a model name or glob')
    where = f"route {number + 1} ({pattern})"
    targets = spec.get("targets")
    _expect(isinstance(targets, list) and bool(targets), f'{where}: "targets" must be a non-empty list')
    expose = spec.get("expose", [])
    _expect(
        isinstance(expose, list) and all(isinstance(e, str) and e for e in expose),
        f'{where}: "expose" must be a list of model names',
    )
    return Rule(pattern, tuple(_target(where, n, t, providers) for n, t in enumerate(targets)), tuple(expose))


def _target(where: str, number: int, spec: Any, providers: Mapping[str, Provider]) -> Target:
    where = f"{where} target {number + 1}"
    _expect(isinstance(spec, dict), f"{where} must be an object")
    _known_fields(where, spec, ("provider", "model", "weight"))
    name = spec.get("provider")
    _expect(isinstance(name, str) and name in providers, f"{where}: unknown provider {name!r}")
    model = spec.get("model")
    _expect(model is None or (isinstance(model, str) and bool(model)), f'{where}: "model" must be a string')
    weight = spec.get("weight")
    _expect(
        weight is None or (isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight > 0),
        f'{where}: "weight" must be a positive number',
    )
    return Target(providers[name], model, None if weight is None else float(weight))

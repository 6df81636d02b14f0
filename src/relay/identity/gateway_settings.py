"""Sign-in settings: which OpenID Connect provider, who may sign in, and each group's policy.

Sign-in is on when RELAY_OIDC_ISSUER is set; it then needs RELAY_OIDC_CLIENT_ID, the
RELAY_OIDC_CLIENT_SECRET secret and the RELAY_SESSION_SECRET secret (README "Sign-in").

Group policies (RELAY_GROUP_POLICIES) are one JSON document, like RELAY_ROUTES, rather
than D1 rows: they change as rarely as routes do, are reviewed with the deployment, cost
no query per request, and a person's groups come from the IdP, not from relay:

    {"groups": {"<IdP group>": {<policy>}, ...}, "default": {<policy>}}

A person gets the policy of the first group of the document they belong to, else
"default", else none (every model, no managed settings: `GET /managed/settings` is 404).
A policy holds any of: "allowed_models" (globs; others are 400 invalid_request_error),
"default_model" (delivered as the managed settings' "model"), "billing_tag" (usage rows
and reports), "cache_policy" (as a relay key's) and "settings" (the rest of the managed
settings Claude Code applies, e.g. {"env": {...}}).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.prompt_cache.markers import POLICIES

DEFAULT_GROUPS_CLAIM = "groups"
DEFAULT_SCOPES = "openid email profile offline_access"
DEFAULT_ACCESS_TOKEN_SECONDS = 3600
MIN_SESSION_SECRET_CHARS = 32
NAMES = (
    "RELAY_OIDC_ISSUER",
    "RELAY_OIDC_CLIENT_ID",
    "RELAY_OIDC_CLIENT_SECRET",
    "RELAY_OIDC_GROUPS_CLAIM",
    "RELAY_OIDC_SCOPES",
    "RELAY_SESSION_SECRET",
    "RELAY_SIGNIN_EMAIL_DOMAINS",
    "RELAY_SIGNIN_GROUPS",
    "RELAY_PUBLIC_URL",
    "RELAY_ACCESS_TOKEN_SECONDS",
    "RELAY_GROUP_POLICIES",
    "RELAY_TELEMETRY_COLLECTORS",
)
_POLICY_FIELDS = {"allowed_models", "default_model", "billing_tag", "cache_policy", "settings"}


@dataclass(frozen=True)
class GroupPolicy:
    group: str  # the IdP group it is for, or "default"
    allowed_models: tuple[str, ...] = ()
    default_model: str | None = None
    billing_tag: str | None = None
    cache_policy: str | None = None
    settings: Mapping[str, Any] | None = None  # None: no managed settings for this group


@dataclass(frozen=True)
class GatewaySettings:
    issuer: str
    client_id: str
    client_secret: str
    session_secret: str
    groups_claim: str = DEFAULT_GROUPS_CLAIM
    scopes: str = DEFAULT_SCOPES
    email_domains: tuple[str, ...] = ()  # empty: any
    groups: tuple[str, ...] = ()  # empty: any
    public_url: str | None = None  # None: the request's own origin
    access_token_seconds: int = DEFAULT_ACCESS_TOKEN_SECONDS
    policies: tuple[GroupPolicy, ...] = ()
    default_policy: GroupPolicy | None = None
    collectors: tuple[str, ...] = ()  # OTLP/HTTP base URLs telemetry is relayed to

    def policy_for(self, groups: tuple[str, ...]) -> GroupPolicy | None:
        for policy in self.policies:
            if policy.group in groups:
                return policy
        return self.default_policy

    def may_sign_in(self, email: str | None, groups: tuple[str, ...]) -> str | None:
        """Why this person may not sign in, or None when they may."""
        if self.email_domains:
            domain = (email or "").rpartition("@")[2].lower()
            if not email or domain not in self.email_domains:
                return "your email address is not in a domain allowed to use relay"
        if self.groups and not set(groups) & set(self.groups):
            return "you are in none of the groups allowed to use relay"
        return None


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _url(name: str, value: str) -> str:
    url = value.strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"{name} must be an http(s) URL")
    return url


def parse(env: Mapping[str, str | None]) -> GatewaySettings | None:
    """The sign-in settings, or None when sign-in is off. Raises ValueError naming the
    var or secret at fault (never its value). Every name is read, set or not, as
    config.NAMES lists them (the adapter's env is read once per isolate)."""
    env = {name: env.get(name) for name in NAMES}
    issuer = (env.get("RELAY_OIDC_ISSUER") or "").strip()
    if not issuer:
        return None
    missing = [
        name
        for name in ("RELAY_OIDC_CLIENT_ID", "RELAY_OIDC_CLIENT_SECRET", "RELAY_SESSION_SECRET")
        if not (env.get(name) or "").strip()
    ]
    if missing:
        raise ValueError(f"RELAY_OIDC_ISSUER is set, so {', '.join(missing)} must be set too")
    secret = (env.get("RELAY_SESSION_SECRET") or "").strip()
    if len(secret) < MIN_SESSION_SECRET_CHARS:
        raise ValueError(f"RELAY_SESSION_SECRET must be at least {MIN_SESSION_SECRET_CHARS} characters")
    seconds = (env.get("RELAY_ACCESS_TOKEN_SECONDS") or "").strip() or str(DEFAULT_ACCESS_TOKEN_SECONDS)
    if not seconds.isascii() or not seconds.isdigit() or not 60 <= int(seconds) <= 86400:
        raise ValueError("RELAY_ACCESS_TOKEN_SECONDS must be a whole number from 60 to 86400")
    public = (env.get("RELAY_PUBLIC_URL") or "").strip()
    policies, default = _policies(env.get("RELAY_GROUP_POLICIES"))
    return GatewaySettings(
        issuer=_url("RELAY_OIDC_ISSUER", issuer),
        client_id=(env.get("RELAY_OIDC_CLIENT_ID") or "").strip(),
        client_secret=(env.get("RELAY_OIDC_CLIENT_SECRET") or "").strip(),
        session_secret=secret,
        groups_claim=(env.get("RELAY_OIDC_GROUPS_CLAIM") or "").strip() or DEFAULT_GROUPS_CLAIM,
        scopes=(env.get("RELAY_OIDC_SCOPES") or "").strip() or DEFAULT_SCOPES,
        email_domains=tuple(d.lower().lstrip("@") for d in _split(env.get("RELAY_SIGNIN_EMAIL_DOMAINS"))),
        groups=_split(env.get("RELAY_SIGNIN_GROUPS")),
        public_url=_url("RELAY_PUBLIC_URL", public) if public else None,
        access_token_seconds=int(seconds),
        policies=policies,
        default_policy=default,
        collectors=tuple(
            _url("RELAY_TELEMETRY_COLLECTORS", url) for url in _split(env.get("RELAY_TELEMETRY_COLLECTORS"))
        ),
    )


def _policies(text: str | None) -> tuple[tuple[GroupPolicy, ...], GroupPolicy | None]:
    if not (text or "").strip():
        return (), None
    try:
        document = json.loads(text or "")
    except ValueError:
        raise ValueError("RELAY_GROUP_POLICIES is not valid JSON") from None
    if not isinstance(document, dict) or set(document) - {"groups", "default"}:
        raise ValueError('RELAY_GROUP_POLICIES must be an object with "groups" and/or "default"')
    groups = document.get("groups") or {}
    if not isinstance(groups, dict):
        raise ValueError('RELAY_GROUP_POLICIES "groups" must map group names to policies')
    policies = tuple(_policy(name, value) for name, value in groups.items())
    default = _policy("default", document["default"]) if document.get("default") is not None else None
    return policies, default


def _policy(group: str, value: Any) -> GroupPolicy:
    where = f"RELAY_GROUP_POLICIES policy {json.dumps(group)}"
    if not isinstance(value, dict) or set(value) - _POLICY_FIELDS:
        raise ValueError(f"{where} must be an object with only {', '.join(sorted(_POLICY_FIELDS))}")
    models = value.get("allowed_models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ValueError(f"{where}: allowed_models must be a list of model globs")
    for name in ("default_model", "billing_tag"):
        if value.get(name) is not None and not isinstance(value[name], str):
            raise ValueError(f"{where}: {name} must be a string")
    if value.get("cache_policy") is not None and value["cache_policy"] not in POLICIES:
        raise ValueError(f"{where}: cache_policy must be one of {', '.join(POLICIES)}")
    settings = value.get("settings")
    if settings is not None and not isinstance(settings, dict):
        raise ValueError(f"{where}: settings must be an object")
    return GroupPolicy(
        group=group,
        allowed_models=tuple(models),
        default_model=value.get("default_model"),
        billing_tag=value.get("billing_tag"),
        cache_policy=value.get("cache_policy"),
        settings=settings,
    )

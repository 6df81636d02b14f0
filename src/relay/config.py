"""Settings read from the Worker's vars and secrets (see .dev.vars.example)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from relay.http.errors import Refused
from relay.http.messages import whole_number
from relay.identity import gateway_settings
from relay.limits import alerts, key_limits
from relay.prompt_cache.markers import POLICIES
from relay.providers import model_routes
from relay.services import IsolateState
from relay.usage import pricing, retention

DEFAULT_ANTHROPIC_URL = "https://api.anthropic.com"
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_KEY_CACHE_SECONDS = 30
DEFAULT_RPM = 1000
# Anthropic's SDKs wait up to 10 minutes for a non-streaming answer; so does relay.
DEFAULT_UPSTREAM_TIMEOUT_SECONDS = 600
DEFAULT_CACHE_POLICY = "auto"
DEFAULT_ALERT_THRESHOLDS = (50, 80, 100)
DEFAULT_SESSION_WINDOW_MINUTES = 10

# Relay's own names in the Worker's env; besides these, it reads only the secrets RELAY_ROUTES
# names as key pools (routing.parse).
NAMES = (
    "RELAY_CLIENT_KEYS",
    "ANTHROPIC_API_KEYS",
    "OPENAI_API_KEYS",
    "UPSTREAM_ANTHROPIC_URL",
    "UPSTREAM_OPENAI_URL",
    "RELAY_CORS_ORIGINS",
    "RELAY_MAX_BODY_BYTES",
    "RELAY_ADMIN_TOKEN",
    "RELAY_KEY_CACHE_SECONDS",
    "RELAY_DEFAULT_RPM",
    "RELAY_PRICES",
    "RELAY_UPSTREAM_TIMEOUT_SECONDS",
    model_routes.VAR,
    "RELAY_CACHE_POLICY",
    "RELAY_RETENTION_DAYS",
    *gateway_settings.NAMES,  # sign-in with the company's identity provider
    "RELAY_ALERT_WEBHOOKS",
    "RELAY_ALERT_THRESHOLDS",
    "RELAY_ALERT_FORMAT",
    "RELAY_SESSION_MAX_USD",
    "RELAY_SESSION_MAX_REQUESTS",
    "RELAY_SESSION_WINDOW_MINUTES",
)


# Example names for the secrets RELAY_ROUTES may give its providers (`keys`), as
# .dev.vars.example and the README document them; any other name serves as well.
ROUTE_SECRET_EXAMPLES = ("GROQ_API_KEYS", "BEDROCK_CREDENTIALS", "VERTEX_SERVICE_ACCOUNT", "FOUNDRY_API_KEYS")


class ConfigError(Refused):
    """A var or secret has a value relay cannot use: every request is refused with a 500
    until it is fixed. `problem` names the var, never its value."""

    def __init__(self, problem: str) -> None:
        super().__init__(500, f"relay is misconfigured: {problem}")
        self.problem = problem


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _base_url(env: Mapping[str, str | None], name: str, default: str) -> str:
    url = (env.get(name) or default).strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"{name} must be an http(s) URL")
    return url


def _whole_number(env: Mapping[str, str | None], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = whole_number(raw.strip())
    if value is None:
        raise ConfigError(f"{name} must be a whole number")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _cache_policy(env: Mapping[str, str | None]) -> str:
    policy = (env.get("RELAY_CACHE_POLICY") or DEFAULT_CACHE_POLICY).strip().lower()
    if policy not in POLICIES:
        raise ConfigError(f"RELAY_CACHE_POLICY must be one of {', '.join(POLICIES)}")
    return policy


def _webhooks(env: Mapping[str, str | None]) -> tuple[str, ...]:
    urls = _split(env.get("RELAY_ALERT_WEBHOOKS"))
    if any(not url.startswith(("https://", "http://")) for url in urls):
        raise ConfigError("RELAY_ALERT_WEBHOOKS must be http(s) URLs, comma-separated")
    return urls


def _thresholds(env: Mapping[str, str | None]) -> tuple[int, ...]:
    raw = env.get("RELAY_ALERT_THRESHOLDS")
    if raw is None or not raw.strip():
        return DEFAULT_ALERT_THRESHOLDS
    try:
        values = sorted({int(part) for part in _split(raw)})
    except ValueError:
        raise ConfigError("RELAY_ALERT_THRESHOLDS must be whole percentages, comma-separated") from None
    if not values or values[0] < 1 or values[-1] > 1000:
        raise ConfigError("RELAY_ALERT_THRESHOLDS must be percentages from 1 to 1000")
    return tuple(values)


def _alert_format(env: Mapping[str, str | None]) -> str:
    form = (env.get("RELAY_ALERT_FORMAT") or "json").strip().lower()
    if form not in alerts.FORMATS:
        raise ConfigError(f"RELAY_ALERT_FORMAT must be one of {', '.join(alerts.FORMATS)}")
    return form


def _dollars(env: Mapping[str, str | None], name: str) -> float:
    raw = (env.get(name) or "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        raise ConfigError(f"{name} must be a number of US dollars") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a non-negative number of US dollars")
    return value


def _cors_origins(value: str | None) -> tuple[str, ...]:
    """Unset means any origin (relay authenticates by key, not cookie); "" means none."""
    return ("*",) if value is None else _split(value)


@dataclass(frozen=True)
class Settings:
    client_keys: tuple[str, ...]
    cors_origins: tuple[str, ...]
    max_body_bytes: int
    admin_token: str | None
    key_cache_seconds: int
    default_rpm: int
    routes: model_routes.Table  # providers and model routes (RELAY_ROUTES over the defaults)
    cache_policy: str
    prices: pricing.Prices = ()  # RELAY_PRICES entries, consulted before pricing.BUNDLED (prices.json)
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT_SECONDS  # seconds to the upstream's headers
    retention_days: int = retention.DEFAULT_DAYS  # audit rows older than this are deleted (retention.py)
    gateway: gateway_settings.GatewaySettings | None = None  # sign-in; None: off (no RELAY_OIDC_ISSUER)
    alert_webhooks: tuple[str, ...] = ()  # where spend-cap alerts go (limits/alerts.py)
    alert_thresholds: tuple[int, ...] = DEFAULT_ALERT_THRESHOLDS  # percent of a cap
    alert_format: str = "json"
    session_max_usd: float = 0.0  # a session's spend in a UTC day; 0: no limit (session_breaker.py)
    session_max_requests: int = 0  # a session's requests in the window; 0: no limit
    session_window_minutes: int = DEFAULT_SESSION_WINDOW_MINUTES

    @property
    def alerting(self) -> alerts.Alerting | None:
        if not self.alert_webhooks:
            return None
        return alerts.Alerting(self.alert_webhooks, self.alert_thresholds, self.alert_format)

    @classmethod
    def from_env(cls, env: Mapping[str, str | None]) -> Settings:
        upstream_keys = {
            "anthropic": _split(env.get("ANTHROPIC_API_KEYS")),
            "openai": _split(env.get("OPENAI_API_KEYS")),
        }
        upstream_urls = {
            "anthropic": _base_url(env, "UPSTREAM_ANTHROPIC_URL", DEFAULT_ANTHROPIC_URL),
            "openai": _base_url(env, "UPSTREAM_OPENAI_URL", DEFAULT_OPENAI_URL),
        }
        return cls(
            client_keys=_split(env.get("RELAY_CLIENT_KEYS")),
            cors_origins=_cors_origins(env.get("RELAY_CORS_ORIGINS")),
            max_body_bytes=_whole_number(env, "RELAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            admin_token=(env.get("RELAY_ADMIN_TOKEN") or "").strip() or None,
            key_cache_seconds=_whole_number(env, "RELAY_KEY_CACHE_SECONDS", DEFAULT_KEY_CACHE_SECONDS, 0),
            default_rpm=_whole_number(env, "RELAY_DEFAULT_RPM", DEFAULT_RPM, key_limits.MIN_RPM),
            prices=_prices(env.get("RELAY_PRICES")),
            upstream_timeout=_whole_number(env, "RELAY_UPSTREAM_TIMEOUT_SECONDS", DEFAULT_UPSTREAM_TIMEOUT_SECONDS),
            routes=_routes(env, model_routes.default_providers(upstream_urls, upstream_keys)),
            cache_policy=_cache_policy(env),
            retention_days=_whole_number(env, "RELAY_RETENTION_DAYS", retention.DEFAULT_DAYS),
            gateway=_gateway(env),
            alert_webhooks=_webhooks(env),
            alert_thresholds=_thresholds(env),
            alert_format=_alert_format(env),
            session_max_usd=_dollars(env, "RELAY_SESSION_MAX_USD"),
            session_max_requests=_whole_number(env, "RELAY_SESSION_MAX_REQUESTS", 0, 0),
            session_window_minutes=_whole_number(env, "RELAY_SESSION_WINDOW_MINUTES", DEFAULT_SESSION_WINDOW_MINUTES),
        )


def settings_for(env: Mapping[str, str | None], state: IsolateState) -> Settings:
    """`Settings.from_env(env)`, read and parsed once per isolate and kept in `state`.

    A Worker's vars and secrets change only with a new deployment, which starts new
    isolates, so reading them again (a JS crossing per name) and parsing them again
    (RELAY_ROUTES and RELAY_PRICES JSON, URLs, key lists) on every request would be wasted
    work. `env` needs only `get`: the adapter lends a view of the Worker's env, from which
    `from_env` reads relay's own names and the secrets RELAY_ROUTES names, nothing else. A
    ConfigError is not kept: each request reports it again."""
    if state.settings is None:
        state.settings = Settings.from_env(env)
    return state.settings


# Relay's own settings: a provider naming one as its key pool would send it upstream.
_RESERVED = tuple(name for name in NAMES if name not in ("ANTHROPIC_API_KEYS", "OPENAI_API_KEYS"))


def _routes(env: Mapping[str, str | None], defaults: dict[str, model_routes.Provider]) -> model_routes.Table:
    try:
        return model_routes.parse(env.get(model_routes.VAR), env, defaults, _RESERVED)
    except model_routes.RoutesError as exc:
        raise ConfigError(f"{model_routes.VAR} {exc}") from None


def _gateway(env: Mapping[str, str | None]) -> gateway_settings.GatewaySettings | None:
    try:
        return gateway_settings.parse(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _prices(value: str | None) -> pricing.Prices:
    try:
        return pricing.parse_overrides(value)
    except ValueError as exc:
        raise ConfigError(f"RELAY_PRICES {exc}") from None

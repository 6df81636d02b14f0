"""Settings read from the Worker's vars and secrets (see .dev.vars.example)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

DEFAULT_ANTHROPIC_URL = "https://api.anthropic.com"
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

# Every name the Worker reads from its env; the adapter copies exactly these.
NAMES = (
    "RELAY_CLIENT_KEYS",
    "ANTHROPIC_API_KEYS",
    "OPENAI_API_KEYS",
    "UPSTREAM_ANTHROPIC_URL",
    "UPSTREAM_OPENAI_URL",
    "RELAY_CORS_ORIGINS",
    "RELAY_MAX_BODY_BYTES",
)


class ConfigError(Exception):
    """A var or secret has a value relay cannot use; the message names it, never its value."""


def _split(value: Optional[str]) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _base_url(env: Mapping[str, Optional[str]], name: str, default: str) -> str:
    url = (env.get(name) or default).strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"{name} must be an http(s) URL")
    return url


def _positive_int(env: Mapping[str, Optional[str]], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of bytes") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def _cors_origins(value: Optional[str]) -> tuple[str, ...]:
    """Unset means any origin (relay authenticates by key, not cookie); "" means none."""
    return ("*",) if value is None else _split(value)


@dataclass(frozen=True)
class Settings:
    client_keys: tuple[str, ...]
    upstream_keys: Mapping[str, tuple[str, ...]]
    upstream_urls: Mapping[str, str]
    cors_origins: tuple[str, ...]
    max_body_bytes: int

    @classmethod
    def from_env(cls, env: Mapping[str, Optional[str]]) -> "Settings":
        return cls(
            client_keys=_split(env.get("RELAY_CLIENT_KEYS")),
            upstream_keys={
                "anthropic": _split(env.get("ANTHROPIC_API_KEYS")),
                "openai": _split(env.get("OPENAI_API_KEYS")),
            },
            upstream_urls={
                "anthropic": _base_url(env, "UPSTREAM_ANTHROPIC_URL", DEFAULT_ANTHROPIC_URL),
                "openai": _base_url(env, "UPSTREAM_OPENAI_URL", DEFAULT_OPENAI_URL),
            },
            cors_origins=_cors_origins(env.get("RELAY_CORS_ORIGINS")),
            max_body_bytes=_positive_int(env, "RELAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        )

"""Header fidelity: does a target deliver the fields Claude Code and the SDKs send unchanged to
the upstream, and keep the client's own key to itself? Judged from what the fake upstream
recorded for one probe request per target (its body carries a marker to find it by)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx

from .endpoint import Endpoint
from .scenarios import MODEL, BenchError

# As Claude Code sends them (the values only need to be recognisable).
CLAUDE_CODE_FIELDS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    "x-stainless-lang": "js",
    "x-stainless-package-version": "0.60.0",
    "x-stainless-os": "Linux",
    "x-stainless-arch": "x64",
    "x-stainless-runtime": "node",
    "x-stainless-runtime-version": "v20.20.2",
    "x-stainless-retry-count": "0",
    "x-stainless-timeout": "600",
    "x-claude-code-session-id": "4f7e3c1a-0b5d-4e59-9a51-bench0000000",
}
STAINLESS = "x-stainless-*"
CLIENT_KEY = "client key stripped"
ROWS = ("anthropic-version", "anthropic-beta", STAINLESS, "x-claude-code-session-id", CLIENT_KEY)

Headers = list[tuple[str, str]]


def probe(endpoint: Endpoint, client: httpx.Client, headers_seen: Callable[[str], list[Headers]]) -> dict[str, str]:
    """One request through the target; its yes/no per row of ROWS."""
    marker = f"header probe {uuid.uuid4()}"
    body = json.dumps({"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": marker}]})
    response = client.post("/v1/messages", content=body, headers=CLAUDE_CODE_FIELDS)
    if response.status_code != 200:
        raise BenchError(f"header probe: HTTP {response.status_code} from {endpoint.url}")
    seen = headers_seen(marker)
    if len(seen) != 1:
        raise BenchError(f"header probe: the upstream saw {len(seen)} requests through {endpoint.url}")
    return verdicts(seen[0], endpoint.client_key)


def verdicts(received: Headers, client_key: str | None) -> dict[str, str]:
    fields: dict[str, list[str]] = {}
    for name, value in received:
        fields.setdefault(name.lower(), []).append(value)

    def same(name: str) -> bool:
        return fields.get(name) == [CLAUDE_CODE_FIELDS[name]]

    stainless = [name for name in CLAUDE_CODE_FIELDS if name.startswith("x-stainless-")]
    changed = [name.removeprefix("x-stainless-") for name in stainless if not same(name)]
    result = {name: _yes_no(same(name), _how(fields, name)) for name in ROWS if name in CLAUDE_CODE_FIELDS}
    result[STAINLESS] = "yes" if not changed else f"no ({len(changed)} of {len(stainless)} lost or changed)"
    if client_key is None:
        result[CLIENT_KEY] = "n/a (the client sends the provider key)"
    else:
        leaked = [name for name, values in fields.items() if any(client_key in value for value in values)]
        result[CLIENT_KEY] = "yes" if not leaked else f"no (in {', '.join(leaked)})"
    return result


def _how(fields: dict[str, list[str]], name: str) -> str:
    return "missing" if name not in fields else "changed"


def _yes_no(ok: bool, why: str) -> str:
    return "yes" if ok else f"no ({why})"

"""What the bench measures: the targets placed in front of the fake upstream.

A target is a name, a one-line description for BENCHMARKS.md and a `start` function that
brings it up (registering its shutdown on an ExitStack) and returns its `Endpoint`: where
clients point and which auth fields they send. A target may run only some scenarios (a
variant that differs in one respect), and a peer gateway that is not installed or does not
start is left out of the run with its reason instead of failing it.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devtools.local_worker import ROOT
from relay.config import DEFAULT_CACHE_POLICY

from . import peer_gateways
from .endpoint import UPSTREAM_KEY, Endpoint
from .miniflare_worker import MiniflareWorker

PASSTHROUGH_CONFIG = ROOT / "bench" / "passthrough" / "wrangler.toml"
PY_PASSTHROUGH_CONFIG = ROOT / "bench" / "passthrough_py" / "wrangler.toml"
RELAY_KEY = "bench-relay-key"  # throw-away, like the keys in endpoint.py
# relay's largest rate-limit tier (wrangler.toml): the bench stays below it, so relay does
# all its per-request work (the limit check included) without ever answering 429.
RELAY_RPM = "5000"


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    start: Callable[[str, contextlib.ExitStack], Endpoint]  # (upstream URL, stack) -> endpoint
    scenarios: frozenset[str] | None = None  # the scenario keys it runs; None: all
    peer: bool = False  # a peer gateway: left out, with the reason, if it cannot start
    ablation: bool = False  # a relay with one stage taken out: measured with --ablations only

    def runs(self, scenario_key: str) -> bool:
        return self.scenarios is None or scenario_key in self.scenarios


def _direct(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
    return Endpoint(upstream, {"x-api-key": UPSTREAM_KEY})


def _relay(cache_policy: str, without: tuple[str, ...] = ()) -> Callable[[str, contextlib.ExitStack], Endpoint]:
    """relay with a static key; `without` names wrangler.toml binding tables left out (an
    ablation: what the stage that uses them costs)."""

    def start(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
        config = ROOT / "wrangler.toml"
        if without:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="relay-ablation-")))
            config = folder / "wrangler.toml"
            config.write_text(config_without(without))
        worker = stack.enter_context(
            MiniflareWorker(
                {
                    "RELAY_CLIENT_KEYS": RELAY_KEY,
                    "ANTHROPIC_API_KEYS": UPSTREAM_KEY,
                    "OPENAI_API_KEYS": UPSTREAM_KEY,
                    "UPSTREAM_ANTHROPIC_URL": upstream,
                    "RELAY_DEFAULT_RPM": RELAY_RPM,
                    "RELAY_CACHE_POLICY": cache_policy,
                },
                config=config,
                migrate="d1_databases" not in without,
            )
        )
        return Endpoint(worker.url, {"x-api-key": RELAY_KEY}, client_key=RELAY_KEY, listener_only=True)

    return start


def config_without(tables: tuple[str, ...]) -> str:
    """The project's wrangler.toml without the `[[table]]` blocks named (e.g. `d1_databases`,
    `unsafe.bindings`), its paths made absolute so that the copy can live elsewhere."""
    text = (ROOT / "wrangler.toml").read_text()
    blocks = re.split(r"(?m)^(?=\[)", text)
    kept = [block for block in blocks if not any(block.startswith(f"[[{table}]]") for table in tables)]
    return re.sub(
        r'(?m)^(main|migrations_dir) = "([^"]+)"', lambda m: f'{m.group(1)} = "{ROOT / m.group(2)}"', "".join(kept)
    )


def _floor(config) -> Callable[[str, contextlib.ExitStack], Endpoint]:
    def start(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
        worker = stack.enter_context(MiniflareWorker({"UPSTREAM_URL": upstream}, config=config, migrate=False))
        return Endpoint(worker.url, {"x-api-key": UPSTREAM_KEY}, listener_only=True)

    return start


# The peers run every scenario but the CPU-per-KB bodies, which are relay's own check.
PEER_SCENARIOS = frozenset({"ttfb", "sse", "load", "large"})
# An ablation's stage shows in the small requests: first byte and concurrency 16.
ABLATION_SCENARIOS = frozenset({"ttfb", "load"})

DIRECT = "direct"
JS_FLOOR = "JS floor"
PY_FLOOR = "Python floor"
RELAY = "relay"
CCR = "claude-code-router"
TARGETS = (
    Target(DIRECT, "the client talks to the fake upstream itself: the reference", _direct),
    Target(
        JS_FLOOR,
        "a JavaScript Worker that only forwards (`bench/passthrough/`), on the same "
        "workerd as relay, served the same way: the platform's floor",
        _floor(PASSTHROUGH_CONFIG),
    ),
    Target(
        PY_FLOOR,
        "the same pass-through written in Python (`bench/passthrough_py/`), served the same way: "
        "what running Python (Pyodide) in workerd costs before any of relay's code",
        _floor(PY_PASSTHROUGH_CONFIG),
    ),
    Target(
        RELAY,
        "relay on workerd, served by miniflare (`bench/miniflare_worker.py`: the runtime and "
        "bindings of `wrangler dev` without its development tooling, see below) with a static relay key and its "
        f"defaults: rate-limit check, audit row, cache policy `{DEFAULT_CACHE_POLICY}` "
        "(prompt-cache markers added)",
        _relay(DEFAULT_CACHE_POLICY),
    ),
    Target(
        "relay, cache off",
        "the same relay with `RELAY_CACHE_POLICY=off` (no markers added), in the "
        "large-body scenario only: what the markers cost",
        _relay("off"),
        scenarios=frozenset({"large"}),
    ),
    *(
        Target(
            f"relay, {name}",
            f"relay as above with {what} (`python -m bench.run --ablations`): the difference to relay "
            "is what that stage costs",
            _relay(policy, without),
            scenarios=ABLATION_SCENARIOS,
            ablation=True,
        )
        for name, what, policy, without in (
            ("no rate limit", "no rate-limit bindings (no limit check)", DEFAULT_CACHE_POLICY, ("unsafe.bindings",)),
            (
                "no D1",
                "no D1 binding (no audit row, no budget or stream checks)",
                DEFAULT_CACHE_POLICY,
                ("d1_databases",),
            ),
            ("no KV", "no KV binding (cool-downs kept per isolate)", DEFAULT_CACHE_POLICY, ("kv_namespaces",)),
            ("no markers", "cache policy `off`", "off", ()),
            (
                "bare",
                "cache policy `off` and no bindings at all: relay's core and adapter alone",
                "off",
                ("unsafe.bindings", "d1_databases", "kv_namespaces"),
            ),
        )
    ),
    Target(
        "LiteLLM",
        "LiteLLM proxy 1.80.0 (`litellm --config`, one uvicorn worker) on its `/v1/messages` "
        "route, model `anthropic/...` with the fake as `api_base`, master key, client headers forwarded "
        "(`forward_client_headers_to_llm_api`), callbacks and telemetry off, local cost map",
        peer_gateways.litellm,
        peer=True,
        scenarios=PEER_SCENARIOS,
    ),
    Target(
        "Portkey",
        "Portkey's gateway 1.15.2 on Node (`start-server.js --headless`, `NODE_ENV=production`), "
        "provider `anthropic` with the fake as custom host and the fake's `x-fake-*` pacing fields "
        "as forward headers (request headers)",
        peer_gateways.portkey,
        peer=True,
        scenarios=PEER_SCENARIOS,
    ),
    Target(
        CCR,
        "claude-code-router 2.0.0 (`ccr start`) with the fake as its one provider "
        "through its `Anthropic` transformer, logging off, an APIKEY",
        peer_gateways.claude_code_router,
        peer=True,
        scenarios=PEER_SCENARIOS,
    ),
)

"""The peer gateways relay is compared with, each started in front of the fake upstream.

They are installed by `make bench` only (bench/peers/: LiteLLM into .venv-bench-peers, Portkey's
gateway and claude-code-router into bench/peers/node_modules). Each runs offline on loopback,
with its configuration in a throw-away folder (also its HOME), its telemetry and callbacks off,
and is stopped with its whole process session when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from devtools.local_worker import ROOT, free_port
from devtools.runtime import NODE_BIN

from . import cache_savings, scenarios
from .endpoint import GATEWAY_KEY, UPSTREAM_KEY, Endpoint, serve
from .scenarios import PACED

PEERS = ROOT / "bench" / "peers"
PEERS_VENV = ROOT / ".venv-bench-peers"
# The Node that runs relay's own tooling (devtools/node), for the Node gateways too.
NODE = str(NODE_BIN / "node")
NODE_MODULES = PEERS / "node_modules"
LITELLM = PEERS_VENV / "bin" / "litellm"
PORTKEY = NODE_MODULES / "@portkey-ai" / "gateway" / "build" / "start-server.js"
CLAUDE_CODE_ROUTER = NODE_MODULES / "@musistudio" / "claude-code-router" / "dist" / "cli.js"
# The models the scenarios ask for (the large body is `bench.cache_savings`'s, with its own).
MODELS = (scenarios.MODEL, cache_savings.MODEL)
NOT_INSTALLED = "not installed (`make bench` installs it)"


class PeerMissing(RuntimeError):
    """A peer's files are not there: the run goes on without it and says so."""


def _workdir(stack: contextlib.ExitStack, name: str) -> Path:
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"relay-bench-{name}-")))
    return folder


def _env(home: Path, **extra: str) -> dict[str, str]:
    """The bench's environment minus anything a gateway could mistake for configuration of its
    own (provider keys, proxies), with HOME in the throw-away folder."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")
    return {**{name: os.environ[name] for name in keep if name in os.environ}, "HOME": str(home), **extra}


def _require(path: Path) -> None:
    if not path.exists():
        raise PeerMissing(NOT_INSTALLED)


def litellm(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
    """LiteLLM's proxy, one uvicorn worker, its Anthropic-format `/v1/messages` route; the model
    points at the fake with the upstream key; clients present LiteLLM's master key; client
    headers forwarded (`forward_client_headers_to_llm_api`)."""
    _require(LITELLM)
    home = _workdir(stack, "litellm")
    config = home / "config.yaml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": model,
                        "litellm_params": {
                            "model": f"anthropic/{model}",
                            "api_base": upstream,
                            "api_key": UPSTREAM_KEY,
                        },
                    }
                    for model in MODELS
                ],
                "litellm_settings": {
                    "telemetry": False,
                    "callbacks": [],
                    "success_callback": [],
                    "failure_callback": [],
                },
                # Its documented switch to pass the client's `x-*` and `anthropic-beta` fields on: Claude
                # Code's betas need it, and so do the fake's `x-fake-*` pacing fields the scenarios use.
                "general_settings": {"master_key": GATEWAY_KEY, "forward_client_headers_to_llm_api": True},
            },
            indent=2,
        )
    )
    port = free_port()
    # The cost map from the package itself (no download at start-up), no telemetry, no UI docs.
    env = _env(home, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", NO_DOCS="True", NO_REDOC="True")
    serve(
        stack,
        [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        port=port,
        cwd=home,
        env=env,
        log=home / "litellm.log",
    )
    return Endpoint(f"http://127.0.0.1:{port}", {"x-api-key": GATEWAY_KEY}, client_key=GATEWAY_KEY)


def portkey(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
    """Portkey's open-source gateway on Node, in production mode without its UI; per request,
    `x-portkey-provider: anthropic` and `x-portkey-custom-host` name the fake, and
    `x-portkey-forward-headers` the fake's pacing fields (it passes no other unknown field). It
    has no keys of its own: the client sends the provider's key, which the gateway passes on."""
    _require(PORTKEY)
    home = _workdir(stack, "portkey")
    port = free_port()
    serve(
        stack,
        [NODE, str(PORTKEY), f"--port={port}", "--headless"],
        port=port,
        cwd=home,
        env=_env(home, NODE_ENV="production"),
        log=home / "portkey.log",
    )
    return Endpoint(
        f"http://127.0.0.1:{port}",
        {
            "x-portkey-provider": "anthropic",
            "x-portkey-custom-host": f"{upstream}/v1",
            # It drops unknown fields unless named here: the
            # fake's pacing fields, and nothing of the client's.
            "x-portkey-forward-headers": ",".join(PACED),
            "x-api-key": UPSTREAM_KEY,
        },
    )


def claude_code_router(upstream: str, stack: contextlib.ExitStack) -> Endpoint:
    """claude-code-router's server (`ccr start`, in the foreground) with one provider, the fake,
    through its `Anthropic` transformer (which keeps Anthropic requests and answers as they are),
    as the default route; logging off; clients present its APIKEY."""
    _require(CLAUDE_CODE_ROUTER)
    home = _workdir(stack, "ccr")
    port = free_port()
    (home / ".claude-code-router").mkdir()
    (home / ".claude-code-router" / "config.json").write_text(
        json.dumps(
            {
                "LOG": False,
                "HOST": "127.0.0.1",
                "PORT": port,
                "APIKEY": GATEWAY_KEY,
                "NON_INTERACTIVE_MODE": True,
                "Providers": [
                    {
                        "name": "fake",
                        "api_base_url": f"{upstream}/v1/messages",
                        "api_key": UPSTREAM_KEY,
                        "models": list(MODELS),
                        "transformer": {"use": ["Anthropic"]},
                    }
                ],
                "Router": {"default": f"fake,{MODELS[0]}"},
            },
            indent=2,
        )
    )
    serve(stack, [NODE, str(CLAUDE_CODE_ROUTER), "start"], port=port, cwd=home, env=_env(home), log=home / "ccr.log")
    return Endpoint(f"http://127.0.0.1:{port}", {"x-api-key": GATEWAY_KEY}, client_key=GATEWAY_KEY)

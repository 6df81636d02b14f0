"""bench/miniflare_worker.py gives miniflare what wrangler.toml says the Worker has."""

from __future__ import annotations

from pathlib import Path

from bench.miniflare_worker import options
from bench.targets import PASSTHROUGH_CONFIG
from devtools.runtime import LOCAL_FLAGS, ROOT


def test_relay_gets_its_modules_bindings_and_the_state_the_migrations_wrote(tmp_path):
    found = options(ROOT / "wrangler.toml", {"RELAY_CACHE_POLICY": "off"}, tmp_path, 8123)
    modules = [Path(module["path"]) for module in found["modules"]]
    assert modules[0] == ROOT / "src" / "entry.py" and len(set(modules)) == len(modules)
    assert ROOT / "src" / "relay" / "usage" / "meter.py" in modules
    own = [module for module in found["modules"] if "python_modules" not in module["path"]]
    assert {module["type"] for module in own if module["path"].endswith(".py")} == {"PythonModule"}
    # The adapter's JavaScript, an ES module as wrangler.toml's rule uploads it (entry.py imports it).
    assert {"type": "ESModule", "path": str(ROOT / "src" / "native_streams.mjs")} in own
    # The bundled prices, a Data module as wrangler.toml's rule uploads it (pricing.py reads it).
    assert {"type": "Data", "path": str(ROOT / "src" / "relay" / "usage" / "prices.json")} in own
    # The vendored SDK, named as wrangler uploads it: Data modules under python_modules/.
    vendored = {module["path"]: module["type"] for module in found["modules"] if module not in own}
    assert vendored[str(ROOT / "src" / "python_modules" / "workers" / "__init__.py")] == "Data"
    assert found["modulesRoot"] == str(ROOT / "src") and found["port"] == 8123
    assert found["compatibilityFlags"] == ["python_workers", *LOCAL_FLAGS]
    assert found["bindings"]["RELAY_CACHE_POLICY"] == "off"  # the given vars win, as .dev.vars does
    assert found["bindings"]["UPSTREAM_OPENAI_URL"] == "https://api.openai.com/v1"  # [vars] kept
    assert set(found["d1Databases"]) == {"DB"} and found["resourcePersistencePath"] == str(tmp_path / "v3")
    assert set(found["kvNamespaces"]) == {"RELAY_KV"}
    assert found["ratelimits"]["RPM_LIMIT_5000"] == {"namespace_id": "1010", "simple": {"limit": 5000, "period": 60}}


def test_the_js_floor_is_one_es_module_with_no_bindings(tmp_path):
    found = options(PASSTHROUGH_CONFIG, {"UPSTREAM_URL": "http://127.0.0.1:1"}, tmp_path, 8124)
    assert found["modules"] is True and found["scriptPath"].endswith("worker.js")
    # Module names are paths relative to modulesRoot, which defaults to the working directory.
    assert found["modulesRoot"] == str(PASSTHROUGH_CONFIG.parent.resolve())
    assert found["bindings"] == {"UPSTREAM_URL": "http://127.0.0.1:1"}
    assert not {"d1Databases", "kvNamespaces", "ratelimits"} & set(found)

"""The bench's relay variants: each ablation takes out exactly the bindings it names."""

import tomllib
from pathlib import Path

from bench.targets import ABLATION_SCENARIOS, TARGETS, config_without
from devtools.runtime import ROOT


def test_an_ablation_config_drops_only_the_tables_it_names():
    whole = tomllib.loads((ROOT / "wrangler.toml").read_text())
    left = tomllib.loads(config_without(("unsafe.bindings", "d1_databases")))
    assert "unsafe" not in left and "d1_databases" not in left
    assert left["kv_namespaces"] == whole["kv_namespaces"] and left["vars"] == whole["vars"]
    assert Path(left["main"]) == ROOT / whole["main"]
    kept = tomllib.loads(config_without(("unsafe.bindings",)))
    assert Path(kept["d1_databases"][0]["migrations_dir"]) == ROOT / "migrations"


def test_ablations_run_only_with_their_flag_and_only_small_requests():
    ablations = [target for target in TARGETS if target.ablation]
    assert {target.name for target in ablations} >= {"relay, no D1", "relay, no rate limit", "relay, bare"}
    assert all(target.scenarios == ABLATION_SCENARIOS and not target.peer for target in ablations)

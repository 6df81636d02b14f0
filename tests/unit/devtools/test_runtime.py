"""devtools/runtime.py: what a local run adds to wrangler.toml, and nothing else."""

import tomllib

from devtools.runtime import LOCAL_FLAGS, ROOT, compatibility_flags, local_config


def test_the_deployable_config_names_no_local_flag():
    text = (ROOT / "wrangler.toml").read_text()
    assert compatibility_flags(text)[:1] == ["python_workers"]
    assert not any(flag in text for flag in LOCAL_FLAGS)


def test_a_local_copy_keeps_the_config_flags_and_adds_the_local_ones_once():
    text = 'name = "x"\ncompatibility_flags = ["python_workers", "no_python_workers_314"]\n[vars]\nA = "1"\n'
    local = local_config(text)
    assert compatibility_flags(local) == [
        "python_workers",
        "no_python_workers_314",
        "python_workers_development",
        "no_python_workers_20250116",
    ]
    assert local.count("compatibility_flags") == 1 and local.endswith('[vars]\nA = "1"\n')


def test_a_config_without_flags_gets_them_before_its_first_table():
    local = local_config('name = "x"\n[vars]\n')
    assert local.startswith("compatibility_flags = [") and compatibility_flags(local) == list(LOCAL_FLAGS)


def test_pywrangler_and_make_vendor_the_same_sdk():
    pinned = [
        line
        for line in (ROOT / "requirements-worker.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    group = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert pinned == ["workers-runtime-sdk==1.9.5"] and pinned[0] in group

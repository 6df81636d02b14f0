"""devtools/pyodide_bundle.py: the local Pyodide bundle is built only from the pinned inputs."""

import json

import pytest

from devtools import pyodide_bundle
from devtools.pyodide_bundle import ADAPTATIONS, BundleError, adapt_glue


def _pinned_glue_shape() -> str:
    """Text holding each adapted piece exactly as often as the pinned glue does."""
    return "\n".join(before for before, _, count in ADAPTATIONS for _ in range(count))


def test_the_glue_imports_the_runtime_wrappers_and_exports_its_factory_by_name():
    adapted = adapt_glue(_pinned_glue_shape())
    assert "from 'pyodide-internal:builtin_wrappers'" in adapted
    assert "export { _createPyodideModule };" in adapted
    for _, after, _ in ADAPTATIONS:
        assert after in adapted
    for forbidden in (
        "new WebAssembly.Module(",
        "WebAssembly.instantiate(",
        "Date.now",
        "crypto.getRandomValues(",
        "eval(func)",
        "eval(data)",
    ):
        assert forbidden not in adapted


def test_a_glue_of_another_release_is_refused_naming_the_difference():
    other = _pinned_glue_shape().replace("Date.now", "performance.now", 1)
    with pytest.raises(BundleError, match=r"'Date\.now' 21 times, not 22"):
        adapt_glue(other)


def test_another_pyodide_version_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "package.json").write_text(json.dumps({"version": "314.0.7"}))
    with pytest.raises(BundleError, match=r"npm pyodide is 314\.0\.7 .* needs 314\.0\.6 .*`make setup`"):
        pyodide_bundle.build(tmp_path / "out", package=tmp_path)


def test_a_changed_input_file_is_refused(tmp_path):
    (tmp_path / "package.json").write_text(json.dumps({"version": pyodide_bundle.PYODIDE_VERSION}))
    for name in pyodide_bundle.INPUTS:
        (tmp_path / name).write_bytes(b"not the release")
    with pytest.raises(BundleError, match="SHA-256 differs"):
        pyodide_bundle.build(tmp_path / "out", package=tmp_path)


def test_the_real_bundle_is_built_once_then_reused(tmp_path):
    out = pyodide_bundle.build(tmp_path)
    bundle = out / pyodide_bundle.BUNDLE_NAME
    first = bundle.stat().st_mtime_ns
    assert bundle.read_bytes().count(b"pyodideRuntime-internal:") == 3
    assert pyodide_bundle.build(tmp_path) == out
    assert bundle.stat().st_mtime_ns == first

"""Builds the Pyodide bundle that lets the pinned workerd run Python Workers offline.

Why: workerd does not carry Pyodide inside its binary. At start-up it loads the bundle its
compatibility flags select (`pyodide_<version>_<date>_<n>.capnp.bin`) from memory, then from
the folder given by `--pyodide-bundle-disk-cache-dir`, then from the internet, which these
machines cannot reach. A production bundle read from disk must match a SHA-256 compiled into
the binary, so it cannot be rebuilt from its parts; the `dev` bundle (flag
`python_workers_development`) is never downloaded and never checksum-checked: workerd reads
`pyodide_dev.capnp.bin` from the cache folder. So the tests run relay on a `dev` bundle built
here from the same Pyodide release the production flag selects (314.0.6, the only one this
workerd accepts as `dev`), and a deploy runs the production bundle Cloudflare serves. The
`dev` bundle is a test device only: wrangler.toml never names its flag.

What: the bundle is a Cap'n Proto `Bundle` (devtools/capnp_bundle.py) of three internal
modules workerd's own Python loader imports: the Emscripten glue `pyodide.asm.mjs` (adapted,
below), the wasm binary and the standard library zip, from npm's `pyodide` package
(package.json pins it). The glue is adapted to what workerd permits of generated code:
compiling wasm, reading the clock and drawing random bytes go through the runtime's
`pyodide-internal:builtin_wrappers` module, `eval` is refused outright, and the factory is
exported by name, as workerd's loader imports it. Each adaptation names the exact number of
places it changes in the pinned glue, so a different glue fails loudly instead of half
patched.

Cached: the output is rebuilt only when an input or this builder changes (a stamp of their
SHA-256s sits beside it).

    python -m devtools.pyodide_bundle [--out DIR]   # prints the bundle's folder
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from devtools.capnp_bundle import Module, encode

ROOT = Path(__file__).resolve().parent.parent
PYODIDE_PACKAGE = ROOT / "node_modules" / "pyodide"
DEFAULT_OUT = ROOT / ".cache" / "pyodide-bundle"
BUNDLE_NAME = "pyodide_dev.capnp.bin"

# The Pyodide release workerd 1.20261117.1 accepts as `dev` ("Pyodide version mismatch,
# expected '314.0.6'" otherwise), and its files as npm serves them.
PYODIDE_VERSION = "314.0.6"
INPUTS = {
    "pyodide.asm.mjs": "2ac5eba365ec12839c75c03b39b3be1dd63b798852cc460b014b52238be042f7",
    "pyodide.asm.wasm": "3a0a00dfeaa348ac20f9ef09904233d32d33f644339662d4af368f8a2010f37a",
    "python_stdlib.zip": "80c5be6babfe03297069703410c3c29404dcf2525d2b128746bae5536f94831f",
}
# The module names workerd's loader imports them by.
MODULE_PREFIX = "pyodideRuntime-internal:"

_THROW_ON_EVAL = "(() => { throw new Error('relay: the Pyodide glue may not eval code in workerd'); })()"
_WRAPPERS = ("newWasmModule", "wasmInstantiate", "monotonicDateNow", "getRandomValues")
# (what, its replacement, how many times the pinned glue holds it)
ADAPTATIONS = (
    (
        "export default _createPyodideModule;",
        f"import {{ {', '.join(_WRAPPERS)} }} from 'pyodide-internal:builtin_wrappers';\n"
        "export default _createPyodideModule; export { _createPyodideModule };",
        1,
    ),
    ("new WebAssembly.Module(", "newWasmModule(", 4),
    ("WebAssembly.instantiate(", "wasmInstantiate(", 2),
    ("Date.now", "monotonicDateNow", 22),
    ("crypto.getRandomValues(", "getRandomValues(Module, ", 1),
    ("eval(func)", _THROW_ON_EVAL, 2),
    ("eval(UTF8ToString(ptr))", _THROW_ON_EVAL, 3),
    ("eval(data)", _THROW_ON_EVAL, 1),
)


class BundleError(Exception):
    """The inputs are not the pinned ones: the message says which and what to do."""


def adapt_glue(glue: str) -> str:
    for before, after, count in ADAPTATIONS:
        found = glue.count(before)
        if found != count:
            raise BundleError(
                f"pyodide.asm.mjs holds {before!r} {found} times, not {count}: "
                f"it is not Pyodide {PYODIDE_VERSION}'s glue"
            )
        glue = glue.replace(before, after)
    return glue


def _read_inputs(package: Path) -> dict[str, bytes]:
    try:
        version = json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        raise BundleError(f"no npm pyodide package at {package}: run `make setup`") from None
    if version != PYODIDE_VERSION:
        raise BundleError(
            f"npm pyodide is {version} at {package}; this workerd needs {PYODIDE_VERSION} "
            f"(package.json pins it: run `make setup`)"
        )
    files = {}
    for name, digest in INPUTS.items():
        content = (package / name).read_bytes()
        if hashlib.sha256(content).hexdigest() != digest:
            raise BundleError(
                f"{package / name} is not the file npm pyodide {PYODIDE_VERSION} ships "
                f"(its SHA-256 differs): reinstall with `make setup`"
            )
        files[name] = content
    return files


def bundle(files: dict[str, bytes]) -> bytes:
    glue = adapt_glue(files["pyodide.asm.mjs"].decode())
    return encode(
        [
            Module(MODULE_PREFIX + "pyodide.asm", "src", glue.encode()),
            Module(MODULE_PREFIX + "pyodide.asm.wasm", "wasm", files["pyodide.asm.wasm"]),
            Module(MODULE_PREFIX + "python_stdlib.zip", "data", files["python_stdlib.zip"]),
        ]
    )


def _stamp() -> str:
    builders = [Path(__file__), Path(__file__).with_name("capnp_bundle.py")]
    parts = [PYODIDE_VERSION, *INPUTS.values(), *(hashlib.sha256(p.read_bytes()).hexdigest() for p in builders)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def build(out: Path = DEFAULT_OUT, package: Path = PYODIDE_PACKAGE) -> Path:
    """The folder holding an up-to-date `pyodide_dev.capnp.bin` (for workerd's cache flag)."""
    target, stamp_file, stamp = out / BUNDLE_NAME, out / (BUNDLE_NAME + ".stamp"), _stamp()
    if target.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return out
    message = bundle(_read_inputs(package))
    out.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(message)
    partial.replace(target)
    stamp_file.write_text(stamp)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        print(build(args.out))
    except BundleError as exc:
        print(f"pyodide bundle: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

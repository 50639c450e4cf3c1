# goalport: `make demo` to see it work, `make test` to prove it. See README.md.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export DAGSTER_HOME ?= $(CURDIR)

.PHONY: install system-deps azurite postgres demo dev test bench lint typecheck lock clean up down

install: $(VENV)/.installed

# Bytecode is compiled at install time: where PYTHONDONTWRITEBYTECODE is set (as on this
# machine), every process would otherwise compile dagster, pandas and great_expectations
# from source again (importing great_expectations: 20 s of CPU instead of 3).
# requirements-test.lock is the runtime lock plus the test extra (the same pins for what
# they share); the image installs requirements.lock alone (deploy/Dockerfile).
$(VENV)/.installed: requirements-test.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-test.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# Tools the tests call as real programs: age (decrypts our backups without goalport),
# chromium (renders the HTML report and drives the portal's browser tests; `chromium` or
# `chromium-browser` on the PATH), sha256sum, OpenSSH's sshd (the SFTP destination's
# server), Node and npm (axe-core for the portal's tests; Azurite, the Azure Blob
# destination's emulator), and the fonts the portal's screenshots need for emoji and CJK
# text. Installed only when missing, which needs root; present, nothing is asked.
system-deps:
	@missing=""; \
	command -v age >/dev/null || missing="$$missing age"; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	command -v sshd >/dev/null || test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	for font in fonts-noto-color-emoji fonts-wqy-microhei; do \
	  dpkg -s $$font >/dev/null 2>&1 || missing="$$missing $$font"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing (install them, or run make as root)" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

postgres:
	@scripts/ensure-postgres.sh

# axe-core, the accessibility checker the portal's browser tests inject into each page.
AXE_CORE_VERSION := 4.14.1
AXE_CORE := var/npm/node_modules/axe-core/axe.min.js
$(AXE_CORE): | system-deps
	npm install --silent --no-audit --no-fund --prefix var/npm axe-core@$(AXE_CORE_VERSION)

# Azurite (Microsoft's Azure Storage emulator) for the destination tests, from npm.
AZURITE_VERSION := 3.37.0
azurite: var/npm/node_modules/.bin/azurite-blob

var/npm/node_modules/.bin/azurite-blob: | system-deps
	mkdir -p var/npm
	npm install --prefix var/npm --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)

demo: install
	mkdir -p var/dagster
	$(BIN)/goalport demo

dev: install
	mkdir -p var/dagster
	$(BIN)/dagster dev -w workspace.yaml

# The linter and the type checker run first: CI is `make test`, so it checks them too.
test: install system-deps azurite postgres lint typecheck $(AXE_CORE)
	mkdir -p var/dagster
	GOALPORT_TEST_PG_URL="$$(cat var/test-pg-url)" $(BIN)/pytest -q -n 2 --dist loadfile

# The production topology on this machine (scripts/ops.py): S3 endpoint, code server,
# webserver (http://127.0.0.1:3070), daemon and API, on PostgreSQL; logs in var/ops/.
up: install postgres
	$(BIN)/python scripts/ops.py up

down:
	$(BIN)/python scripts/ops.py down

bench: install postgres
	GOALPORT_BENCH_PG_URL="$$(cat var/test-pg-url)" $(BIN)/python -m bench.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# On a fresh clone too: uv comes with the venv (install), the locks from pyproject.toml.
# The test lock first, then the runtime lock with the test lock's pins as preferences, so
# that a package in both has one version.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra test -p 3.11 --no-header -o requirements-test.lock
	cp requirements-test.lock requirements.lock
	$(BIN)/uv pip compile pyproject.toml -p 3.11 --no-header -o requirements.lock

clean:
	rm -rf var

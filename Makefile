# obsmesh: `make run` (the whole local mesh) and `make test` set up what they need first.
PYTHON ?= python3
VENV := .venv
ROUTER_VENV := .venv-router
CROSSBAR_VERSION := 26.10.1
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: setup run test test-fast lint bench bench-soak system-deps test-docker test-hosts bench-network

setup: $(VENV)/.installed $(ROUTER_VENV)/.installed consumers/web/node_modules/.installed

# The app's virtualenv; reinstalled when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) -e '.[test]'
	touch $@

# crossbar pins old versions of common libraries: it lives in its own virtualenv.
$(ROUTER_VENV)/.installed:
	test -x $(ROUTER_VENV)/bin/python || $(PYTHON) -m venv $(ROUTER_VENV)
	$(ROUTER_VENV)/bin/pip install $(PIP_QUIET) crossbar==$(CROSSBAR_VERSION)
	touch $@

# The dashboard's browser packages (pinned in consumers/web/package-lock.json), served by the router.
consumers/web/node_modules/.installed: consumers/web/package.json consumers/web/package-lock.json
	cd consumers/web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The example node kind lives outside obsmesh (examples/tidegauge, a package of its own):
# the tests install it as a user would, and obsmesh finds it through its entry point.
$(VENV)/.example-kind: examples/tidegauge/pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install $(PIP_QUIET) --no-deps -e examples/tidegauge
	touch $@

# Tests start their own redis-server and drive Debian's Chromium; install them when missing.
# systemd-analyze checks the units `obsmesh systemd` writes (Debian's systemd, no daemon started).
system-deps:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@test -x /usr/bin/chromium || { \
		echo "installing chromium from Debian's packages (browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v ip >/dev/null || [ "$$(id -u)" != 0 ] || { \
		echo "installing iproute2 from Debian's packages (multi-host lane)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
	@command -v systemd-analyze >/dev/null || { \
		echo "installing systemd from Debian's packages (systemd-analyze verify)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null || true; }

run: setup
	$(VENV)/bin/obsmesh up

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup system-deps lint $(VENV)/.example-kind
	$(VENV)/bin/python -m pytest

# The unit tests alone (tests/conftest.py marks them): no router, no process, under a minute.
# schemathesis's and anyio's pytest plugins serve router tests only: not loaded (seconds saved).
test-fast: setup
	$(VENV)/bin/python -m pytest -m "unit and not slow" -q -p no:schemathesis -p no:anyio

# The multi-host lane alone (also part of `make test`): simulated hosts in network
# namespaces (root); it says what it needs where it cannot run. tests/test_hosts.py
test-hosts: setup system-deps
	$(VENV)/bin/python -m pytest tests/test_hosts.py -v -rs

# The Grafana benchmark's load generator is wrk (a Python loop stands in without it).
bench: setup system-deps
	@command -v wrk >/dev/null || { \
		echo "installing wrk from Debian's packages (load generator)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || true; }
	$(VENV)/bin/python -m bench.run

# 200 radar sites, 500 CO2 units and 50 WebSocket subscribers through real nodes and router
bench-network: setup system-deps
	$(VENV)/bin/python -m bench.network

# 10 minutes of the whole mesh plus 200 subscribers (SOAK_SECONDS, SOAK_SUBSCRIBERS)
bench-soak: setup
	$(VENV)/bin/python -m bench.soak

# The Docker lane: builds the images, runs docker-compose.yml, checks it, tears it down.
# Needs a reachable Docker engine (it says so and fails without one); never part of `make test`.
test-docker: setup
	$(VENV)/bin/python -m tests.docker.lane

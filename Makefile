# Two commands do everything on a fresh machine (both idempotent):
#   make demo   set up what is missing, then run the main job
#   make test   set up what is missing, then lint, type-check and run every test
#               (and again over TLS, on a Swarm, through a gateway and on Podman, in parallel)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian's Chromium drives the browser test of the widget panel; iproute2 and
# openssl give the throw-away engines of tests/engines.py their bridge and TLS;
# openssh-server (and its client) put a throw-away sshd in front of one;
# podman (with catatonit, its init) serves a throw-away Docker API of its own.
TEST_SYSTEM_EXTRAS := chromium iproute2 openssl openssh-server openssh-client podman catatonit
LINT_PATHS := dockermagic tests benchmarks tools scripts notebooks/exercise_checks notebooks/solutions

.PHONY: all setup venv system system-test hub-proxy images demo test test-main test-tls test-swarm test-gateway test-podman _test-main _test-tls _test-swarm _test-gateway _test-podman lint unit cleanup bench labextension

all: test

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing the package and its test tools into $(VENV)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@$(BIN)/python tools/labextension.py link
	@touch $(STAMP)

venv: $(STAMP)

# The JupyterLab extension (labextension/ -> dockermagic/labextension/, committed):
# built with npm only when its sources changed since the committed build (a
# hash it records); under CI a stale bundle fails instead of building.
labextension: venv
	@$(BIN)/python tools/labextension.py build

system: venv
	@bash tools/ensure-system.sh $(BIN)/python

system-test: venv
	@bash tools/ensure-system.sh $(BIN)/python $(TEST_SYSTEM_EXTRAS)

# Present images are kept; missing ones are pulled, or built offline when no
# registry answers.
images: system
	@$(BIN)/dockermagic images

setup: images

# The main job: two snippets, every script of scripts/ in parallel, and the
# tour notebook executed headless (its executed copy goes to build/).
demo: setup
	@$(BIN)/python tools/demo.py
	@$(BIN)/dockermagic run scripts --parallel --logs logs
	@$(BIN)/python tools/run_notebook.py notebooks/00-dockermagic-tour.ipynb build/00-dockermagic-tour.executed.ipynb
	@echo "[demo] logs are in $(CURDIR)/logs"

lint: venv
	@$(BIN)/ruff check $(LINT_PATHS)
	@$(BIN)/ruff format --check $(LINT_PATHS)
	@$(BIN)/mypy

# Five passes, three at a time (-Otarget keeps each one's output together):
# every test against the main engine; the integration tests again against a
# throw-away engine on tcp://127.0.0.1 with TLS (tests/conftest.py --engine=tls;
# tests marked "engines" or "gateway_server" start engines or gateways of their
# own and run in the main pass); the Swarm tests (marked "swarm") on a
# throw-away two-node swarm of their own; the tests marked "gateway" again
# through a real gateway subprocess holding the main engine (--engine=gateway),
# with the real JupyterHub of tests/integration/test_hub.py (marked "hub");
# and the runner, session, batch and CLI tests against a throw-away Podman
# service (--engine=podman; tests marked "docker_only" are left out there).
TEST_JOBS ?= 3
test: setup system-test hub-proxy lint labextension
	@$(MAKE) --no-print-directory -j$(TEST_JOBS) -Otarget _test-main _test-tls _test-swarm _test-gateway _test-podman

test-main: setup system-test labextension
	@$(MAKE) --no-print-directory _test-main

test-tls: setup system-test
	@$(MAKE) --no-print-directory _test-tls

test-swarm: setup system-test
	@$(MAKE) --no-print-directory _test-swarm

_test-main: venv
	@$(BIN)/pytest -m "not swarm and not hub"

TLS_TESTS := tests/integration
_test-tls: venv
	@echo "[test-tls] the integration tests against a throw-away TLS engine"
	@$(BIN)/pytest --engine=tls -p no:cacheprovider $(TLS_TESTS)

# A manager and a worker dockerd, each in a network namespace of its own
# (tests/engines.py SwarmCluster), made and removed by the tests: about 2.5 min.
_test-swarm: venv
	@echo "[test-swarm] batches on a throw-away two-node Docker Swarm"
	@$(BIN)/pytest -m swarm -p no:cacheprovider tests/integration/test_swarm.py tests/integration/test_gateway_swarm.py

test-gateway: setup hub-proxy
	@$(MAKE) --no-print-directory _test-gateway

# JupyterHub's proxy, from npm, for the real Hub of tests/integration/test_hub.py
# (which runs in the gateway pass); installed once under the venv.
HUB_PROXY := $(VENV)/hub-proxy/node_modules/.bin/configurable-http-proxy
hub-proxy: $(HUB_PROXY)

$(HUB_PROXY):
	@echo "[setup] configurable-http-proxy from npm (JupyterHub's proxy, for the Hub test)"
	@npm install --silent --no-audit --no-fund --prefix $(VENV)/hub-proxy configurable-http-proxy@4

_test-gateway: venv
	@echo "[test-gateway] runner and session tests again, through a gateway; a real JupyterHub"
	@$(BIN)/pytest --engine=gateway -p no:cacheprovider tests/integration

test-podman: setup system-test
	@$(MAKE) --no-print-directory _test-podman

PODMAN_TESTS := tests/integration/test_runners.py tests/integration/test_sessions.py \
	tests/integration/test_batch*.py tests/integration/test_cli.py tests/integration/test_gateway_engines.py
_test-podman: venv
	@echo "[test-podman] runner, session, batch, CLI and gateway-engine tests against a throw-away Podman service"
	@$(BIN)/pytest --engine=podman -p no:cacheprovider $(PODMAN_TESTS)

unit: venv
	@$(BIN)/pytest tests/unit

cleanup: venv
	@$(BIN)/dockermagic cleanup --all

bench: setup
	@$(BIN)/python benchmarks/latency.py
	@$(BIN)/python benchmarks/batch.py --repeat 2

"""Shared fixtures: a real Docker Engine, and a guarantee that no test leaks a container.

Every container created while the suite runs carries ``DOCKERMAGIC_TAG`` (set
here, once per pytest process, so concurrent test runs on one engine do not
see each other's containers). The autouse fixture fails any test that leaves a
tagged container behind.

``pytest --engine=gateway`` runs the tests marked ``gateway`` (a representative
set of the runner, session and batch suites) a second time through a real
``dockermagic gateway serve`` subprocess on 127.0.0.1 that holds the main
engine (tests/gateway.py): the test process gets ``DOCKERMAGIC_GATEWAY`` and
a student's ``DOCKERMAGIC_TOKEN``, so every runner, session and batch in it
goes through the gateway; ``make test-gateway`` is that pass. The real JupyterHub
of tests/integration/test_hub.py (marked ``hub``) runs in that pass too (the
main pass leaves it out).

``pytest --engine=tls`` runs the same tests against a throw-away engine on
``tcp://127.0.0.1:<port>`` with ``--tlsverify`` (own CA, server and client
certificates, own bridge; tests/engines.py), reached through ``DOCKER_HOST``,
``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` while ``REQUESTS_CA_BUNDLE``
names a CA that did not sign it; ``make test-tls`` is that pass.

``pytest --engine=podman`` runs them against a throw-away Podman service
(``podman system service`` on a socket of its own, its own configuration and
storage under ``/tmp/dmp-*``; tests/engines.py), reached through
``DOCKER_HOST``; ``make test-podman`` is that pass. Tests marked
``docker_only(reason)`` are deselected there, each for the reason it gives.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests.certs

from dockermagic.cleanup import cleanup, list_containers
from dockermagic.engine import connect, reset_default_client
from dockermagic.errors import DockermagicError
from dockermagic.pool import idle_containers
from tests.engines import ExtraEngine, PodmanService, missing_podman, missing_prerequisites
from tests.gateway import GatewayProcess

TAG = os.environ.setdefault("DOCKERMAGIC_TAG", f"pytest-{uuid.uuid4().hex[:10]}")

#: Images the TLS pass copies into its engine (what the integration tests run).
TLS_IMAGES = ("dockermagic/python:offline", "dockermagic/node:offline")
_TLS_ENGINE = pytest.StashKey[ExtraEngine]()
_MISSING = pytest.StashKey[str]()
_GATEWAY = pytest.StashKey[GatewayProcess]()
_PODMAN = pytest.StashKey[PodmanService]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine",
        choices=("main", "tls", "gateway", "podman"),
        default="main",
        help=(
            "main: the engine DOCKER_HOST names (default). tls: a throw-away engine on "
            "tcp://127.0.0.1 with --tlsverify and its own CA, started for this run, with "
            "REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE naming another CA. gateway: the tests marked "
            "'gateway', through a gateway subprocess holding the main engine. podman: a "
            "throw-away Podman service (Docker API) on a socket of its own; tests marked "
            "'docker_only' are deselected. tls and podman deselect tests marked 'engines' "
            "or 'gateway_server', which start engines or gateways of their own"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    """For ``--engine=tls``: start the TLS engine and point the environment at it.

    Before collection, so that nothing connects to the main engine first; the
    variables are the user's (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
    ``DOCKER_CERT_PATH``), so every client of the run, subprocesses included,
    reaches the engine as a user's would.
    """
    if config.getoption("engine") == "gateway":
        folder = Path(tempfile.mkdtemp(prefix="dockermagic-gateway-pass-"))
        gateway = GatewayProcess(folder).start()
        config.stash[_GATEWAY] = gateway
        os.environ.update(gateway.env("alice"))
        return
    if config.getoption("engine") == "podman":
        _start_podman(config)
        return
    if config.getoption("engine") != "tls":
        return
    missing = missing_prerequisites(tls=True)
    if missing:
        config.stash[_MISSING] = ", ".join(missing)
        return
    engine = ExtraEngine(images=TLS_IMAGES, tls=True)
    engine.start()
    config.stash[_TLS_ENGINE] = engine
    os.environ.update(engine.tls_env())
    # A CA bundle that did not sign the engine's certificate, as on machines
    # where these are set: the run proves the engine's own CA wins (#2433).
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["CURL_CA_BUNDLE"] = requests.certs.where()
    reset_default_client()


def _start_podman(config: pytest.Config) -> None:
    """Start the Podman service with the images and point ``DOCKER_HOST`` at it."""
    missing = missing_podman()
    if missing:
        config.stash[_MISSING] = ", ".join(missing)
        return
    service = PodmanService(images=TLS_IMAGES)
    service.start()
    config.stash[_PODMAN] = service
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        os.environ.pop(name, None)
    os.environ["DOCKER_HOST"] = service.base_url
    reset_default_client()


def pytest_unconfigure(config: pytest.Config) -> None:
    gateway = config.stash.get(_GATEWAY, None)
    if gateway is not None:
        gateway.stop()
        shutil.rmtree(gateway.folder, ignore_errors=True)
    engine = config.stash.get(_TLS_ENGINE, None)
    if engine is not None:
        reset_default_client()
        engine.stop()
    service = config.stash.get(_PODMAN, None)
    if service is not None:
        reset_default_client()
        service.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    gateway = config.stash.get(_GATEWAY, None)
    if gateway is not None:
        return f"engine: the main one, through a gateway at {gateway.url} (user alice)"
    engine = config.stash.get(_TLS_ENGINE, None)
    if engine is not None:
        return f"engine: TLS, {engine.tls_url} (throw-away, certificates in {engine.cert_path})"
    service = config.stash.get(_PODMAN, None)
    if service is not None:
        took = ", ".join(f"{k} {v:.1f} s" for k, v in service.timings.items())
        return f"engine: Podman, {service.base_url} (throw-away; {took})"
    if config.stash.get(_MISSING, None):
        which = config.getoption("engine")
        return f"engine: {which} pass SKIPPED, this machine lacks {config.stash[_MISSING]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("engine") == "gateway":
        # Only what the gateway serves; the runners' client-side pool does not
        # apply there (the gateway keeps its own), so one pass of test_runners.
        # The real JupyterHub (marked "hub") runs here too: its own gateway,
        # as a Hub service, beside this pass's.
        chosen = [
            item
            for item in items
            if item.get_closest_marker("hub")
            or (
                item.get_closest_marker("gateway")
                and not item.get_closest_marker("gateway_server")
                and "pooled" not in item.nodeid
            )
        ]
        dropped = [item for item in items if item not in chosen]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = chosen
        return
    which = config.getoption("engine")
    if which == "main":
        return
    missing = config.stash.get(_MISSING, None)
    if missing:
        skip = pytest.mark.skip(
            reason=f"the {which} pass needs {missing} (make test installs them)"
        )
        for item in items:
            item.add_marker(skip)
        return

    # Tests that start (and freeze, or kill) engines of their own test that
    # harness, not the transport; they run in the main pass. On Podman, tests
    # marked docker_only check what only Docker does (their reason says what).
    def elsewhere(item: pytest.Item) -> bool:
        return bool(
            item.get_closest_marker("engines")
            or item.get_closest_marker("gateway_server")
            or (which == "podman" and item.get_closest_marker("docker_only"))
        )

    deselected = [item for item in items if elsewhere(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not elsewhere(item)]


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client for the real engine; the suite fails loudly when none answers."""
    try:
        # As dockermagic connects: a TLS engine (--engine=tls) with its own CA.
        client = connect(timeout=30)
        client.ping()
    except (docker.errors.DockerException, DockermagicError) as exc:  # pragma: no cover
        pytest.fail(f"these tests need a running Docker Engine (`make test` starts one): {exc}")
    # Leftovers of earlier, killed test runs (dead owners) would confuse counts.
    cleanup(client)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def no_leftover_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Assert that a Docker-touching test leaves no dockermagic container behind."""
    if request.node.get_closest_marker("docker") is None:
        yield
        return
    client: docker.DockerClient = request.getfixturevalue("docker_client")
    yield
    # Removal runs in a thread that a test's KeyboardInterrupt may have left
    # still working for a moment: give it a short grace period.
    # Idle containers of a pool (DOCKERMAGIC_POOL_SIZE) are kept on purpose;
    # any other container, a pooled one that ran a program included, is not.
    deadline = time.monotonic() + 5
    while True:
        idle = idle_containers()
        left = [c.name for c in list_containers(client, tag=TAG) if c.name not in idle]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if left:
        for container in list_containers(client, tag=TAG):
            if container.name not in idle:
                client.api.remove_container(container.id, force=True, v=True)
        pytest.fail(f"test left containers behind: {left}")

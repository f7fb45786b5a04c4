"""Everything under tests/integration talks to the real Docker Engine.

The throw-away two-node swarm of the Swarm suites (marked ``swarm``) is made
here, once per pytest run, by the first test that asks for it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dockermagic.engine import reset_default_client
from tests.engines import SwarmCluster, missing_prerequisites
from tests.swarm import NODE_IMAGE, PYTHON_IMAGE, assert_nothing_left

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def cluster() -> Iterator[SwarmCluster]:
    """The two-node swarm; removed at the end, also when the run is stopped.

    SIGTERM and SIGHUP (a killed make, a closed terminal) become a
    KeyboardInterrupt while it lives, as Ctrl-C is: pytest then runs the
    teardowns and the cluster stops. A SIGKILLed run leaves it to the next
    cluster's start (``reclaim_stale_clusters``).
    """
    missing = missing_prerequisites()
    if missing:
        pytest.skip(f"a throw-away Swarm needs {', '.join(missing)}")

    stopping = False

    def interrupt(signum: int, _frame: object) -> None:
        # Once the cluster stops, let it finish (its stop is bounded): an
        # interrupted stop would leave it to the next run's reclaim.
        if not stopping:
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with SwarmCluster(images=(PYTHON_IMAGE, NODE_IMAGE)) as made:
            print(f"\nswarm {made.token}: {made.timings}", file=sys.stderr)
            try:
                yield made
            finally:
                stopping = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@pytest.fixture(scope="session")
def manager(cluster: SwarmCluster) -> Iterator[docker.DockerClient]:
    """A client of the swarm's manager."""
    client = cluster.manager.client(timeout=30)
    yield client
    client.close()


@pytest.fixture
def on_swarm(
    cluster: SwarmCluster, manager: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """DOCKER_HOST names the manager for the test; afterwards nothing of it is left."""
    monkeypatch.setenv("DOCKER_HOST", cluster.manager.base_url)
    reset_default_client()
    try:
        yield cluster.node_ids()
    finally:
        reset_default_client()
    assert_nothing_left(cluster, manager)

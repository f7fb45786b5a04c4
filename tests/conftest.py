"""Shared fixtures: a real Docker Engine, and a guarantee that no test leaks a container.

Every container created while the suite runs carries ``DOCKERMAGIC_TAG`` (set
here, once per pytest process, so concurrent test runs on one engine do not
see each other's containers). The autouse fixture fails any test that leaves a
tagged container behind.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from dockermagic.cleanup import cleanup, list_containers
from dockermagic.pool import idle_containers

TAG = os.environ.setdefault("DOCKERMAGIC_TAG", f"pytest-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client for the real engine; the suite fails loudly when none answers."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:  # pragma: no cover - set-up problem
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

"""diagnose(): the one check behind `dockermagic doctor` and `%docker_status`."""

from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path

import docker

from dockermagic.diagnose import diagnose
from dockermagic.runners import runner_classes


def test_a_healthy_machine(tmp_path: Path) -> None:
    found = diagnose(log_dir=tmp_path / "logs")
    assert found.engine_error == ""
    assert found.version is not None
    assert found.version["api_version"]
    assert found.address
    assert [c.language for c in found.images] == [c.language for c in runner_classes()]
    assert all(c.present and c.image and not c.problem for c in found.images)
    assert found.containers is not None
    assert found.log_dir == tmp_path / "logs"
    assert (tmp_path / "logs").is_dir()
    assert found.log_problem == ""
    assert found.problems == []
    assert found.policy.timeout > 0


def test_the_engine_rows_name_address_and_transport() -> None:
    # Against the main engine (a local socket) or, in the TLS pass
    # (--engine=tls), a TLS engine with a client certificate.
    found = diagnose(check_log_dir=False)
    rows = dict(found.engine_rows())
    assert list(rows) == ["engine", "address", "transport"]
    assert rows["engine"].startswith("Docker ")
    assert found.transport is not None
    assert rows["address"] == found.address == found.transport.address
    if os.environ.get("DOCKER_TLS_VERIFY"):
        assert found.address == os.environ["DOCKER_HOST"]
        assert found.transport.tls
        assert found.transport.verified
        assert found.transport.ca == os.path.join(os.environ["DOCKER_CERT_PATH"], "ca.pem")
        assert rows["transport"].startswith("TLS, engine certificate verified against ")
    elif found.address.startswith("unix://"):
        assert rows["transport"] == "local socket"
        assert not found.transport.tls


def test_configured_images_and_a_bad_log_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    found = diagnose(images={"python": "dockermagic/no-such:image"}, log_dir=blocker / "logs")
    python = next(c for c in found.images if c.language == "python")
    assert (python.image, python.present) == ("dockermagic/no-such:image", False)
    assert "Cannot write logs" in found.log_problem
    assert len(found.problems) == 2


def test_an_engine_that_does_not_answer_is_part_of_the_answer(tmp_path: Path) -> None:
    # A fixed API version: the constructor would otherwise ask the engine.
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    with warnings.catch_warnings():
        # docker-py leaves the socket of a failed connect for the collector.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            found = diagnose(client=client, check_log_dir=False)
        finally:
            client.close()
            del client
            gc.collect()
    assert found.version is None
    assert "Cannot reach the Docker Engine" in found.engine_error
    assert all(c.present is None for c in found.images)
    assert found.containers is None
    assert found.problems[0].startswith("engine: ")
    assert not (tmp_path / "logs").exists()

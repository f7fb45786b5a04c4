"""A gateway holds whichever engine its ``DOCKER_HOST`` names.

No ``gateway_server`` mark, on purpose: this file runs in the main pass (the
main engine), in the TLS pass (a throw-away engine reached over verified TLS)
and in the Podman pass (a throw-away Podman service), each time with a
``dockermagic gateway serve`` subprocess started from that pass's
environment. The containers are looked for on that pass's engine, so a
gateway that fell back to another engine fails here. (A gateway in front of
a Swarm is tests/integration/test_gateway_swarm.py, in the swarm pass.)
"""

from __future__ import annotations

from pathlib import Path

import docker

from dockermagic.gateway.audit import read_audit
from dockermagic.gateway.client import GatewayBackend
from dockermagic.runners import JavaScriptDockerRunner, PythonDockerRunner
from dockermagic.sessions import Session
from tests.gateway import GatewayProcess, gateway_containers


def test_a_gateway_holds_the_engine_of_this_pass(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    with GatewayProcess(tmp_path / "gateway") as gateway:
        alice = GatewayBackend(gateway.url, gateway.token("alice"))
        # One-shot runs, streamed, with a display.
        streamed: list[tuple[str, str]] = []
        result = PythonDockerRunner(gateway=alice).run(
            "print('out', flush=True)\ndisplay({'text/plain': 'shown'}, raw=True)\n",
            on_output=lambda stream, text: streamed.append((stream, text)),
        )
        assert (result.status, result.stdout) == ("ok", "out\n"), result.stderr
        assert streamed == [("stdout", "out\n")]
        assert [d["text/plain"] for d in result.displays] == ["shown"]
        js = JavaScriptDockerRunner(gateway=alice).run("console.log(6 * 7)")
        assert (js.status, js.stdout) == ("ok", "42\n"), js.stderr
        # A session keeps its state, in a container on this pass's engine.
        with Session("held", PythonDockerRunner(gateway=alice)) as session:
            assert session.run("x = 41").ok
            assert session.run("print(x + 1)").stdout == "42\n"
            assert session.container_name in gateway_containers(docker_client, "alice")
        records = list(read_audit(str(gateway.audit_dir)))
    assert [(r["kind"], r["language"], r["status"]) for r in records] == [
        ("run", "python", "ok"),
        ("run", "javascript", "ok"),
        ("cell", "python", "ok"),
        ("cell", "python", "ok"),
    ]
    assert all(r["user"] == "alice" and r["image_digest"].startswith("sha256:") for r in records)
    # The gateway's stop ended everything it made on this engine.
    assert not gateway_containers(docker_client)

"""Per-run latency by transport: one engine reached four ways.

Usage: ``.venv/bin/python benchmarks/remote.py [--runs N]`` (root; needs dockerd,
ip, openssl, ssh, ssh-keygen, /usr/sbin/sshd and paramiko for the last row).

A throw-away engine (tests/engines.py) with TLS and a throw-away sshd in front
of it, both on 127.0.0.1, so every row talks to the same engine and only the
transport differs. Each row is ``PythonDockerRunner().run("print(6*7)")`` in a
fresh container (no pool), after one warm-up run:

* ``unix socket``: the engine's own socket, the local baseline;
* ``tcp + TLS``: ``DOCKER_HOST=tcp://127.0.0.1:PORT`` with ``--tlsverify`` and
  ``REQUESTS_CA_BUNDLE`` set to another CA;
* ``ssh, one connection``: ``ssh://`` through dockermagic's tunnel (one
  OpenSSH master connection forwarding the engine's socket);
* ``ssh, channel per connection``: docker-py's paramiko transport, which runs
  ``docker system dial-stdio`` in a new SSH channel for every HTTP connection.

``connect`` is the time to build the client (TLS handshake and version
question, SSH login, forward). Loopback: a real remote host adds its round
trips to every request, which makes the differences larger, not smaller.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests.certs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dockermagic import PythonDockerRunner
from dockermagic.engine import connect
from tests.engines import ExtraEngine, SSHServer, missing_prerequisites

IMAGE = "dockermagic/python:offline"


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def row(label: str, runs: int, **connect_options: str) -> None:
    started = time.perf_counter()
    client = connect(**connect_options)
    connected = time.perf_counter() - started
    try:
        runner = PythonDockerRunner(client=client, image=IMAGE)
        assert runner.run("print(6*7)").stdout == "42\n"  # warm-up
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            result = runner.run("print(6*7)")
            samples.append(time.perf_counter() - t0)
            assert result.stdout == "42\n", result
    finally:
        client.close()
    samples.sort()
    p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
    print(
        f"{label:<30} {connected:>8.2f} s {statistics.median(samples):>9.3f} s "
        f"{p90:>9.3f} s {runs:>5}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--channel-runs", type=int, default=5, help="runs of the slow paramiko row")
    args = parser.parse_args()
    missing = missing_prerequisites(tls=True, ssh=True)
    if missing:
        sys.exit(f"this benchmark needs {', '.join(missing)}")

    print(f"{'transport':<30} {'connect':>10} {'median':>11} {'p90':>11} {'runs':>5}")
    with ExtraEngine(images=(IMAGE,), tls=True) as engine, SSHServer(engine.socket_path) as sshd:
        quiet = {"DOCKER_TLS_VERIFY": None, "DOCKER_CERT_PATH": None}
        with environment(DOCKER_HOST=engine.base_url, **quiet):
            row("unix socket", args.runs)
        tls = engine.tls_env()
        bundle = requests.certs.where()
        with environment(**tls, REQUESTS_CA_BUNDLE=bundle, CURL_CA_BUNDLE=bundle):
            row("tcp + TLS", args.runs)
        with environment(
            DOCKER_HOST=sshd.url, DOCKERMAGIC_SSH_CONFIG=str(sshd.ssh_config), **quiet
        ):
            row("ssh, one connection", args.runs)
            with environment(HOME=str(sshd.home)), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # paramiko's cipher deprecations
                try:
                    import paramiko  # noqa: F401
                except ImportError:
                    print("ssh, channel per connection    (needs paramiko: dockermagic[ssh])")
                else:
                    row("ssh, channel per connection", args.channel_runs, ssh="channels")


if __name__ == "__main__":
    main()

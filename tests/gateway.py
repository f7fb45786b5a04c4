"""A real gateway for tests: ``dockermagic gateway serve`` as a subprocess on 127.0.0.1.

It holds the engine the test process would use (the main one, unless its
``environment`` names another: a Swarm manager), listens on a
port the system picks, and inherits ``DOCKERMAGIC_TAG``, so the leftover
check of tests/conftest.py sees its containers. Its warm pool is off: idle
containers of another process would look like leftovers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker

from dockermagic.cleanup import list_containers
from dockermagic.labels import GATEWAY_USER

ROOT = Path(__file__).resolve().parents[1]


def serve_command(config_path: Path) -> list[str]:
    """``dockermagic gateway serve --config PATH`` with this test run's Python."""
    return [sys.executable, "-m", "dockermagic", "gateway", "serve", "--config", str(config_path)]


#: Users of the test gateway: name -> (token, role, network).
USERS = {
    "teacher": ("teacher-token-0123456789abcdef", "teacher", False),
    "alice": ("alice-token-0123456789abcdef", "student", False),
    "bob": ("bob-token-0123456789abcdef", "student", False),
    "carol": ("carol-token-0123456789abcdef", "student", True),
}

#: A ceiling roomy enough for the integration suites run through the gateway.
SUITE_CEILING: dict[str, Any] = {
    "timeout": 60,
    "memory": "1g",
    "cpus": 2,
    "output_limit": "8m",
    "copy_limit": "64m",
}


class GatewayProcess:
    """One ``dockermagic gateway serve`` subprocess.

    Args:
        folder: Where its configuration and audit log go.
        ceiling: The policy ceiling.
        quotas: Per-user quotas.
        environment: Variables set for it on top of the test process's (a
            ``DOCKER_HOST``: the engine it holds).
        extra: Further configuration keys (``capacity``, ``idle_timeout``...).
    """

    def __init__(
        self,
        folder: Path,
        *,
        ceiling: Mapping[str, Any] | None = None,
        quotas: Mapping[str, Any] | None = None,
        environment: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.folder = folder
        self.environment = dict(environment or {})
        self.audit_dir = folder / "audit"
        self.config_path = folder / "gateway.json"
        config = {
            "host": "127.0.0.1",
            "port": 0,
            "audit_dir": str(self.audit_dir),
            "pool_size": 0,
            "users": {
                name: {"token": token, "role": role, "network": network}
                for name, (token, role, network) in USERS.items()
            },
            "ceiling": dict(SUITE_CEILING if ceiling is None else ceiling),
            "quotas": dict(
                quotas if quotas is not None else {"runs_at_once": 8, "queued": 64, "sessions": 16}
            ),
            **extra,
        }
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config))
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        """Start it and wait until it listens.

        Returns:
            Itself.
        """
        env = dict(os.environ)
        # The gateway holds the engine; it must not be a client of a gateway.
        for key in ("DOCKERMAGIC_GATEWAY", "DOCKERMAGIC_TOKEN", "JUPYTERHUB_API_TOKEN"):
            env.pop(key, None)
        env.update(self.environment)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            serve_command(self.config_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.folder,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.process is not None
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                found = re.search(r"listening on (https?://\S+)", line)
                if found:
                    self.url = found.group(1)
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, name="gateway-output", daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError("the gateway did not start:\n" + "\n".join(self.lines))
        return self

    def token(self, user: str) -> str:
        """A user's token."""
        return USERS[user][0]

    def env(self, user: str) -> dict[str, str]:
        """The variables a client of this gateway sets, as ``user``."""
        return {"DOCKERMAGIC_GATEWAY": self.url, "DOCKERMAGIC_TOKEN": self.token(user)}

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop it the way a service manager would (SIGTERM) and wait.

        Returns:
            Its exit status.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close()
        return process.returncode

    def _close(self) -> None:
        # The reader thread ends at the pipe's end; then the pipe is closed.
        if self._reader is not None:
            self._reader.join(5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def kill(self) -> None:
        """Kill it (SIGKILL): no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll until ``predicate()`` is true or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def gateway_containers(client: docker.DockerClient, user: str | None = None) -> list[str]:
    """The names of the containers a gateway made on this engine (for ``user``, if given)."""
    # Imported here: tests/conftest.py imports this module's users.
    from tests.conftest import TAG

    return [
        c.name
        for c in list_containers(client, tag=TAG)
        if GATEWAY_USER in c.labels and (user is None or c.labels[GATEWAY_USER] == user)
    ]

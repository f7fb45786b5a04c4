"""A classroom on one server: a real JupyterHub, the gateway as its service.

JupyterHub (from PyPI) with configurable-http-proxy (from npm, ``make
hub-proxy``) on 127.0.0.1, ports the system picks, its database and cookie
secret in a temporary folder; the dummy authenticator; the local-process
spawner, whose single-user servers run as system users this test creates
(``dm-student-a-<run>``, ``dm-student-b-<run>``, and ``dm-teacher-<run>``, a Hub
admin; ``<run>`` is random, so that two runs on one machine do not share
users) and removes, even when the test fails; a killed run's users are
removed by the next run (their account names the run's process, gone).
Those users are not in the ``docker`` group, so their kernels cannot open the
Docker socket: they reach the engine only through the gateway, with the
``JUPYTERHUB_API_TOKEN`` their server gives them. The Hub starts the gateway
itself, as its managed service ``dockermagic`` (``command`` and ``url``, its
OAuth without a confirmation page, every user allowed to it): ``dockermagic
gateway serve`` with a ``hub`` configuration and no listed users, which reads
the Hub's API, its own address and its OAuth client from the ``JUPYTERHUB_*``
variables the Hub sets; the Hub's stop ends it, and it ends its containers.

Code runs in each user's own kernel, through the single-user server's REST
API and its kernel websocket, as a notebook would send it. The status page
is visited as a browser would, with a ``requests.Session`` keeping cookies:
the Hub's login form, then the service's URL through the Hub's proxy and
its OAuth redirects.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import websocket

from dockermagic.gateway.audit import read_audit
from dockermagic.labels import GATEWAY_USER, TAG
from tests.gateway import ROOT, GatewayProcess, serve_command

pytestmark = [pytest.mark.hub, pytest.mark.gateway_server, pytest.mark.timeout(420)]

#: This run's suffix of the system users' names (within Linux's 32 characters).
RUN = secrets.token_hex(3)
STUDENTS = (f"dm-student-a-{RUN}", f"dm-student-b-{RUN}")
TEACHER = f"dm-teacher-{RUN}"
USERS = (*STUDENTS, TEACHER)
#: The comment on the test's system users: which process made them.
OWNER = "dockermagic test_hub, pid "
#: The gateway's name as the Hub's service, and the path its proxy forwards to it.
SERVICE = "dockermagic"
PREFIX = f"/services/{SERVICE}/"
SOCKET = "/var/run/docker.sock"
CHP = ROOT / ".venv" / "hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"


def _proxy_command() -> str | None:
    found = os.environ.get("DOCKERMAGIC_CHP") or (str(CHP) if CHP.exists() else None)
    return found or shutil.which("configurable-http-proxy")


def _missing() -> str:
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        return "root and useradd (the students are system users)"
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "jupyterhub (pip install 'dockermagic[hub]')"
    if _proxy_command() is None:
        return "configurable-http-proxy (make hub-proxy)"
    if _student_python() is None:
        return "a Python interpreter the students may run"
    return ""


def _student_python() -> str | None:
    """An interpreter of this version that an unprivileged user may execute.

    This one, when its folders let others in; else the system's of the same
    version (the test's packages are then found through ``PYTHONPATH``: the
    same version, the same compiled modules).
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (
        sys.executable,
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ):
        real = Path(os.path.realpath(candidate))
        if real.exists() and _others_can_run(real):
            return candidate
    return None


def _others_can_run(path: Path) -> bool:
    if not path.stat().st_mode & 0o001:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in path.parents)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _remove_user(name: str) -> None:
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    # Anything still running as the user (a kernel the Hub did not stop) goes first,
    # by its process id.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
    subprocess.run(["userdel", "--remove", "--force", name], capture_output=True, check=False)


def _add_user(name: str) -> None:
    """A system user for the Hub, its account naming this process (see :func:`_remove_stale`)."""
    subprocess.run(
        [
            "useradd",
            "--create-home",
            "--shell",
            "/bin/sh",
            "--comment",
            f"{OWNER}{os.getpid()}",
            name,
        ],
        check=True,
        capture_output=True,
    )


def _remove_stale() -> None:
    """Remove the users of earlier runs that were killed (their process is gone).

    Only users this test made (their comment names its process): a run going
    on beside this one keeps its own.
    """
    for account in pwd.getpwall():
        if not (account.pw_name.startswith("dm-") and account.pw_gecos.startswith(OWNER)):
            continue
        pid = account.pw_gecos[len(OWNER) :]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove_user(account.pw_name)


class Hub:
    """A JupyterHub subprocess and what the test needs to drive it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.hub_port, self.proxy_port = _free_port(), _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"http://127.0.0.1:{self.hub_port}/hub/api"
        self.driver_token = secrets.token_hex(24)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "jupyterhub.log"

    def configure(self, gateway: ManagedGateway) -> None:
        """Write the Hub's configuration, with the gateway as its managed service."""
        folder = self.folder
        gateway_url = gateway.url
        python = _student_python()
        site = sysconfig.get_paths()["purelib"]
        # The students' servers: this checkout and the test's packages, the
        # gateway's address; their token is the one the Hub gives each server.
        environment = {
            "DOCKERMAGIC_GATEWAY": gateway_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), site]),
        }
        config = f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_port}"
c.ConfigurableHTTPProxy.command = [{_proxy_command()!r}]
c.ConfigurableHTTPProxy.auth_token = {secrets.token_hex(24)!r}
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.pid_file = "{folder}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {set(USERS)!r}
c.Authenticator.admin_users = {{{TEACHER!r}}}
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.services = [
    {{"name": {SERVICE!r}, "url": {gateway_url!r}, "command": {gateway.command()!r},
      "environment": {gateway.environment()!r}, "cwd": {str(gateway.folder)!r},
      "oauth_no_confirm": True}},
    {{"name": "test-driver", "api_token": {self.driver_token!r}}},
]
c.JupyterHub.load_roles = [
    {{"name": "test-driver", "services": ["test-driver"],
      "scopes": ["admin:users", "admin:servers", "access:servers", "tokens"]}},
    # Every user may sign in to the gateway's page (the admin may anyway).
    {{"name": "user", "scopes": ["self", "access:services!service={SERVICE}"]}},
]
"""
        (folder / "jupyterhub_config.py").write_text(config)

    def start(self, timeout: float = 90.0) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DOCKERMAGIC_G", "JUPYTERHUB_"))
        }
        env.pop("DOCKERMAGIC_TOKEN", None)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyterhub",
                    "-f",
                    str(self.folder / "jupyterhub_config.py"),
                ],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.api}/", timeout=2).ok:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"JupyterHub did not start:\n{self.log.read_text()[-4000:]}")

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.driver_token}"}
        return requests.request(method, f"{self.api}{path}", headers=headers, timeout=60, **kw)

    def start_server(self, user: str) -> None:
        answer = self.call("POST", f"/users/{user}/server")
        assert answer.status_code in (201, 202), answer.text

    def wait_ready(self, user: str, timeout: float = 150.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.call("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{user}'s server did not start:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        # SIGTERM: the Hub stops the single-user servers and its proxy (cleanup_*).
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class ManagedGateway:
    """The gateway the Hub starts: its configuration, address and audit folder.

    The Hub sets ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_SERVICE_URL`` and
    ``JUPYTERHUB_API_TOKEN``; the configuration names neither the Hub's API nor
    ``host``/``port``, so the gateway takes both from there.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.audit_dir = folder / "audit"
        self.config_path = folder / "gateway.json"
        self.url = f"http://127.0.0.1:{_free_port()}"
        config = {
            "audit_dir": str(self.audit_dir),
            # Idle warm containers of another process would look like leftovers.
            "pool_size": 0,
            # Two CPUs and two minutes: what the teaching notebooks ask for at most.
            "ceiling": {"timeout": 120, "memory": "512m", "cpus": 2},
            "quotas": {"runs_at_once": 2, "queued": 4, "sessions": 2},
            "capacity": 4,
            # No listed users: the Hub vouches for the students and the teacher.
            "hub": {"cache_seconds": 30},
        }
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config))

    def command(self) -> list[str]:
        """What the Hub runs (as itself: the Hub's user may open the socket)."""
        return serve_command(self.config_path)

    def environment(self) -> dict[str, str]:
        """What the gateway needs beyond the few variables the Hub passes on.

        This checkout; the engine the test uses; the suite's tag, so the
        leftover check sees the gateway's containers.
        """
        keep = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKERMAGIC_TAG")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return env

    def wait_listening(self, log: Path, timeout: float = 60.0) -> None:
        """Wait until the gateway answers (any status: it listens)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{self.url}/v1/info", timeout=2)
                return
            time.sleep(0.3)
        raise RuntimeError(f"the Hub's gateway did not start:\n{log.read_text()[-4000:]}")


def _gateway_containers(client: docker.DockerClient) -> list[str]:
    """This suite's containers of a gateway (any user), running or not."""
    tag = os.environ.get("DOCKERMAGIC_TAG", "")
    found = client.api.containers(all=True, filters={"label": [GATEWAY_USER, f"{TAG}={tag}"]})
    return [str(c["Id"])[:12] for c in found]


class Kernel:
    """A kernel of a user's single-user server, driven over its websocket."""

    def __init__(self, hub: Hub, user: str) -> None:
        self.hub, self.user = hub, user
        self.base = f"{hub.url}/user/{user}/api"
        self.headers = {"Authorization": f"token {hub.driver_token}"}
        answer = requests.post(
            f"{self.base}/kernels", json={"name": "python3"}, headers=self.headers, timeout=60
        )
        assert answer.status_code == 201, answer.text
        self.id = answer.json()["id"]
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{hub.port}/user/{user}/api/kernels/{self.id}/channels",
            header=[f"Authorization: token {hub.driver_token}"],
            timeout=120,
        )
        self.session = uuid.uuid4().hex

    def execute(self, code: str, timeout: float = 120.0) -> tuple[str, dict[str, Any] | None]:
        """Run code; its printed output and its error (``ename``, ``evalue``), if any."""
        msg_id = uuid.uuid4().hex
        message = {
            "header": {
                "msg_id": msg_id,
                "username": self.user,
                "session": self.session,
                "msg_type": "execute_request",
                "version": "5.3",
                "date": "",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }
        self.ws.send(json.dumps(message))
        out: list[str] = []
        error: dict[str, Any] | None = None
        idle = replied = False
        deadline = time.monotonic() + timeout
        while not (idle and replied):
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            reply = json.loads(self.ws.recv())
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = reply["header"]["msg_type"], reply["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                error = {
                    "ename": content["ename"],
                    "evalue": content["evalue"],
                    "traceback": "\n".join(content.get("traceback", [])),
                }
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
            elif kind == "execute_reply":
                replied = True
                if content["status"] == "error" and error is None:
                    error = {
                        "ename": str(content.get("ename")),
                        "evalue": str(content.get("evalue")),
                        "traceback": "\n".join(content.get("traceback", [])),
                    }
        return "".join(out), error

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        with contextlib.suppress(requests.RequestException):
            requests.delete(f"{self.base}/kernels/{self.id}", headers=self.headers, timeout=30)


@pytest.fixture(scope="module")
def classroom(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[tuple[Hub, ManagedGateway]]:
    missing = _missing()
    if missing:
        pytest.skip(f"the JupyterHub test needs {missing} (make test installs them)")
    _remove_stale()
    folder = Path(tempfile.mkdtemp(prefix="dockermagic-hub-"))
    folder.chmod(0o700)
    gateway = ManagedGateway(tmp_path_factory.mktemp("hub-gateway"))
    hub = Hub(folder)
    try:
        for name in USERS:
            _add_user(name)
        hub.configure(gateway)
        hub.start()
        gateway.wait_listening(hub.log)
        for name in USERS:
            hub.start_server(name)
        for name in USERS:
            hub.wait_ready(name)
        yield hub, gateway
        hub.stop()
        # The Hub's stop ended its gateway, and the gateway its containers.
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{gateway.url}/v1/info", timeout=2)
            pytest.fail("the gateway still answers after the Hub's stop")
        assert _gateway_containers(docker_client) == []
    finally:
        hub.stop()
        for name in USERS:
            _remove_user(name)
        shutil.rmtree(folder, ignore_errors=True)


SETUP = "%load_ext dockermagic"
#: Who the kernel runs as, whether it can open the engine's socket, which token it has.
PROBE = f"""
import getpass, os, socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({SOCKET!r}); print('socket reachable')
except OSError as exc:
    print('socket refused', type(exc).__name__)
print(getpass.getuser(), 'token' if os.environ.get('JUPYTERHUB_API_TOKEN') else '-')
print('docker-token' if os.environ.get('DOCKERMAGIC_TOKEN') else 'hub-token-only')
"""
#: Who the gateway says the kernel's user is, and the sessions they see.
WHO = """
import json
from dockermagic.gateway.client import gateway_backend
from dockermagic.settings import current_settings
s = current_settings(); gw = gateway_backend(s.gateway, s.token)
info = gw.json('GET', '/info'); sessions = gw.json('GET', '/sessions')
print(info['user'], info['teacher'], json.dumps(sorted([x['user'], x['id']] for x in sessions)))
"""


def test_a_classroom_through_the_hub(classroom: tuple[Hub, ManagedGateway]) -> None:
    hub, gateway = classroom
    kernels = {name: Kernel(hub, name) for name in USERS}
    try:
        for name, kernel in kernels.items():
            out, error = kernel.execute(PROBE)
            assert error is None, error
            # The kernel runs as the user and cannot open the engine's socket.
            assert "socket refused PermissionError" in out, out
            assert f"{name} token" in out
            assert "hub-token-only" in out
            out, error = kernel.execute(SETUP)
            assert error is None, error

        a, b, teacher = (kernels[n] for n in USERS)
        # One-shot runs and a session per student, through the gateway.
        out, error = a.execute("%%docker_python\nprint('hello from', 6 * 7)")
        assert error is None, error
        assert "hello from 42" in out
        out, error = a.execute("%%docker_python --session s1\nsecret = 'a-only'\nprint('set')")
        assert (error, "set" in out) == (None, True), (error, out)
        out, error = b.execute(
            "%%docker_python --session s1\nprint('b sees', globals().get('secret'))"
        )
        assert error is None, error
        assert "b sees None" in out
        out, error = a.execute("%%docker_python --session s1\nprint(secret)")
        assert (error, "a-only" in out) == (None, True), (error, out)

        # Who the gateway says each is: the Hub's names; the admin is a teacher.
        out, error = a.execute(WHO)
        assert error is None, error
        student_a, student_b = STUDENTS
        assert out.startswith(f'{student_a} False [["{student_a}",'), out
        assert student_b not in out
        out, error = teacher.execute(WHO)
        assert error is None, error
        assert out.startswith(f"{TEACHER} True"), out
        listed = json.loads(out.split(" ", 2)[2])  # the teacher sees both students' sessions
        assert sorted(user for user, _ in listed) == [student_a, student_b], listed
        b_session = next(sid for user, sid in listed if user == student_b)

        # Student A cannot see, interrupt or stop B's session: as if it did not exist.
        out, error = a.execute(
            "from dockermagic.gateway.client import NotFoundError\n"
            f"for method, path in [('GET', '/sessions/{b_session}'),\n"
            f"                     ('POST', '/sessions/{b_session}/interrupt'),\n"
            f"                     ('DELETE', '/sessions/{b_session}')]:\n"
            "    try:\n"
            "        gw.json(method, path); print('reached', method)\n"
            "    except NotFoundError as exc:\n"
            "        print('not found', method)\n"
        )
        assert error is None, error
        assert out.split("\n")[:3] == ["not found GET", "not found POST", "not found DELETE"], out
        out, error = b.execute("%%docker_python --session s1\nx = 1\nprint('b still', x)")
        assert (error, "b still 1" in out) == (None, True), (error, out)

        # Over the ceiling: a clear error naming the limit, nothing run.
        out, error = b.execute("%%docker_python --memory 1g\nprint('too big')")
        assert error is not None
        assert "too big" not in out
        # The magic reports it as a bad option (UsageError), in the gateway's words.
        assert error["ename"] == "UsageError", error
        assert error["evalue"].startswith("The gateway's limit on memory is 512 MiB"), error

        # Stop the sessions (the magic's own way) before the audit is read.
        for kernel in (a, b):
            out, error = kernel.execute("%docker_session --stop s1")
            assert error is None, (error, out)
    finally:
        for kernel in kernels.values():
            kernel.close()

    records = list(read_audit(str(gateway.audit_dir)))
    by_user: dict[str, list[str]] = {}
    for record in records:
        by_user.setdefault(record["user"], []).append(
            f"{record['kind']}:{record.get('session') or '-'}:{record['status']}"
        )
    # One record per run or cell, under the Hub's user names; the refused one has none.
    assert by_user == {
        STUDENTS[0]: ["run:-:ok", "cell:s1:ok", "cell:s1:ok"],
        STUDENTS[1]: ["cell:s1:ok", "cell:s1:ok"],
    }, by_user


#: Every teaching notebook, in one nbval run (one pytest start-up, not eight).
NOTEBOOKS = tuple(sorted(p.name for p in (ROOT / "notebooks").glob("0[0-7]-*.ipynb")))
#: nbval in the student's kernel: pytest as a child of that kernel, so its own
#: kernel runs as the student, with the student's Hub token and no socket.
NBVAL = """
import subprocess, sys
run = subprocess.run(
    [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q",
     "--nbval", "--nbval-sanitize-with", "nbval-sanitize.cfg", *{notebooks!r}],
    cwd={folder!r}, capture_output=True, text=True, timeout={timeout},
)
print("exit", run.returncode)
print(run.stdout[-6000:], run.stderr[-2000:])
"""
NBVAL_TIMEOUT = 300
#: Stop whatever sessions the student's notebook left (its kernel is gone).
STOP_SESSIONS = (
    WHO
    + """
for _, sid in json.loads(json.dumps(sorted([x['user'], x['id']] for x in sessions))):
    gw.json('DELETE', f'/sessions/{sid}')
"""
)


def test_the_teaching_notebooks_under_nbval_in_a_students_kernel(
    classroom: tuple[Hub, ManagedGateway],
) -> None:
    hub, gateway = classroom
    student = STUDENTS[0]
    account = pwd.getpwnam(student)
    folder = Path(account.pw_dir) / "course"
    notebooks = ROOT / "notebooks"
    shutil.copytree(notebooks / "exercise_checks", folder / "exercise_checks")
    # The scripts the compressor notebook and the assignment's panel run, at ../scripts.
    shutil.copytree(ROOT / "scripts", Path(account.pw_dir) / "scripts")
    for name in (*NOTEBOOKS, "nbval-sanitize.cfg"):
        shutil.copy(notebooks / name, folder / name)
    (Path(account.pw_dir) / "logs").mkdir(exist_ok=True)  # the notebook's %env log folder
    home = Path(account.pw_dir)
    for path in [home / "logs", folder, *folder.rglob("*"), *(home / "scripts").rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)
    code = [
        "".join(c["source"])
        for name in NOTEBOOKS
        for c in json.loads((notebooks / name).read_text())["cells"]
        if c["cell_type"] == "code"
    ]
    before = len(list(read_audit(str(gateway.audit_dir), user=student)))
    kernel = Kernel(hub, student)
    try:
        started = time.monotonic()
        command = NBVAL.format(notebooks=NOTEBOOKS, folder=str(folder), timeout=NBVAL_TIMEOUT)
        out, error = kernel.execute(command, NBVAL_TIMEOUT + 60)
        print(f"nbval of {len(NOTEBOOKS)} notebooks: {time.monotonic() - started:.1f} s")
        assert error is None, error
        assert out.startswith("exit 0"), out
        # One nbval item per code cell of every notebook, each with its stored outputs.
        assert f"{len(code)} passed" in out, out
        out, error = kernel.execute(STOP_SESSIONS)
        assert error is None, error
    finally:
        kernel.close()
    # The notebook's cells ran through the gateway, as the student: a record each.
    ran = len(list(read_audit(str(gateway.audit_dir), user=student))) - before
    assert ran >= sum(c.startswith(("%%docker_python", "%%docker_js")) for c in code), ran


#: Eight runs at once from one kernel: 2 run at a time, 4 may wait, the rest are refused.
BURST = """
import concurrent.futures
from dockermagic import get_runner
from dockermagic.errors import QuotaExceededError
runner = get_runner("python")
def one(_):
    try:
        return runner.run("import time; time.sleep(1.5); print('ok')").stdout.strip()
    except QuotaExceededError as exc:
        return exc.quota
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    print(sorted(pool.map(one, range(8))))
"""


def test_quotas_hold_per_hub_user_under_a_burst(
    classroom: tuple[Hub, ManagedGateway], docker_client: docker.DockerClient
) -> None:
    hub, _ = classroom
    student = STUDENTS[1]
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            # The raw list: no inspection of each (one may be gone by then).
            mine = docker_client.api.containers(filters={"label": f"{GATEWAY_USER}={student}"})
            peak = max(peak, len(mine))
            time.sleep(0.05)

    kernel = Kernel(hub, student)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out, error = kernel.execute(BURST)
    finally:
        stop.set()
        watcher.join()
        kernel.close()
    assert error is None, error
    # runs_at_once 2 and queued 4 for this Hub user: of 8 sent together, 6 run.
    expected = sorted(["ok"] * 6 + ["programs waiting"] * 2)
    assert out.strip() == repr(expected), out
    assert 1 <= peak <= 2, peak


def _signed_in(hub: Hub, name: str) -> requests.Session:
    """A browser (a cookie-keeping session) signed in to the Hub as ``name``."""
    browser = requests.Session()
    form = browser.get(f"{hub.url}/hub/login", timeout=30)
    assert form.status_code == 200, form.text
    found = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
    assert found is not None, form.text
    # The dummy authenticator takes any password; the form's _xsrf and its cookie go along.
    answer = browser.post(
        f"{hub.url}/hub/login",
        data={"username": name, "password": "any", "_xsrf": html.unescape(found.group(1))},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, (answer.status_code, answer.text[-2000:])
    return browser


def _user_token(hub: Hub, name: str) -> str:
    """A new Hub API token of a user (as one made on the Hub's token page)."""
    answer = hub.call(
        "POST", f"/users/{name}/tokens", json={"note": "page test", "expires_in": 600}
    )
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


#: Where a service-page visit ends, and the page's rows of a user's session.
def _session_row(user: str, session: str) -> str:
    return f"<tr><td>{user}</td><td>{session}</td><td>python</td>"


def test_the_status_page_behind_the_hubs_login(classroom: tuple[Hub, ManagedGateway]) -> None:
    hub, gateway = classroom
    service = f"{hub.url}{PREFIX}"
    # A session per student, opened with their own Hub tokens through the gateway's API.
    tokens = {name: _user_token(hub, name) for name in STUDENTS}
    opened: dict[str, str] = {}
    try:
        for name, token in tokens.items():
            answer = requests.post(
                f"{gateway.url}/v1/sessions",
                json={"name": "status-page", "language": "python"},
                headers={"Authorization": f"token {token}"},
                timeout=60,
            )
            assert answer.status_code == 201, answer.text
            opened[name] = answer.json()["id"]

        # The teacher: the Hub's login, then the service through the Hub's OAuth.
        teacher = _signed_in(hub, TEACHER)
        page = teacher.get(service, timeout=60)
        assert page.status_code == 200, page.text
        assert page.url == service
        hops = [urllib.parse.urlsplit(r.headers["Location"]).path for r in page.history]
        assert hops == ["/hub/api/oauth2/authorize", f"{PREFIX}oauth_callback", PREFIX], hops
        assert page.headers["Content-Type"].startswith("text/html")
        assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert f'<strong id="user">{TEACHER}</strong> (teacher' in page.text
        for name in STUDENTS:
            assert _session_row(name, "status-page") in page.text, page.text
        # The session cookie: HttpOnly, SameSite=Lax, the service's path, not the name.
        set_cookie = page.history[2].headers["Set-Cookie"]  # the callback's answer
        assert f"service-{SERVICE}=" in set_cookie, set_cookie
        for attribute in ("HttpOnly", "SameSite=Lax", f"Path={PREFIX}"):
            assert attribute in set_cookie, set_cookie
        assert "Secure" not in set_cookie, set_cookie  # plain http here
        cookie = teacher.cookies.get(f"service-{SERVICE}", path=PREFIX)
        assert cookie
        assert TEACHER not in cookie
        # The prefix without its slash leads to the page.
        bare = teacher.get(service.rstrip("/"), timeout=30, allow_redirects=False)
        assert (bare.status_code, bare.headers.get("Location")) == (302, PREFIX)
        # Signed in now: the page again without a hop to the Hub.
        again = teacher.get(service, timeout=30, allow_redirects=False)
        assert again.status_code == 200
        assert TEACHER in again.text

        # A student sees their own session, and nothing of the other's.
        student_a, student_b = STUDENTS
        page = _signed_in(hub, student_a).get(service, timeout=60)
        assert page.status_code == 200, page.text
        assert f'<strong id="user">{student_a}</strong> (your own)' in page.text
        assert _session_row(student_a, "status-page") in page.text, page.text
        for other in (student_b, TEACHER):
            assert other not in page.text, page.text

        # No cookie: to the Hub's authorize URL, and (not signed in there) its login page.
        stranger = requests.Session()
        first = stranger.get(service, timeout=30, allow_redirects=False)
        assert first.status_code == 302
        assert urllib.parse.urlsplit(first.headers["Location"]).path == "/hub/api/oauth2/authorize"
        landing = stranger.get(service, timeout=60)
        assert urllib.parse.urlsplit(landing.url).path == "/hub/login", landing.url
        assert TEACHER not in landing.text
        assert "status-page" not in landing.text

        # Forged cookies are not a sign-in: garbage, a bad signature, a bare user
        # token, a bare user name; each is sent to the Hub's sign-in again.
        for forged in ("garbage", f"{tokens[student_a]}.{'0' * 64}", tokens[student_a], TEACHER):
            visitor = requests.Session()
            visitor.cookies.set(f"service-{SERVICE}", forged, path=PREFIX)
            answer = visitor.get(service, timeout=30, allow_redirects=False)
            assert answer.status_code == 302, (forged, answer.status_code, answer.text)
            assert "/hub/api/oauth2/authorize" in answer.headers["Location"]

        # The callback checks the state: the Hub's code with a state of another browser
        # (none here: a login CSRF) or a wrong one is refused, the right one then works.
        browser = _signed_in(hub, student_b)
        start = browser.get(service, timeout=30, allow_redirects=False)
        authorize = browser.get(
            urllib.parse.urljoin(service, start.headers["Location"]),
            timeout=30,
            allow_redirects=False,
        )
        assert authorize.status_code == 302, authorize.text
        callback = urllib.parse.urljoin(service, authorize.headers["Location"])
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
        assert set(query) == {"code", "state"}, query
        base = callback.split("?", 1)[0]
        assert base == f"{service}oauth_callback"
        elsewhere = requests.get(callback, timeout=30, allow_redirects=False)
        assert elsewhere.status_code == 403, elsewhere.text
        assert "state does not match" in elsewhere.text
        wrong = dict(query, state=query["state"] + "x")
        refused = browser.get(base, params=wrong, timeout=30, allow_redirects=False)
        assert refused.status_code == 403, refused.text
        assert "state does not match" in refused.text
        assert not browser.cookies.get(f"service-{SERVICE}", path=PREFIX)
        done = browser.get(callback, timeout=30, allow_redirects=False)
        assert (done.status_code, done.headers.get("Location")) == (302, PREFIX), done.text
        page = browser.get(service, timeout=30, allow_redirects=False)
        assert page.status_code == 200
        assert _session_row(student_b, "status-page") in page.text
        # A state is good once: the same callback again is refused.
        replay = browser.get(callback, timeout=30, allow_redirects=False)
        assert replay.status_code == 403, replay.text
    finally:
        for name, sid in opened.items():
            requests.delete(
                f"{gateway.url}/v1/sessions/{sid}",
                headers={"Authorization": f"token {tokens[name]}"},
                timeout=60,
            )


def test_a_hub_that_does_not_answer_is_not_a_refused_token(tmp_path: Path) -> None:
    # No Hub on this port: the gateway says so (503), and its listed users still work.
    config = {"api_url": f"http://127.0.0.1:{_free_port()}/hub/api"}
    with GatewayProcess(tmp_path, hub=config) as gateway:
        answer = requests.get(
            f"{gateway.url}/v1/info", headers={"Authorization": "token some-hub-token"}, timeout=30
        )
        assert answer.status_code == 503, answer.text
        assert "did not say who this token belongs to" in answer.json()["error"]["message"]
        answer = requests.get(
            f"{gateway.url}/v1/info",
            headers={"Authorization": f"token {gateway.token('alice')}"},
            timeout=30,
        )
        assert answer.json()["user"] == "alice"

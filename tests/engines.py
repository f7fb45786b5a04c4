"""Throw-away Docker engines for tests: a second ``dockerd`` beside the main one.

:class:`ExtraEngine` starts an engine that shares nothing writable with the
main engine (``/var/run/docker.sock``): its own data root, exec root, pid
file, socket, cgroup parent, containerd namespace and daemon configuration,
all under a short temporary directory (``/tmp/dmk-<8 hex>``), and its own
network bridge (``dmk<8 hex>``) in a free private ``10.x.y.0/24``.

Never start an extra engine with ``--bridge=none`` in the host's network
namespace: dockerd 20.10 then deletes the host's ``docker0`` at start-up and
breaks the main engine (pitfall 23). An extra engine always gets ``-b`` with a
bridge of its own.

Optionally the engine also listens on ``tcp://127.0.0.1:<free port>`` with
``--tlsverify`` and certificates made with ``openssl``; its TLS clients ignore
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (pitfall 24, docker-py #2433).

Images are copied from the main engine with the SDK only (``save`` streamed
into ``load``). :meth:`ExtraEngine.stop` (also run by ``__exit__``, by a failed
start and at interpreter exit) removes the engine's containers, stops only the
process it started, and removes every trace: mounts, bridge, cgroups, files.

Needs root, ``dockerd``, ``ip`` (iproute2) and, for TLS, ``openssl``. Usage::

    with extra_engine(images=("dockermagic/python:offline",)) as engine:
        client = engine.client()
        ...
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import itertools
import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import docker.constants
import docker.errors
import docker.tls
import requests.exceptions

__all__ = [
    "EngineError",
    "ExtraEngine",
    "NetnsEngine",
    "PodmanService",
    "SSHServer",
    "SwarmCluster",
    "copy_images",
    "extra_engine",
    "missing_podman",
    "missing_prerequisites",
    "reclaim_stale_clusters",
    "ssh_server",
]

logger = logging.getLogger(__name__)

#: Seconds a new engine has to answer ``ping``.
READY_TIMEOUT = 60.0
#: Seconds between SIGTERM and SIGKILL when stopping an engine.
STOP_TIMEOUT = 15.0
#: Where engines live; unix socket paths must stay under 108 bytes.
BASE_DIR = Path("/tmp")
#: Subnets tried for an engine's bridge: 10.200.0.0/24 ... 10.254.255.0/24.
SUBNET_SECOND_OCTETS = range(200, 255)
#: Errors meaning "the engine did not answer".
UNREACHABLE: tuple[type[BaseException], ...] = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    OSError,
)

#: The OpenSSH server, not on the PATH of every user.
SSHD = "/usr/sbin/sshd"

_MNT_DETACH = 2
#: Subnets handed out in this process and not yet released.
_claimed_subnets: set[ipaddress.IPv4Network] = set()


class EngineError(RuntimeError):
    """An extra engine could not be started or used."""


def missing_prerequisites(*, tls: bool = False, ssh: bool = False) -> list[str]:
    """What this machine lacks to start an extra engine (empty when nothing)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    tools = ["dockerd", "ip"] + (["openssl"] if tls else [])
    tools += ["ssh", "ssh-keygen"] if ssh else []
    missing += [tool for tool in tools if shutil.which(tool) is None]
    if ssh and not Path(SSHD).exists():
        missing.append(f"{SSHD} (Debian's openssh-server)")
    return missing


def extra_engine(**kwargs: Any) -> ExtraEngine:
    """An :class:`ExtraEngine` for a test; skips the test where none can start.

    Use as ``with extra_engine(images=(...,)) as engine:``.
    """
    import pytest

    missing = missing_prerequisites(tls=bool(kwargs.get("tls")))
    if missing:
        pytest.skip(f"a throw-away Docker engine needs {', '.join(missing)}")
    return ExtraEngine(**kwargs)


def ssh_server(engine: ExtraEngine) -> SSHServer:
    """An :class:`SSHServer` in front of an engine; skips the test where none can start."""
    import pytest

    missing = missing_prerequisites(ssh=True)
    if missing:
        pytest.skip(f"a throw-away sshd needs {', '.join(missing)}")
    return SSHServer(engine.socket_path)


def _run(*argv: str, cwd: Path | None = None) -> str:
    """Run a command, raising EngineError with its output when it fails."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EngineError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks of the host's addresses and routes (to avoid clashes)."""
    used = []
    for line in _run("ip", "-o", "-4", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            used.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    for line in _run("ip", "-4", "route", "show", "table", "all").splitlines():
        with contextlib.suppress(ValueError, IndexError):
            target = line.split()[0]
            if target in ("default", "broadcast", "local", "unreachable", "blackhole"):
                target = line.split()[1]
            used.append(ipaddress.IPv4Network(target, strict=False))
    return [net for net in used if net.prefixlen > 0]


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks() + list(_claimed_subnets)
    for _ in range(200):
        second = secrets.choice(SUBNET_SECOND_OCTETS)
        candidate = ipaddress.IPv4Network(f"10.{second}.{secrets.randbelow(256)}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            _claimed_subnets.add(candidate)
            return candidate
    raise EngineError("no free 10.x.y.0/24 subnet for an extra engine's bridge")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or under root in this mount namespace, deepest first."""
    prefix = f"{root}/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        # mountinfo escapes space, tab, newline and backslash as octal.
        for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
            point = point.replace(code, char)
        if point == str(root) or point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount(point: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(point), _MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        logger.warning("could not unmount %s: %s", point, os.strerror(errno))


def make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate.

    The file names are those ``DOCKER_CERT_PATH`` expects for the client
    (``ca.pem``, ``cert.pem``, ``key.pem``), and ``server-cert.pem`` and
    ``server-key.pem`` for the engine.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    days = "2"
    _run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", days,
        "-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=dockermagic test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    common = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    (directory / "server.cnf").write_text(
        common + "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    (directory / "client.cnf").write_text(
        common + "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    for role, cert, key, subject in (
        ("server", "server-cert.pem", "server-key.pem", "/CN=localhost"),
        ("client", "cert.pem", "key.pem", "/CN=dockermagic test client"),
    ):
        _run(
            "openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
            "-out", f"{role}.csr", "-subj", subject,
            cwd=directory,
        )  # fmt: skip
        _run(
            "openssl", "x509", "-req", "-sha256", "-days", days, "-in", f"{role}.csr",
            "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-extfile", f"{role}.cnf", "-out", cert,
            cwd=directory,
        )  # fmt: skip
    for path in directory.glob("*key.pem"):
        path.chmod(0o600)


def copy_images(
    source: docker.DockerClient,
    engines: Sequence[ExtraEngine | PodmanService],
    names: Sequence[str],
) -> None:
    """Copy images into running engines with the SDK: each image saved once, loaded by all.

    One ``save`` stream is handed chunk by chunk to one ``load`` per engine,
    at the same time (a 1 GB image is read once, and nothing goes to disk).

    Args:
        source: The engine the images come from.
        engines: Started engines to load them into (each gets ``image:<name>``
            in its :attr:`~ExtraEngine.timings`).
        names: Image names, as the source knows them.

    Raises:
        EngineError: A load failed, or an image is missing afterwards.
    """
    targets = [engine.client(timeout=300, tls=False) for engine in engines]
    try:
        for name in names:
            _copy_image(source, engines, targets, name)
    finally:
        for target in targets:
            target.close()


def _copy_image(
    source: docker.DockerClient,
    engines: Sequence[ExtraEngine | PodmanService],
    targets: Sequence[docker.DockerClient],
    name: str,
) -> None:
    t0 = time.monotonic()
    image = source.images.get(name)
    # The tag to keep in the archive: save(named=False) would drop it.
    candidates = [name, f"{name}:latest"]
    tag = next((t for t in candidates if t in image.tags), image.tags[0] if image.tags else "")
    feeds: list[queue.Queue[bytes | None]] = [queue.Queue(maxsize=32) for _ in targets]
    errors: dict[int, str] = {}

    def load(index: int) -> None:
        ended = False

        def chunks() -> Iterator[bytes]:
            nonlocal ended
            while (chunk := feeds[index].get()) is not None:
                yield chunk
            ended = True

        try:
            for message in targets[index].api.load_image(chunks(), quiet=True):  # type: ignore[no-untyped-call]
                if "error" in message:
                    errors[index] = str(message["error"])
        except Exception as exc:
            errors[index] = f"{type(exc).__name__}: {exc}"
        finally:
            # A failed load stops reading: drain its feed so the saver never blocks.
            while not ended and feeds[index].get() is not None:
                pass

    loaders = [
        threading.Thread(target=load, args=(i,), name=f"load-{i}", daemon=True)
        for i in range(len(targets))
    ]
    for loader in loaders:
        loader.start()
    copied = 0
    try:
        for chunk in image.save(named=tag or False):
            copied += len(chunk)
            for feed in feeds:
                feed.put(chunk)
    finally:
        for feed in feeds:
            feed.put(None)
        for loader in loaders:
            loader.join()
    seconds = time.monotonic() - t0
    for index, (engine, target) in enumerate(zip(engines, targets, strict=True)):
        if index in errors:
            raise EngineError(f"loading {name} into {engine.dir} failed: {errors[index]}")
        # By name: Podman gives a loaded image an id of its own (it keeps the
        # layers, not the configuration's digest) and a localhost/ prefix.
        try:
            target.images.get(name)
        except docker.errors.ImageNotFound:
            raise EngineError(f"{name} is not in {engine.dir} after loading it") from None
        engine.timings[f"image:{name}"] = seconds
    logger.info(
        "copied %s (%.0f MB) into %d engine(s) in %.2f s",
        name,
        copied / 2**20,
        len(engines),
        seconds,
    )


class _APIProcess:
    """A throw-away process serving the Docker API (``dockerd``, Podman's service).

    What both share: the log's tail, the wait for the first answer, the
    images copied in, and the steps of the clean-up (each one logged and
    skipped when it fails, so that the next still runs). A subclass sets
    ``program`` and ``label`` and the attributes read here.
    """

    #: The program's name in error messages.
    program = "dockerd"
    #: What log lines call it.
    label = "engine"
    dir: Path
    _proc: subprocess.Popen[bytes] | None
    _stopped: bool
    _api_version: str | None
    _clients: list[docker.DockerClient]
    images: tuple[str, ...]
    source: docker.DockerClient | None
    ready_timeout: float
    timings: dict[str, float]

    @property
    def running(self) -> bool:
        """Whether the process this object started is still alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    @property
    def socket_path(self) -> Path:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the program's log ('' when there is none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, deadline: float) -> str:
        assert self._proc is not None
        probe = docker.DockerClient(
            base_url=self.base_url, version=docker.constants.MINIMUM_DOCKER_API_VERSION, timeout=5
        )
        try:
            while True:
                if self._proc.poll() is not None:
                    raise EngineError(
                        f"{self.program} exited with {self._proc.returncode} while starting; "
                        f"its log ({self.log_path}) ends:\n{self.log_tail()}"
                    )
                if self.socket_path.exists():
                    with contextlib.suppress(*UNREACHABLE):
                        probe.ping()
                        version: str = probe.version(api_version=False)["ApiVersion"]
                        return version
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"{self.program} did not answer within {self.ready_timeout:.0f} s; "
                        f"its log ({self.log_path}) ends:\n{self.log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def _copy_images(self) -> None:
        if not self.images:
            return
        t0 = time.monotonic()
        source = self.source or docker.from_env(timeout=300)
        try:
            copy_images(source, [self], self.images)
        finally:
            if self.source is None:
                source.close()
        self.timings["images"] = time.monotonic() - t0

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _start_once(self) -> None:
        """Start, wait for the first answer, copy the images; on any failure remove it all."""
        if self._proc is not None or self._stopped:
            raise EngineError(f"a {type(self).__name__} starts only once")
        atexit.register(self.stop)
        try:
            self._start()
            self._copy_images()
        except BaseException:
            self.stop()
            raise

    # -- the clean-up's steps ------------------------------------------------------------

    def _run_steps(self, steps: Sequence[Callable[[], None]], what: str = "clean-up") -> None:
        for step in steps:
            try:
                step()
            except Exception:
                logger.exception(
                    "%s %s: %s step %s failed", self.label, self.dir, what, step.__name__
                )

    def _remove_containers(self) -> None:
        if not self.running or self._api_version is None:
            return
        # Over the unix socket, with a client of its own: the user's may be closed.
        client = docker.DockerClient(base_url=self.base_url, version=self._api_version, timeout=30)
        try:
            for container in client.api.containers(all=True):
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_container(container["Id"], force=True, v=True)
        except UNREACHABLE as exc:
            logger.warning("%s %s: could not remove its containers: %s", self.label, self.dir, exc)
        finally:
            client.close()

    def _close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s %s ignored SIGTERM for %.0f s: SIGKILL", self.label, self.dir, STOP_TIMEOUT
            )
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def _unmount_all(self) -> None:
        # Stacked mounts (Podman's graph root is bind-mounted onto itself, with
        # containers' root filesystems under it): unmounting one can reveal
        # another, so deepest first, a few passes.
        for _ in range(5):
            points = _mounts_under(self.dir)
            if not points:
                return
            for point in points:
                logger.info("%s %s: unmounting leftover %s", self.label, self.dir, point)
                _unmount(point)

    def _remove_dir(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)


class ExtraEngine(_APIProcess):
    """A throw-away ``dockerd`` that never touches the main engine.

    Args:
        images: Images copied from the source (main) engine once it is up.
        tls: Also listen on ``tcp://127.0.0.1:<free port>`` with ``--tlsverify``.
        extra_args: More ``dockerd`` arguments (never ``--bridge=none``).
        env: More environment variables for ``dockerd``.
        source: The engine images are copied from; ``docker.from_env()`` if None.
        ready_timeout: Seconds the engine has to answer ``ping``.

    Attributes:
        timings: Seconds taken by ``start`` (engine up), ``images`` (all copies)
            and ``image:<name>`` (each copy).
    """

    def __init__(
        self,
        images: Sequence[str] = (),
        *,
        tls: bool = False,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        source: docker.DockerClient | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        pairs = [*extra_args, *(f"{a}={b}" for a, b in itertools.pairwise(extra_args))]
        if any(arg in ("--bridge=none", "-b=none") for arg in pairs):
            raise ValueError("--bridge=none in the host namespace deletes docker0 (pitfall 23)")
        self.images = tuple(images)
        self.tls = tls
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.source = source
        self.ready_timeout = ready_timeout
        self.token = secrets.token_hex(4)
        self.dir = BASE_DIR / f"dmk-{self.token}"
        self.bridge = f"dmk{self.token}"
        self.cgroup_parent = f"/dmk-{self.token}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.port: int | None = None
        self.timings: dict[str, float] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._bridge_made = False
        self._frozen = False
        self._stopped = False
        self._api_version: str | None = None
        self._clients: list[docker.DockerClient] = []

    # -- paths and addresses ---------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        """The engine's unix socket."""
        return self.dir / "docker.sock"

    @property
    def base_url(self) -> str:
        """``unix://`` URL of the engine's socket (never TLS)."""
        return f"unix://{self.socket_path}"

    @property
    def tls_url(self) -> str:
        """``tcp://127.0.0.1:<port>`` of a TLS engine."""
        if self.port is None:
            raise EngineError("this engine was not started with tls=True")
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def cert_path(self) -> Path:
        """Directory with ``ca.pem``, ``cert.pem`` and ``key.pem`` (DOCKER_CERT_PATH)."""
        return self.dir / "tls"

    @property
    def log_path(self) -> Path:
        """The engine's combined stdout/stderr."""
        return self.dir / "dockerd.log"

    @property
    def pid(self) -> int:
        """Process id of the ``dockerd`` this object started."""
        if self._proc is None:
            raise EngineError("the engine is not started")
        return self._proc.pid

    def tls_env(self) -> dict[str, str]:
        """``DOCKER_HOST``, ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` for this engine."""
        return {
            "DOCKER_HOST": self.tls_url,
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(self.cert_path),
        }

    # -- clients ---------------------------------------------------------------------

    def client(self, timeout: int = 60, *, tls: bool | None = None) -> docker.DockerClient:
        """A new client for this engine, closed by :meth:`stop` if still open.

        Args:
            timeout: HTTP timeout of each request, in seconds.
            tls: Connect over TCP+TLS (default: when the engine has TLS), else
                over the unix socket. A TLS client ignores
                ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (pitfall 24).
        """
        if self._api_version is None:
            raise EngineError("the engine is not started")
        use_tls = self.tls if tls is None else tls
        client = self._new_client(timeout, tls=use_tls, version=self._api_version)
        self._clients.append(client)
        return client

    def _new_client(self, timeout: int, *, tls: bool, version: str) -> docker.DockerClient:
        # An explicit version: creating the client does not talk to the engine
        # (it may be frozen), only requests do.
        if not tls:
            return docker.DockerClient(base_url=self.base_url, version=version, timeout=timeout)
        config = docker.tls.TLSConfig(
            client_cert=(str(self.cert_path / "cert.pem"), str(self.cert_path / "key.pem")),
            ca_cert=str(self.cert_path / "ca.pem"),
            verify=True,
        )
        client = docker.DockerClient(
            base_url=self.tls_url, tls=config, version=version, timeout=timeout
        )
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace the session's
        # CA (docker-py #2433); proxies from the environment are wrong here too.
        client.api.trust_env = False
        return client

    # -- life cycle ------------------------------------------------------------------

    def __enter__(self) -> ExtraEngine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ExtraEngine:
        """Start the engine, wait until it answers and copy the images into it.

        Raises:
            EngineError: When the engine does not come up (with its log's tail)
                or an image cannot be copied. Everything made so far is removed.
        """
        self._start_once()
        return self

    def _start(self) -> None:
        t0 = time.monotonic()
        self.dir.mkdir(mode=0o700)  # fails if the name is taken: never reuse a directory
        (self.dir / "daemon.json").write_text("{}\n")  # not the main engine's daemon.json
        args = [
            "dockerd",
            f"--config-file={self.dir / 'daemon.json'}",
            f"--data-root={self.dir / 'data'}",
            f"--exec-root={self.dir / 'exec'}",
            f"--pidfile={self.dir / 'dockerd.pid'}",
            f"--host={self.base_url}",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            *self._network_args(),
            f"--cgroup-parent={self.cgroup_parent}",
            # Matters only if a system containerd is shared with the main engine.
            f"--containerd-namespace=dmk-{self.token}",
            f"--containerd-plugins-namespace=dmk-{self.token}-plugins",
        ]
        if self.tls:
            t_certs = time.monotonic()
            make_certificates(self.cert_path)
            self.timings["certificates"] = time.monotonic() - t_certs
            self.port = _free_port()
            args += [
                f"--host={self.tls_url}",
                "--tlsverify",
                f"--tlscacert={self.cert_path / 'ca.pem'}",
                f"--tlscert={self.cert_path / 'server-cert.pem'}",
                f"--tlskey={self.cert_path / 'server-key.pem'}",
            ]
        args += self.extra_args
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(self.env)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self._command(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own session: a Ctrl-C in the terminal reaches the tests,
                # which then stop the engine in order.
                start_new_session=True,
            )
        logger.info("engine %s: dockerd pid %d, %s", self.dir, self._proc.pid, self._where())
        self._api_version = self._wait_ready(t0 + self.ready_timeout)
        self.timings["start"] = time.monotonic() - t0
        logger.info("engine %s answered after %.2f s", self.dir, self.timings["start"])

    def _network_args(self) -> list[str]:
        """Make the engine's own bridge in a free subnet; its ``dockerd`` arguments."""
        self.subnet = _free_subnet()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        _run("ip", "addr", "add", f"{self.subnet[1]}/{self.subnet.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        return [f"--bridge={self.bridge}"]

    def _command(self, args: list[str]) -> list[str]:
        """The argv that starts ``dockerd`` with ``args`` (here: as it is)."""
        return args

    def _where(self) -> str:
        return f"bridge {self.bridge}"

    def freeze(self) -> None:
        """Stop the engine's process (SIGSTOP): requests hang until :meth:`thaw`."""
        if not self.running:
            raise EngineError("the engine is not running")
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """Let a frozen engine run again (SIGCONT)."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGCONT)
        self._frozen = False

    def stop(self) -> None:
        """Remove the engine and every trace of it; safe to call more than once.

        Removes the engine's containers (if it answers), SIGTERMs the process
        this object started (SIGKILL after ``STOP_TIMEOUT`` s), then removes
        leftover processes of its containerd and containers (found by this
        engine's unique directory and cgroup), mounts under its directory, its
        bridge, its cgroups and its directory.
        """
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        t0 = time.monotonic()
        steps = (
            self._remove_containers,
            self._close_clients,
            self._terminate,
            self._kill_leftover_processes,
            self._unmount_all,
            self._remove_bridge,
            self._remove_cgroups,
            self._remove_dir,
        )
        self._run_steps(steps)
        if self.subnet is not None:
            _claimed_subnets.discard(self.subnet)
        logger.info("engine %s removed in %.2f s", self.dir, time.monotonic() - t0)

    def _remove_containers(self) -> None:
        if self._frozen:
            self.thaw()
        super()._remove_containers()

    def _kill_leftover_processes(self) -> None:
        """Kill what a killed dockerd left: its containerd, shims and container processes.

        Only processes of this engine: dockerd, containerd and its shims whose
        command line names this engine's unique directory, and the processes
        in its unique cgroup parent.
        """
        pids = set(self._daemon_pids(b"dockerd", b"containerd"))
        name = self.cgroup_parent.lstrip("/")
        cgroups = Path("/sys/fs/cgroup")
        for procs in [
            *cgroups.glob(f"*/{name}/**/cgroup.procs"),
            *cgroups.glob(f"{name}/**/cgroup.procs"),
        ]:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
        for pid in pids:
            logger.warning("engine %s: killing its leftover process %d", self.dir, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = {pid for pid in pids if Path(f"/proc/{pid}").exists()}
            time.sleep(0.05)

    def _daemon_pids(self, *names: bytes) -> list[int]:
        """Processes named ``names*`` whose command line names this engine's directory."""
        pids = []
        marker = os.fsencode(f"{self.dir}/")
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    if os.path.basename(argv[0]).startswith(names) and any(
                        marker in arg for arg in argv
                    ):
                        pids.append(int(entry.name))
        return pids

    @classmethod
    def reclaim(cls, directory: Path) -> None:
        """Remove what an engine whose owner died left under ``directory``.

        The owner (the process that made the :class:`ExtraEngine`) was killed
        before :meth:`stop` could run; its ``dockerd`` may still run (it has
        a session of its own). SIGTERM to that ``dockerd`` (found by its
        command line, which names the directory), SIGKILL after
        ``STOP_TIMEOUT`` s, then the leftover processes, mounts, cgroups and
        the directory, as :meth:`stop` removes them.

        Args:
            directory: An engine's directory, ``BASE_DIR/dmk-<8 hex>``.

        Raises:
            ValueError: ``directory`` is not an engine's directory.
        """
        token = directory.name.removeprefix("dmk-")
        if directory.parent != BASE_DIR or not re.fullmatch(r"[0-9a-f]{8}", token):
            raise ValueError(f"not an extra engine's directory: {directory}")
        engine = ExtraEngine()
        engine._stopped = True  # this object never started anything
        engine.token, engine.dir = token, directory
        engine.bridge, engine.cgroup_parent = f"dmk{token}", f"/dmk-{token}"
        daemons = engine._daemon_pids(b"dockerd")
        for pid in daemons:
            logger.warning("engine %s: its owner is gone, stopping dockerd %d", directory, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(Path(f"/proc/{pid}").exists() for pid in daemons):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        engine._run_steps(
            (
                engine._kill_leftover_processes,
                engine._unmount_all,
                engine._remove_cgroups,
                engine._remove_dir,
            ),
            "reclaim",
        )

    def _remove_bridge(self) -> None:
        if self._bridge_made and Path("/sys/class/net", self.bridge).exists():
            _run("ip", "link", "del", self.bridge)
        self._bridge_made = False

    def _remove_cgroups(self) -> None:
        name = self.cgroup_parent.lstrip("/")
        roots = [Path("/sys/fs/cgroup", name), *Path("/sys/fs/cgroup").glob(f"*/{name}")]
        for root in roots:
            if not root.is_dir() or root.is_symlink():
                continue
            # Only directories can (and must) be removed from a cgroup tree.
            for path, _dirs, _files in os.walk(root, topdown=False):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(path)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ExtraEngine {self.base_url} {state}{' (TLS)' if self.tls else ''}>"


def _netns_boot_script() -> str:
    """What ``ip netns exec`` runs before ``dockerd`` (``"$@"`` is dockerd's argv).

    The namespace's fresh ``/sys`` has no cgroup hierarchies: mount the
    host's again (the same controllers), then become ``dockerd`` (same pid).
    """
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        point = left.split()[4]
        fstype, _source, options = right.split()[:3]
        if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup/"):
            kept = ",".join(o for o in options.split(",") if o not in ("rw", "ro"))
            opts = f"-o {kept} " if kept else ""
            mounts.append(f"mkdir -p {point} && mount -t {fstype} {opts}{fstype} {point}")
    return "\n".join(
        ["set -e", "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup", *mounts, 'exec "$@"']
    )


class NetnsEngine(ExtraEngine):
    """An extra engine in a network namespace of its own (a Swarm node on one machine).

    Like :class:`ExtraEngine` (own data root, exec root, socket, pid file,
    cgroup parent, containerd namespace), but ``dockerd`` runs inside
    ``ip netns exec NETNS`` with ``--bridge=none``: the host's ``docker0`` is
    out of its sight there (pitfall 23 concerns the host namespace only), and
    its containers get no network but ``lo``. The caller makes and removes
    the namespace. The unix socket is a file, reachable from the host's
    namespace. No TLS.

    Args:
        netns: The network namespace (``ip netns add`` made it).
        images: See :class:`ExtraEngine`.
        bridge_none: Start it with ``--bridge=none``; False leaves the engine
            its default bridge (``docker0``, inside the namespace): a node that
            is not set up for dockermagic.
        extra_args: More ``dockerd`` arguments.
        env: More environment variables for ``dockerd``.
        source: See :class:`ExtraEngine`.
        ready_timeout: See :class:`ExtraEngine`.
    """

    def __init__(
        self,
        netns: str,
        images: Sequence[str] = (),
        *,
        bridge_none: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        source: docker.DockerClient | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        super().__init__(
            images, extra_args=extra_args, env=env, source=source, ready_timeout=ready_timeout
        )
        self.netns = netns
        self.bridge_none = bridge_none

    def _network_args(self) -> list[str]:
        return ["--bridge=none"] if self.bridge_none else []

    def _command(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, "sh", "-c", _netns_boot_script(), "sh", *args]

    def _where(self) -> str:
        return f"network namespace {self.netns}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<NetnsEngine {self.base_url} in {self.netns} {state}>"


#: dockerd arguments of a Swarm node: what dockermagic's Swarm backend needs
#: of a node, as the README's node set-up says (service specs cannot ask for
#: either on engine 20.10).
SWARM_NODE_ARGS = ("--no-new-privileges",)
#: dockerd environment of a Swarm node: tasks use the node's image, no registry.
SWARM_NODE_ENV = {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
#: Port of the Swarm's control plane on each node's address.
SWARM_PORT = 2377


class SwarmCluster:
    """A throw-away Docker Swarm on this machine: a manager and a worker (more on demand).

    Each node is a :class:`NetnsEngine` in a network namespace of its own
    (``dmk-<token>-<n>``, 0 the manager). The manager's namespace holds a
    bridge with the manager's address (``.1`` of a free private
    ``10.x.y.0/24``); each worker's namespace is joined to it by a veth pair
    (``.2``, ``.3``...). Nodes run with ``--bridge=none --no-new-privileges``
    and ``DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`` unless told otherwise
    (:meth:`add_worker`). Images are copied from the source engine into the
    nodes at once (:func:`copy_images`).

    :meth:`stop` (also on a failed start, ``__exit__`` and interpreter exit)
    undoes exactly what was made: the nodes leave the swarm, each engine is
    stopped as :meth:`ExtraEngine.stop` does, the namespaces (and with them
    the bridge and the veth pairs) are deleted, and ``/run/netns`` is
    unmounted when this cluster mounted it and no namespace is left in it.

    An owner killed before it could stop (SIGKILL, a lost terminal) leaves
    its cluster running: the cluster writes what it is about to make, and
    who makes it, to ``BASE_DIR/dmk-swarm-<token>.json`` before making it,
    and :meth:`start` first removes every cluster whose owner is gone
    (:func:`reclaim_stale_clusters`).

    Args:
        images: Images copied into the manager and the first worker.
        source: The engine images come from; ``docker.from_env()`` if None.
    """

    def __init__(
        self, images: Sequence[str] = (), *, source: docker.DockerClient | None = None
    ) -> None:
        self.images = tuple(images)
        self.source = source
        self.token = secrets.token_hex(4)
        self.subnet: ipaddress.IPv4Network | None = None
        #: The started engines, manager first.
        self.nodes: list[NetnsEngine] = []
        self.timings: dict[str, float] = {}
        self._made_netns: list[str] = []
        self._made_links: list[str] = []
        self._made_run_netns = False
        self._next = 0
        self._stopped = False
        #: What this cluster made or is about to make, for a reclaim if its owner dies.
        self.record_path = BASE_DIR / f"{SWARM_RECORD_PREFIX}{self.token}.json"
        self._claimed_netns: list[str] = []
        self._claimed_dirs: list[str] = []

    @property
    def manager(self) -> NetnsEngine:
        """The manager's engine."""
        if not self.nodes:
            raise EngineError("the cluster is not started")
        return self.nodes[0]

    @property
    def worker(self) -> NetnsEngine:
        """The first worker's engine."""
        if len(self.nodes) < 2:
            raise EngineError("the cluster has no worker")
        return self.nodes[1]

    def address(self, index: int) -> str:
        """The IPv4 address of node ``index`` (0: the manager)."""
        if self.subnet is None:
            raise EngineError("the cluster is not started")
        return str(self.subnet[index + 1])

    def node_id(self, node: NetnsEngine) -> str:
        """A node's Swarm id."""
        client = node.client(timeout=10)
        try:
            return str(client.info()["Swarm"]["NodeID"])
        finally:
            client.close()

    def node_ids(self) -> dict[str, str]:
        """Swarm node id -> ``"manager"``, ``"worker"``, ``"worker2"``..."""
        roles = ["manager", "worker", *(f"worker{i}" for i in range(2, len(self.nodes)))]
        return {self.node_id(node): role for node, role in zip(self.nodes, roles, strict=True)}

    def __enter__(self) -> SwarmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SwarmCluster:
        """Make the manager's namespace and bridge, start manager and worker, form the swarm.

        Raises:
            EngineError: Something could not be made; everything made so far is removed.
        """
        if self._stopped or self.nodes:
            raise EngineError("a SwarmCluster starts only once")
        reclaim_stale_clusters()
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _namespace(self) -> tuple[int, str]:
        """A new namespace for the next node, joined to the manager's bridge."""
        assert self.subnet is not None
        index = self._next
        self._next += 1
        name = f"dmk-{self.token}-{index}"
        self._claim(netns=name)
        _run("ip", "netns", "add", name)
        self._made_netns.append(name)
        address = f"{self.address(index)}/{self.subnet.prefixlen}"
        if index == 0:
            _run("ip", "-n", name, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", name, "addr", "add", address, "dev", "br0")
            _run("ip", "-n", name, "link", "set", "br0", "up")
        else:
            # Made in the host's namespace, then each end moved into its own.
            near, far = f"dmv{self.token}{index}a", f"dmv{self.token}{index}b"
            self._made_links.append(near)
            self._claim()
            _run("ip", "link", "add", near, "type", "veth", "peer", "name", far)
            _run("ip", "link", "set", near, "netns", self._made_netns[0])
            _run("ip", "link", "set", far, "netns", name)
            manager_ns = self._made_netns[0]
            _run("ip", "-n", manager_ns, "link", "set", near, "master", "br0", "up")
            _run("ip", "-n", name, "addr", "add", address, "dev", far)
            _run("ip", "-n", name, "link", "set", far, "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return index, name

    def _claim(self, *, netns: str | None = None, engine: ExtraEngine | None = None) -> None:
        """Record what is about to be made (and by whom) before making it."""
        if netns is not None:
            self._claimed_netns.append(netns)
        if engine is not None:
            self._claimed_dirs.append(str(engine.dir))
        record = {
            "owner": _process_identity(os.getpid()),
            "netns": self._claimed_netns,
            "links": self._made_links,
            "engines": self._claimed_dirs,
            "run_netns": self._made_run_netns,
        }
        # Written whole, then renamed: a reader never sees half a record.
        partial = self.record_path.with_suffix(".partial")
        partial.write_text(json.dumps(record))
        partial.replace(self.record_path)

    def _start(self) -> None:
        t0 = time.monotonic()
        self._made_run_netns = not os.path.ismount("/run/netns")
        self.subnet = _free_subnet()
        engines = [
            NetnsEngine(self._namespace()[1], extra_args=SWARM_NODE_ARGS, env=SWARM_NODE_ENV)
            for _ in range(2)
        ]
        for engine in engines:
            self._claim(engine=engine)
        # Both engines start at once (each takes a few seconds on a busy machine).
        self.nodes.extend(engines)
        _start_all(engines)
        self.timings["engines"] = time.monotonic() - t0
        self._copy(engines, self.images)
        t_swarm = time.monotonic()
        manager = self.manager.client(timeout=30)
        try:
            here = f"{self.address(0)}:{SWARM_PORT}"
            manager.swarm.init(listen_addr=here, advertise_addr=here)
        finally:
            manager.close()
        self._join(1)
        self.timings["swarm"] = time.monotonic() - t_swarm
        self.timings["start"] = time.monotonic() - t0
        logger.info("swarm %s ready in %.2f s: %s", self.token, self.timings["start"], self.timings)

    def _copy(self, engines: Sequence[NetnsEngine], images: Sequence[str]) -> None:
        if not images:
            return
        t0 = time.monotonic()
        source = self.source or docker.from_env(timeout=300)
        try:
            copy_images(source, engines, images)
        finally:
            if self.source is None:
                source.close()
        self.timings["images"] = self.timings.get("images", 0.0) + time.monotonic() - t0

    def _join(self, index: int) -> None:
        """Join node ``index`` as a worker and wait until the manager sees it ready."""
        manager, worker = self.manager.client(timeout=30), self.nodes[index].client(timeout=30)
        try:
            manager.swarm.reload()
            token = manager.swarm.attrs["JoinTokens"]["Worker"]
            there = f"{self.address(index)}:{SWARM_PORT}"
            worker.swarm.join(
                remote_addrs=[f"{self.address(0)}:{SWARM_PORT}"],
                join_token=token,
                listen_addr=there,
                advertise_addr=there,
            )
            deadline = time.monotonic() + 30
            while True:
                states = [n.attrs["Status"]["State"] for n in manager.nodes.list()]
                if states.count("ready") == len(self.nodes):
                    return
                if time.monotonic() > deadline:
                    raise EngineError(f"the swarm's nodes are not ready after 30 s: {states}")
                time.sleep(0.1)
        finally:
            manager.close()
            worker.close()

    def add_worker(
        self,
        images: Sequence[str] = (),
        *,
        bridge_none: bool = True,
        extra_args: Sequence[str] = SWARM_NODE_ARGS,
        env: Mapping[str, str] | None = None,
    ) -> NetnsEngine:
        """Start one more node and join it as a worker.

        Args:
            images: Images copied into it.
            bridge_none: See :class:`NetnsEngine`.
            extra_args: Its ``dockerd`` arguments besides the harness's own.
            env: Its ``dockerd`` environment; :data:`SWARM_NODE_ENV` when None.

        Returns:
            Its engine (:meth:`remove_worker` takes it out again).
        """
        index, name = self._namespace()
        engine = NetnsEngine(
            name,
            bridge_none=bridge_none,
            extra_args=extra_args,
            env=SWARM_NODE_ENV if env is None else env,
        )
        self._claim(engine=engine)
        self.nodes.append(engine)
        engine.start()
        self._copy([engine], images)
        self._join(index)
        return engine

    def remove_worker(self, engine: NetnsEngine) -> None:
        """Take a worker added by :meth:`add_worker` out of the swarm and stop it."""
        node_id = self.node_id(engine)
        client = engine.client(timeout=15)
        try:
            client.swarm.leave(force=True)
        finally:
            client.close()
        manager = self.manager.client(timeout=15)
        try:
            deadline = time.monotonic() + 30
            while manager.nodes.get(node_id).attrs["Status"]["State"] != "down":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            manager.nodes.get(node_id).remove(force=True)
        finally:
            manager.close()
        engine.stop()
        self.nodes.remove(engine)

    def stop(self) -> None:
        """Undo everything that was made; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        for node in reversed(self.nodes):  # workers leave first
            if node.running:
                try:
                    client = node.client(timeout=15)
                    try:
                        client.swarm.leave(force=True)
                    finally:
                        client.close()
                except UNREACHABLE as exc:
                    logger.warning("swarm %s: %s could not leave: %s", self.token, node, exc)
        # Each stop waits for its dockerd and removes its data root: all at once.
        stoppers = [threading.Thread(target=node.stop) for node in self.nodes]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        # A namespace takes its bridge and its ends of the veth pairs with it.
        for name in reversed(self._made_netns):
            try:
                _run("ip", "netns", "del", name)
            except EngineError as exc:
                logger.warning("swarm %s: %s", self.token, exc)
        self._made_netns.clear()
        for link in self._made_links:  # only a failed move leaves one here
            if Path("/sys/class/net", link).exists():
                with contextlib.suppress(EngineError):
                    _run("ip", "link", "del", link)
        if self.subnet is not None:
            _claimed_subnets.discard(self.subnet)
        if self._made_run_netns:
            _release_run_netns()
        self.record_path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"<SwarmCluster {self.token}: {self.nodes}>"


#: Name of a cluster's record under BASE_DIR: ``dmk-swarm-<token>.json``.
SWARM_RECORD_PREFIX = "dmk-swarm-"


def _process_identity(pid: int) -> list[int] | None:
    """A process's id and start time (a reused pid has another), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (in parentheses) may hold spaces; fields follow the last ")".
    return [pid, int(stat.rpartition(")")[2].split()[19])]


def _release_run_netns() -> None:
    """Unmount ``/run/netns`` (``ip netns add`` mounted it) when no namespace is left in it."""
    run_netns = Path("/run/netns")
    if os.path.ismount(run_netns) and not any(run_netns.iterdir()):
        _unmount(str(run_netns))
        with contextlib.suppress(OSError):
            run_netns.rmdir()


def reclaim_stale_clusters() -> list[str]:
    """Remove the :class:`SwarmCluster` s whose owner process is gone.

    Each record (``BASE_DIR/dmk-swarm-<token>.json``) lists the namespaces,
    links and engine directories its cluster made or was about to make: the
    engines are reclaimed (:meth:`ExtraEngine.reclaim`: their ``dockerd``
    stopped, their traces removed), then the namespaces and links deleted.
    Clusters of live owners (other test runs, the benchmark) are left alone.

    Returns:
        The tokens of the clusters removed.
    """
    reclaimed = []
    for path in sorted(BASE_DIR.glob(f"{SWARM_RECORD_PREFIX}*.json")):
        try:
            record = json.loads(path.read_text())
            pid, start = record["owner"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours, or already gone
        if _process_identity(pid) == [pid, start]:
            continue
        token = path.stem.removeprefix(SWARM_RECORD_PREFIX)
        logger.warning("swarm %s: its owner (pid %d) is gone; removing what it left", token, pid)
        for directory in record.get("engines", []):
            if Path(directory).exists():
                ExtraEngine.reclaim(Path(directory))
        for name in reversed(record.get("netns", [])):
            if Path("/run/netns", name).exists():
                with contextlib.suppress(EngineError):
                    _run("ip", "netns", "del", name)
        for link in record.get("links", []):
            if Path("/sys/class/net", link).exists():
                with contextlib.suppress(EngineError):
                    _run("ip", "link", "del", link)
        if record.get("run_netns"):
            _release_run_netns()
        path.unlink(missing_ok=True)
        reclaimed.append(token)
    return reclaimed


def _start_all(engines: Sequence[ExtraEngine]) -> None:
    """Start engines at once; the first failure is raised once all have tried."""
    failures: list[BaseException] = []

    def start(engine: ExtraEngine) -> None:
        try:
            engine.start()
        except BaseException as exc:
            failures.append(exc)

    starters = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    if failures:
        raise failures[0]


class SSHServer:
    """A throw-away ``sshd`` on 127.0.0.1 in front of an engine's unix socket.

    Its own host key, port, pid and configuration under ``/tmp/dms-<8 hex>``;
    a key-only login for root (who can reach the engine's socket), whose
    sessions see ``DOCKER_HOST`` set to that socket, as on a remote host
    where the engine listens elsewhere than ``/var/run/docker.sock``. Clients
    use :attr:`ssh_config` (``ssh -F``, ``DOCKERMAGIC_SSH_CONFIG``) or
    :attr:`home` (``~/.ssh`` for paramiko): nothing of the user's own SSH
    set-up is read or written.

    Args:
        engine_socket: The engine's unix socket.
    """

    def __init__(self, engine_socket: Path) -> None:
        self.engine_socket = engine_socket
        self.token = secrets.token_hex(4)
        self.dir = BASE_DIR / f"dms-{self.token}"
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._made_privsep = False
        self._stopped = False

    @property
    def url(self) -> str:
        """``ssh://root@127.0.0.1:<port>``."""
        return f"ssh://root@127.0.0.1:{self.port}"

    @property
    def ssh_config(self) -> Path:
        """An OpenSSH client configuration for this server (its key, its host key)."""
        return self.dir / "ssh_config"

    @property
    def home(self) -> Path:
        """A home directory whose ``.ssh`` knows this server (for paramiko, which reads ~)."""
        return self.dir / "home"

    @property
    def log_path(self) -> Path:
        """sshd's log."""
        return self.dir / "sshd.log"

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SSHServer:
        """Make the keys and configuration, start sshd and wait until it accepts."""
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.dir.mkdir(mode=0o700)
        dot_ssh = self.home / ".ssh"
        dot_ssh.mkdir(mode=0o700, parents=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "host_key"))
        identity = dot_ssh / "id_ed25519"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(identity))
        (self.dir / "authorized_keys").write_text(identity.with_suffix(".pub").read_text())
        self.port = _free_port()
        host_key = (self.dir / "host_key.pub").read_text().split()
        known = dot_ssh / "known_hosts"
        known.write_text(f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")
        (self.dir / "sshd_config").write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.dir / 'host_key'}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "AuthenticationMethods publickey\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "AllowUsers root\n"
            "UsePAM no\n"
            # Keys live under /tmp, which StrictModes would reject.
            "StrictModes no\n"
            "AllowStreamLocalForwarding yes\n"
            "MaxSessions 64\n"
            f"SetEnv DOCKER_HOST=unix://{self.engine_socket}\n"
        )
        self.ssh_config.write_text(
            "Host 127.0.0.1\n"
            "  User root\n"
            f"  IdentityFile {identity}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known}\n"
            "  StrictHostKeyChecking yes\n"
        )
        # Paramiko (docker-py's ssh transport) reads ~/.ssh/config and known_hosts.
        (dot_ssh / "config").write_text(self.ssh_config.read_text())
        privsep = Path("/run/sshd")  # sshd refuses to start without it
        if not privsep.exists():
            privsep.mkdir(mode=0o755, parents=True)
            self._made_privsep = True
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while True:
            if self._proc.poll() is not None:
                log_text = self.log_path.read_text(errors="replace")
                raise EngineError(f"sshd exited with {self._proc.returncode}:\n{log_text}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise EngineError(f"sshd did not listen on {self.port} within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop sshd (and the sessions it started) and remove its files; safe twice."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # sshd's session processes run in its process group (its own session).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
        if self._made_privsep:
            with contextlib.suppress(OSError):
                Path("/run/sshd").rmdir()
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def __repr__(self) -> str:
        return f"<SSHServer {self.url} for {self.engine_socket}>"


#: Podman's Docker-compatible service needs these Debian packages: podman, and
#: catatonit as its init (the Docker API's ``Init`` finds no other).
PODMAN_TOOLS = {"podman": "podman", "catatonit": "catatonit"}


def missing_podman() -> list[str]:
    """What this machine lacks to start a throw-away Podman service (empty when nothing)."""
    missing = [] if os.geteuid() == 0 else ["root"]
    return missing + [pkg for tool, pkg in PODMAN_TOOLS.items() if shutil.which(tool) is None]


def _other_podman_running() -> bool:
    """Whether any podman or conmon process runs (after ours were stopped).

    A zombie does not count: it uses nothing, and one whose parent never
    waits would otherwise keep every later service from cleaning up.
    """
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if (entry / "comm").read_text().strip() not in ("podman", "conmon"):
                    continue
                # The state follows the command's closing parenthesis.
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    return True
    return False


class PodmanService(_APIProcess):
    """A throw-away ``podman system service``: Podman's Docker API on a socket of its own.

    Everything it writes lives under ``/tmp/dmp-<8 hex>``: its own
    ``containers.conf`` (cgroupfs, no default network, runc, events in a
    file) and ``storage.conf`` (overlay graph root and run root), found by
    Podman through ``CONTAINERS_CONF``/``CONTAINERS_STORAGE_CONF`` in the
    service's environment only. Images are copied from the main engine with
    the SDK. :meth:`stop` removes its containers, stops the service it
    started (and the ``conmon`` monitors that outlive it), unmounts what
    Podman mounted under its directory (the overlay graph root stays
    bind-mounted otherwise) and removes the few traces Podman leaves outside
    it (its shared-memory lock, blob cache and cgroup parent) when they were
    not there before it started.

    Args:
        images: Images copied from the source (main) engine once it is up.
        source: The engine images are copied from; ``docker.from_env()`` if None.
        ready_timeout: Seconds the service has to answer ``ping``.

    Attributes:
        timings: Seconds taken by ``start`` (service up), ``images`` (all
            copies) and ``image:<name>`` (each copy).
    """

    program = "podman"
    label = "podman"
    #: Files and folders Podman 4.3 creates outside its configured roots.
    OUTSIDE = (Path("/dev/shm/libpod_lock"), Path("/var/lib/containers"))

    def __init__(
        self,
        images: Sequence[str] = (),
        *,
        source: docker.DockerClient | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.images = tuple(images)
        self.source = source
        self.ready_timeout = ready_timeout
        self.token = secrets.token_hex(4)
        self.dir = BASE_DIR / f"dmp-{self.token}"
        self.timings: dict[str, float] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self._api_version: str | None = None
        self._clients: list[docker.DockerClient] = []
        self._outside_before: set[Path] = set()
        self._cgroups_before: set[Path] = set()

    @property
    def socket_path(self) -> Path:
        """The service's unix socket."""
        return self.dir / "podman.sock"

    @property
    def base_url(self) -> str:
        """``unix://`` URL of the service's socket (``DOCKER_HOST``)."""
        return f"unix://{self.socket_path}"

    @property
    def log_path(self) -> Path:
        """The service's combined stdout/stderr."""
        return self.dir / "service.log"

    def environment(self) -> dict[str, str]:
        """The variables that make Podman commands use this service's storage."""
        return {
            "CONTAINERS_CONF": str(self.dir / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.dir / "storage.conf"),
        }

    def client(self, timeout: int = 60, *, tls: bool | None = None) -> docker.DockerClient:
        """A new client for this service, closed by :meth:`stop` if still open.

        Args:
            timeout: HTTP timeout of each request, in seconds.
            tls: Only False or None: the service listens on its unix socket
                only (the argument makes it a target of :func:`copy_images`).
        """
        if tls:
            raise EngineError("the Podman service has no TLS listener")
        if self._api_version is None:
            raise EngineError("the service is not started")
        client = docker.DockerClient(
            base_url=self.base_url, version=self._api_version, timeout=timeout
        )
        self._clients.append(client)
        return client

    def __enter__(self) -> PodmanService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> PodmanService:
        """Start the service, wait until it answers and copy the images into it.

        Raises:
            EngineError: When it does not come up (with its log's tail) or an
                image cannot be copied. Everything made so far is removed.
        """
        self._start_once()
        return self

    def _start(self) -> None:
        t0 = time.monotonic()
        self._outside_before = {path for path in self.OUTSIDE if path.exists()}
        self._cgroups_before = set(Path("/sys/fs/cgroup").glob("*/libpod_parent"))
        self.dir.mkdir(mode=0o700)  # fails if the name is taken: never reuse a directory
        for sub in ("root", "run", "tmp", "net"):
            (self.dir / sub).mkdir()
        d = self.dir
        (d / "containers.conf").write_text(
            "[containers]\n"
            'netns = "none"\n'
            'log_driver = "k8s-file"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{d}/events.log"\n'
            'runtime = "runc"\n'
            f'tmp_dir = "{d}/tmp"\n'
            "[network]\n"
            f'network_config_dir = "{d}/net"\n'
        )
        (d / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\nrunroot = "{d}/run"\ngraphroot = "{d}/root"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "CONTAINERS_"))}
        env.update(self.environment())
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.base_url],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # conmon writes its OOM markers into its working directory.
                cwd=d,
                start_new_session=True,
            )
        self._api_version = self._wait_ready(t0 + self.ready_timeout)
        self.timings["start"] = time.monotonic() - t0
        logger.info("podman %s answered after %.2f s", d, self.timings["start"])

    def stop(self) -> None:
        """Remove the service and every trace of it; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        steps = (
            self._remove_containers,
            self._close_clients,
            self._terminate,
            self._kill_leftover_processes,
            self._unmount_all,
            self._remove_outside,
            self._remove_dir,
        )
        self._run_steps(steps)

    def _kill_leftover_processes(self) -> None:
        """Kill what outlives the service: ``conmon`` monitors and their containers.

        Only processes whose command line names this service's directory
        (conmon is started with paths under it), and their children.
        """
        marker = os.fsencode(f"{self.dir}/")
        monitors: set[int] = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    if any(marker in arg for arg in argv):
                        monitors.add(int(entry.name))
        pids = set(monitors)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) in monitors:
                        pids.add(int(entry.name))
        for pid in pids:
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                name = "?"
            logger.warning("podman %s: killing its leftover process %d (%s)", self.dir, pid, name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = {pid for pid in pids if Path(f"/proc/{pid}").exists()}
            time.sleep(0.05)

    def _remove_outside(self) -> None:
        """Podman's traces outside its directory, if they were not there before it started."""
        if _other_podman_running():
            return  # they are shared: another service may use them now
        for path in self.OUTSIDE:
            if path in self._outside_before or not path.exists():
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        # cgroupfs: Podman puts containers and conmon under "libpod_parent";
        # only empty folders can go, so a busy one (another Podman) stays.
        for root in Path("/sys/fs/cgroup").glob("*/libpod_parent"):
            if root in self._cgroups_before or root.is_symlink():
                continue
            for path, _dirs, _files in os.walk(root, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(path)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PodmanService {self.base_url} {state}>"

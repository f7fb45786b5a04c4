"""The runners: :class:`AbstractDockerCodeRunner` and one subclass per language.

A language is a table entry: a subclass fills in class attributes (name,
aliases, file suffixes, default image, file name, offline image) and answers
two questions only it can answer (:meth:`~AbstractDockerCodeRunner.command`,
:meth:`~AbstractDockerCodeRunner.environment`); :func:`register_runner` adds it
to the registry that :func:`get_runner`, the magics and the batch runner read.

One run is one fresh container, driven through the container layer
(:mod:`dockermagic.container`) and watched by the supervisor
(:mod:`dockermagic.supervisor`). A language with an agent
(:mod:`dockermagic.interpreters`: Python, JavaScript) runs its program under
it, which brings displays, files out and exact CPU/memory figures::

    create -> attach -> start (exit watched from before)
      -> send the agent, the files and the request (one write)
      -> supervise: stream output and displays; at the deadline kill (the
         container would kill itself 2 s later anyway); on cancel or flood
         hang up and kill
      -> the agent's done frame (exit, CPU, memory, files) -> remove, always

A language without one runs its program directly: files go in with
``put_archive`` before start, output comes from Docker's multiplexed stream,
the exit code from the engine's events.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol

import docker

from dockermagic.agent import Agent, AgentRequest
from dockermagic.container import (
    CALL_TIMEOUT,
    DEADLINE_GRACE,
    SHORT_TIMEOUT,
    Channel,
    ContainerSpec,
    SandboxContainer,
)
from dockermagic.engine import default_client, engine_address
from dockermagic.errors import InvalidArgumentError
from dockermagic.images import OfflineImage, ProgressCallback, runner_image
from dockermagic.inputs import bind_inputs, encode_inputs
from dockermagic.interpreters import Interpreter, maybe_interpreter_for
from dockermagic.labels import POOL, container_labels
from dockermagic.packages import derived_image, normalise_requirements
from dockermagic.policy import CODE_DIR, SandboxPolicy
from dockermagic.pool import IDLE_TTL, ContainerPool, pool_for
from dockermagic.protocol import BASE_CODE, BASE_WORK, run_request
from dockermagic.result import RunResult
from dockermagic.settings import current_settings
from dockermagic.streams import (
    DemuxDecoder,
    DisplayCallback,
    DisplayCollector,
    FileCollector,
    OutputCallback,
    OutputCollector,
)
from dockermagic.supervisor import (
    Event,
    Exited,
    Output,
    Program,
    StopReason,
    StreamEnded,
    check_timeout,
    supervise,
)
from dockermagic.transfer import CopyBudget, read_host_file, read_tree, safe_relative

__all__ = [
    "AbstractDockerCodeRunner",
    "Backend",
    "CodeRunner",
    "JavaScriptDockerRunner",
    "Job",
    "PythonDockerRunner",
    "RemoteSession",
    "get_runner",
    "register_runner",
    "runner_class_for",
    "runner_classes",
]

logger = logging.getLogger(__name__)

#: Seconds past a run's timeout that one set-up call (create, copy, attach,
#: start) may take before the engine counts as hung.
SETUP_SLACK = 4.0


class CodeRunner(Protocol):
    """The run contract: something that runs code and returns a :class:`RunResult`.

    Implemented by every runner (a fresh container per run) and by
    :class:`~dockermagic.sessions.Session` (a cell in a warm interpreter);
    front ends hold either one and call :meth:`run` the same way.
    """

    @property
    def language(self) -> str:
        """The language's canonical name."""
        ...

    def run(
        self,
        code: str | bytes,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        on_output: OutputCallback | None = None,
        files: Mapping[str, str | bytes] | None = None,
        filename: str | None = None,
        cancel: threading.Event | None = None,
        inputs: Mapping[str, Any] | None = None,
        on_display: DisplayCallback | None = None,
        display_last: bool | None = None,
        put: Iterable[str | os.PathLike[str]] = (),
        get: Sequence[str] = (),
        name: str | None = None,
        first_line: int = 1,
    ) -> RunResult:
        """Run source code; a failing program is a result, not an exception."""
        ...


@dataclass(frozen=True)
class Job:
    """One run, ready to go: what to copy in, what to run, what to bring back.

    Arguments are checked and files read (within the copy budget) before a
    job exists, so a :class:`Backend` receives only well-formed work.
    """

    code: Mapping[str, bytes]  # the program's folder (/code), the entry included
    put: tuple[str | os.PathLike[str], ...]  # host paths for the working directory
    entry: str
    source: bytes
    limit: float
    stdin: bytes | None
    inputs: Mapping[str, Any] | None
    display_last: bool
    get: tuple[str, ...]
    labels: Mapping[str, str] | None
    name: str | None = None
    first_line: int = 1
    #: The caller named the timeout (``timeout=``), rather than taking the policy's.
    timeout_given: bool = False


class RemoteSession(Protocol):
    """A session kept by a :class:`Backend` (a gateway), as a ``Session`` uses it."""

    @property
    def restarts(self) -> int:
        """How often its interpreter was replaced (died, killed, reset)."""
        ...

    @property
    def runs(self) -> int:
        """Cells run so far."""
        ...

    @property
    def restart_reason(self) -> str:
        """Why its interpreter was last replaced, in a session's words ('' when unknown)."""
        ...

    @property
    def container_name(self) -> str:
        """The current container's name ('' before the first start)."""
        ...

    @property
    def alive(self) -> bool:
        """Whether its interpreter is running (asks the backend)."""
        ...

    def start(self) -> None:
        """Start the interpreter if it is not running."""
        ...

    def reset(self) -> None:
        """Restart the interpreter (variables and files go)."""
        ...

    def stop(self) -> None:
        """End the session and its container."""
        ...

    def interrupt(self) -> bool:
        """Interrupt the running cell, if any; whether one was running."""
        ...

    def run(
        self,
        job: Job,
        budget: CopyBudget,
        on_output: OutputCallback | None,
        on_display: DisplayCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        """Run one cell."""
        ...


class Backend(Protocol):
    """Somewhere other than a Docker engine that runs jobs: the seam to a gateway.

    A runner with a backend checks its arguments and reads its files as
    always, then hands the :class:`Job` over instead of making containers;
    results, statuses, streaming and exceptions stay those of the run contract.
    """

    @property
    def address(self) -> str:
        """Where the backend is (a URL), for doctor and status."""
        ...

    def image(self, runner: AbstractDockerCodeRunner) -> str:
        """The image a runner's programs run in there."""
        ...

    def execute(
        self,
        runner: AbstractDockerCodeRunner,
        job: Job,
        budget: CopyBudget,
        on_output: OutputCallback | None,
        on_display: DisplayCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        """Run one job to its result."""
        ...

    def session(self, name: str, runner: AbstractDockerCodeRunner) -> RemoteSession:
        """A named session of the runner's language there (started on first use)."""
        ...


def configured_backend() -> Backend | None:
    """The gateway ``DOCKERMAGIC_GATEWAY`` names (with its token), or None.

    Returns:
        The backend, shared by every runner of this process, or None.

    Raises:
        InvalidArgumentError: A gateway is named but no token is set.
    """
    settings = current_settings()
    if not settings.gateway:
        return None
    # Imported here: a process without a gateway never loads the client.
    from dockermagic.gateway.client import gateway_backend

    return gateway_backend(settings.gateway, settings.token, ca=settings.gateway_ca)


class AbstractDockerCodeRunner(abc.ABC):
    """Runs source code of one language in a fresh, locked-down container.

    Subclasses declare the language through class attributes and implement
    :meth:`command` and :meth:`environment`.

    Args:
        image: The image to use; by default the runner's environment variable,
            the official image, or the offline build (see :mod:`dockermagic.images`).
        policy: Limits and hardening; :meth:`SandboxPolicy.default` when None.
        client: A Docker client; the process's shared client when None.
        on_progress: Receives progress lines (image pulls, package builds).
        labels: Extra labels on every container of this runner (e.g. a batch id).
        requirements: Third-party packages the code needs (``["numpy"]``,
            ``["lodash@4"]``): the runner then uses a derived image with them,
            built once on the host without network in any container
            (:mod:`dockermagic.packages`).
        pool: Keep this many idle containers started, so that a run starts
            at once (each still runs one program only; :mod:`dockermagic.pool`),
            or a shared :class:`~dockermagic.pool.ContainerPool`; by default
            ``DOCKERMAGIC_POOL_SIZE``, else none.
        gateway: None (default): run through the gateway ``DOCKERMAGIC_GATEWAY``
            names when it is set, else on the Docker engine; False: always on
            the Docker engine (the gateway itself); or a :class:`Backend`.
    """

    #: The language's canonical name, e.g. ``"python"``.
    language: ClassVar[str]
    #: Other names accepted by :func:`get_runner`, e.g. ``("py",)``.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: File suffixes this runner runs, e.g. ``(".py",)``.
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: The official image used when nothing else is configured.
    default_image: ClassVar[str]
    #: The environment variable that overrides :attr:`default_image`.
    image_env_var: ClassVar[str]
    #: The file name source code passed to :meth:`run` is saved as.
    filename: ClassVar[str]
    #: How to build an image offline; None when this language cannot.
    offline_image: ClassVar[OfflineImage | None] = None

    def __init__(
        self,
        *,
        image: str | None = None,
        policy: SandboxPolicy | None = None,
        client: docker.DockerClient | None = None,
        on_progress: ProgressCallback | None = None,
        labels: Mapping[str, str] | None = None,
        requirements: Iterable[str] | None = None,
        pool: int | ContainerPool | None = None,
        gateway: Backend | bool | None = None,
    ) -> None:
        self.policy = policy if policy is not None else SandboxPolicy.default()
        #: Where runs go instead of the Docker engine (a gateway), or None.
        self.backend: Backend | None = None
        if gateway is None or gateway is True:
            self.backend = configured_backend()
        elif gateway is not False:
            self.backend = gateway
        self._explicit_image = image
        self._image: str | None = None
        self._client = client
        self.on_progress = on_progress
        self.labels = dict(labels or {})
        self.requirements = normalise_requirements(self.language, requirements or ())
        if isinstance(pool, bool) or not (
            pool is None or isinstance(pool, ContainerPool) or (isinstance(pool, int) and pool >= 0)
        ):
            raise InvalidArgumentError("pool", pool, "expected a number of idle containers")
        self._pool_setting = pool if pool is not None else current_settings().pool_size

    def __repr__(self) -> str:
        image = self._image or self._explicit_image or "auto"
        return f"{type(self).__name__}(image={image!r})"

    # -- what a language must answer -------------------------------------------------

    @abc.abstractmethod
    def command(self, path: str) -> list[str]:
        """The argv that runs the program saved at ``path`` in the container.

        Args:
            path: Absolute path of the program file inside the container.

        Returns:
            The command, e.g. ``["python3", path]``.
        """

    @abc.abstractmethod
    def environment(self) -> dict[str, str]:
        """The environment variables the language needs (and nothing else).

        Returns:
            Variable names and values.
        """

    def support_files(self) -> dict[str, bytes]:
        """Files the language needs next to every program (e.g. a preload).

        Returns:
            Relative path (under the code directory) -> content; none by default.
        """
        return {}

    # -- public API -------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client (the process's shared one unless injected)."""
        if self._client is None:
            self._client = default_client()
        return self._client

    @property
    def explicit_image(self) -> str | None:
        """The image the caller named (``image=``), or None for the usual choice."""
        return self._explicit_image

    @property
    def base_image(self) -> str:
        """The image before packages: explicit, configured, official or offline."""
        if self.backend is not None:
            return self.backend.image(self)
        return runner_image(self.client, self, self._explicit_image)

    @property
    def image(self) -> str:
        """The image this runner uses (resolved, and with packages built, on first access).

        Raises:
            PackageInstallError: The requirements could not be installed.
        """
        if self._image is None:
            base = self.base_image
            if self.requirements and self.backend is None:
                base = derived_image(
                    self.client,
                    base,
                    self.language,
                    self.requirements,
                    on_progress=self.on_progress,
                )
            self._image = base
        return self._image

    def container_spec(
        self,
        command: Sequence[str],
        *,
        stdin: bool = False,
        deadline: float | None = None,
        labels: Mapping[str, str] | None = None,
        agent: bool = False,
    ) -> ContainerSpec:
        """What a container of this runner is made from (runs and sessions alike).

        Args:
            command: The container's command.
            stdin: Keep stdin open for an attached writer.
            deadline: Seconds after start at which the container kills itself.
            labels: Labels on top of the owner's and the runner's.
            agent: The command is the language's agent (see :class:`ContainerSpec`).

        Returns:
            The spec.
        """
        environment = self.environment()
        if agent:
            # The agent names the image when a program misses a package.
            environment = {**environment, "DOCKERMAGIC_IMAGE": self.image}
        return ContainerSpec(
            image=self.image,
            command=list(command),
            environment=environment,
            labels=container_labels(self.language, **{**self.labels, **dict(labels or {})}),
            policy=self.policy,
            stdin=stdin,
            deadline=deadline,
            agent=agent,
        )

    @property
    def pool(self) -> ContainerPool | None:
        """The pool this runner takes containers from (shared by configuration), or None."""
        setting, agent = self._pool_setting, self.agent
        if self.backend is not None:
            return None  # the gateway keeps its own
        if isinstance(setting, ContainerPool):
            return setting
        if not setting or agent is None:
            return None
        size = setting
        policy = self.policy
        # Host-side caps do not change a container; everything else does.
        key = (
            engine_address(self.client),
            self.language,
            self.image,
            policy.replace(output_limit=1, display_limit=1),
            tuple(sorted(self.labels.items())),
            size,
        )

        def spec() -> ContainerSpec:
            return self.container_spec(
                agent.command,
                stdin=True,
                deadline=IDLE_TTL + policy.timeout + DEADLINE_GRACE,
                labels={POOL: "1"},
                agent=True,
            )

        return pool_for(key, lambda: ContainerPool(self.client, spec, agent, size=size))

    @property
    def agent(self) -> Interpreter | None:
        """The language's agent (displays, files, sessions), or None: programs run directly."""
        return maybe_interpreter_for(self.language)

    def run(
        self,
        code: str | bytes,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        on_output: OutputCallback | None = None,
        files: Mapping[str, str | bytes] | None = None,
        filename: str | None = None,
        cancel: threading.Event | None = None,
        inputs: Mapping[str, Any] | None = None,
        on_display: DisplayCallback | None = None,
        display_last: bool | None = None,
        put: Iterable[str | os.PathLike[str]] = (),
        get: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        first_line: int = 1,
    ) -> RunResult:
        """Run source code in a new container and return what happened.

        A failing program (syntax error, exception, non-zero exit, timeout,
        out-of-memory, output flood) is a result, not an exception.

        Args:
            code: The program's source.
            timeout: Wall-clock seconds; the policy's timeout when None.
            stdin: Data for the program's standard input (closed after it);
                when None the program reads end-of-file at once.
            on_output: Called as ``on_output(stream, text)`` with each chunk of
                output while the program runs, in the order it was produced.
            files: Extra files (relative path -> content) copied next to the
                program, read-only.
            filename: The program's file name; :attr:`filename` when None.
            cancel: When this event is set, the container is killed and the
                result marked ``cancelled``.
            inputs: Notebook values (JSON-encodable) the program sees as
                variables (Python) or constants (JavaScript); its line numbers
                stay its own (:mod:`dockermagic.inputs`).
            on_display: Called as ``on_display(data, metadata)`` with each
                display (a MIME bundle), in order with the output.
            display_last: Display the value of a last expression, as a
                notebook cell does (default: no, as a script).
            put: Host files or folders copied into the working directory
                (writable; a folder keeps its name).
            get: Glob patterns of files in the working directory to bring back
                after the run (``RunResult.files``); nothing is written to disk.
            labels: Extra container labels for this run.
            name: What tracebacks call the code (a notebook's ``Cell In[5]``);
                its file name when None.
            first_line: The number tracebacks give the code's first line (2
                for a cell under its ``%%`` line).

        Returns:
            The :class:`RunResult`.

        Raises:
            EngineUnavailableError: No engine answers.
            ImageUnavailableError: The image is missing and cannot be pulled.
            InvalidArgumentError: A bad timeout, file name, input or stdin, or
                more to copy in than ``policy.copy_limit``.
            SandboxError: The container vanished or could not be created.
        """
        limit = check_timeout(timeout, self.policy.timeout)
        budget = CopyBudget(self.policy.copy_limit)
        entry = safe_relative(filename or self.filename)
        source = _encode(code)
        agent = self.agent
        if agent is None and inputs:
            # Without an agent a bootstrap defines the values, then runs the program.
            bound = bind_inputs(self.language, source, inputs, filename=entry)
            entry, source, extra = bound.filename, _encode(bound.code), bound.files
            inputs = None
        else:
            extra = {}
        program = {entry: source}
        budget.take(len(source), entry)
        for rel, content in {**dict(files or {}), **extra}.items():
            data = _encode(content)
            budget.take(len(data), rel)
            program[safe_relative(rel)] = data
        job = self._job(
            program, entry, source, limit, stdin, inputs, display_last, put, get, labels
        )
        job = dataclasses.replace(
            job, name=name, first_line=first_line, timeout_given=timeout is not None
        )
        return self._execute(job, budget, on_output, on_display, cancel)

    def run_file(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        on_output: OutputCallback | None = None,
        files: Mapping[str, str | bytes] | None = None,
        include: Iterable[str | os.PathLike[str]] = (),
        cancel: threading.Event | None = None,
        labels: Mapping[str, str] | None = None,
        on_display: DisplayCallback | None = None,
        put: Iterable[str | os.PathLike[str]] = (),
        get: Sequence[str] = (),
    ) -> RunResult:
        """Run an existing script file under its own name.

        Host files are read by the rules of :mod:`dockermagic.transfer`: only
        regular files; a symlink only when it resolves inside its own folder
        (the script's folder, or the included folder); everything together
        within ``policy.copy_limit``.

        Args:
            path: The script on the host.
            timeout: See :meth:`run`.
            stdin: See :meth:`run`.
            on_output: See :meth:`run`.
            files: See :meth:`run`.
            include: Host files or folders copied next to the script (a folder
                keeps its name), so a script can read inputs from its own folder.
            cancel: See :meth:`run`.
            labels: See :meth:`run`.
            on_display: See :meth:`run`.
            put: See :meth:`run`.
            get: See :meth:`run`.

        Returns:
            The :class:`RunResult`.

        Raises:
            InvalidArgumentError: The file does not exist, is not readable, is
                not a regular file, is a link out of its folder, or too much
                would be copied in (:class:`~dockermagic.transfer.UnsafeFileError`
                for the last three).
        """
        limit = check_timeout(timeout, self.policy.timeout)
        script = Path(path)
        budget = CopyBudget(self.policy.copy_limit)
        folder = Path(os.path.realpath(script.parent))
        entry = safe_relative(script.name, literal=True)
        source = read_host_file(script, root=folder, budget=budget)
        program = {entry: source}
        for rel, content in (files or {}).items():
            data = _encode(content)
            budget.take(len(data), rel)
            program[safe_relative(rel)] = data
        for item in include:
            program.update(read_tree(item, budget=budget))
        job = self._job(program, entry, source, limit, stdin, None, False, put, get, labels)
        job = dataclasses.replace(job, timeout_given=timeout is not None)
        return self._execute(job, budget, on_output, on_display, cancel)

    # -- one run ------------------------------------------------------------------------

    def _job(
        self,
        program: Mapping[str, bytes],
        entry: str,
        source: bytes,
        limit: float,
        stdin: str | bytes | None,
        inputs: Mapping[str, Any] | None,
        display_last: bool | None,
        put: Iterable[str | os.PathLike[str]],
        get: Sequence[str],
        labels: Mapping[str, str] | None,
    ) -> Job:
        put, get = tuple(put), tuple(get)
        if (put or get) and self.agent is None:
            raise InvalidArgumentError(
                "put/get", self.language, "files in and out need a language with an agent"
            )
        for pattern in get:
            if not isinstance(pattern, str) or not pattern or "\0" in pattern:
                raise InvalidArgumentError("get", pattern, "expected a glob pattern")
        return Job(
            code=program,
            put=put,
            entry=entry,
            source=source,
            limit=limit,
            stdin=_encode(stdin) if stdin is not None else None,
            inputs=encode_inputs(inputs) if inputs else None,
            display_last=bool(display_last),
            get=get,
            labels=labels,
        )

    def _execute(
        self,
        job: Job,
        budget: CopyBudget,
        on_output: OutputCallback | None,
        on_display: DisplayCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        if self.backend is not None:
            return self.backend.execute(self, job, budget, on_output, on_display, cancel)
        # put= folders keep their names in the working directory, as include= does.
        work: dict[str, bytes] = {}
        for item in job.put:
            work.update(read_tree(item, budget=budget))
        agent = self.agent
        # A frozen engine must not hold the caller much past the run's own
        # timeout: each set-up call gets at most that long (issue 10).
        setup = min(CALL_TIMEOUT, job.limit + SETUP_SLACK)
        collector = OutputCollector(self.policy.output_limit, on_output)
        displays = DisplayCollector(self.policy.display_limit, on_display)
        files = FileCollector(self.policy.copy_limit)
        if agent is not None:
            spec = self.container_spec(
                agent.command,
                stdin=True,
                deadline=job.limit + DEADLINE_GRACE,
                labels=job.labels,
                agent=True,
            )
        else:
            spec = self.container_spec(
                self.command(str(PurePosixPath(CODE_DIR) / job.entry)),
                stdin=job.stdin is not None,
                deadline=job.limit + DEADLINE_GRACE,
                labels=job.labels,
            )
        extra: dict[str, Any] = {}
        pool = self.pool
        warm = pool.take(job.limit + DEADLINE_GRACE) if pool is not None else None
        if warm is not None:
            box, boot = warm.box, False
        else:
            box, boot = (
                SandboxContainer.create(
                    self.client, spec, on_progress=self.on_progress, timeout=setup
                ),
                True,
            )
        finished = False
        with contextlib.ExitStack() as stack:
            # A pooled run that finished leaves its container to be removed in
            # the background (its result is in); anything else waits for it.
            stack.callback(lambda: box.remove(background=finished and warm is not None))
            if agent is None:
                box.put_files({**self.support_files(), **job.code})
            # Input written once and then ended goes through an attach of its
            # own, which is closed whole (the only end a TLS stream allows).
            feed = agent is None and job.stdin is not None
            if warm is not None:
                channel = warm.agent.channel
            else:
                channel = box.attach(stdin=False) if feed else box.attach()
            stdin_channel = box.attach_stdin() if feed else None
            if stdin_channel is not None:
                stack.callback(stdin_channel.close)
            try:
                if warm is None:
                    box.start()
                if agent is not None:
                    program: Program = self._agent_program(
                        box,
                        warm.agent if warm is not None else Agent(channel, agent),
                        job,
                        work,
                        files,
                        boot=boot,
                    )
                else:
                    if stdin_channel is not None and job.stdin is not None:
                        _feed_stdin(stdin_channel, job.stdin, job.limit)
                    program = _OneShot(box, channel)
                watch = supervise(
                    program,
                    limit=job.limit,
                    collector=collector,
                    cancel=cancel,
                    displays=displays,
                )
            finally:
                # Hang up before anything else: after a flood or a cancel the
                # engine would otherwise block writing to a socket nobody reads.
                channel.close()
            done = program.done if isinstance(program, AgentRequest) else None
            if watch.exit_code is not None:
                exit_code, oom, oom_certain = watch.exit_code, box.oom_killed, box.oom_certain
            else:
                # The exit was not seen while watching (a forced stop, a broken
                # event stream, a killed agent): ask once, briefly.
                state = (
                    box.exit_state(timeout=0.2, ask=False)
                    if watch.forced
                    else box.exit_state(timeout=SHORT_TIMEOUT)
                )
                exit_code = state.exit_code if state.exit_code is not None else -1
                oom, oom_certain = state.oom_killed, state.oom_certain
            extra["oom_certain"] = oom_certain
            if done is not None:
                extra |= {
                    "cpu_seconds": done.cpu_seconds,
                    "peak_memory_bytes": done.peak_memory_bytes,
                    "files_skipped": (*done.skipped, *files.skipped.items()),
                }
            finished = not watch.cancelled
        result = watch.result(
            collector,
            language=self.language,
            image=spec.image,
            exit_code=exit_code,
            oom_killed=oom,
            container_name=box.name,
            displays=displays,
            files=dict(files.files),
            **extra,
        )
        logger.debug(
            "%s finished: %s (%.3f s)",
            spec.name,
            result.status,
            result.duration,
            extra={"container": spec.name, "language": self.language},
        )
        return result

    def _agent_program(
        self,
        box: SandboxContainer,
        agent: Agent,
        job: Job,
        work: Mapping[str, bytes],
        files: FileCollector,
        *,
        boot: bool,
    ) -> AgentRequest:
        channel = agent.channel
        request = run_request(
            1,
            job.source,
            str(PurePosixPath(CODE_DIR) / job.entry),
            stdin=job.stdin,
            inputs=job.inputs,
            script=True,
            once=True,
            display_last=job.display_last,
            get=job.get,
            get_limit=self.policy.copy_limit,
            name=job.name,
            first_line=job.first_line,
        )
        # The agent, the files and the request go in one write, from a helper
        # thread: the agent may already print while a large file still travels.
        agent.send_soon(
            [
                *(agent.frames_to_boot() if boot else ()),
                *agent.file_frames(job.code, BASE_CODE),
                *agent.file_frames(work, BASE_WORK),
                request,
            ],
            timeout=job.limit + SETUP_SLACK,
        )
        stop = _Stopper(box, channel)
        return AgentRequest(agent, 1, stop=stop.stop, force=stop.force, files=files)


class _Stopper:
    """How a one-shot container is stopped: killed, never interrupted."""

    def __init__(self, box: SandboxContainer, channel: Channel) -> None:
        self.box = box
        self.channel = channel

    def stop(self, reason: StopReason) -> bool:
        if reason is StopReason.TIMEOUT:
            # Keep reading what the program wrote up to its kill.
            self.box.kill_soon()
            return True
        # Cancel, Ctrl-C, a flood: we stop reading, so hang up first; the
        # engine does not finish a kill while output it holds waits for a reader.
        self.channel.close()
        self.box.kill()
        return False

    def force(self) -> None:
        self.channel.close()
        self.box.kill_soon()


class _OneShot:
    """A container without an agent, as the supervisor sees it (a ``supervisor.Program``)."""

    def __init__(self, box: SandboxContainer, channel: Channel) -> None:
        self.box = box
        self.channel = channel
        self.decoder = DemuxDecoder()
        self.stream_done = False
        self.stopper = _Stopper(box, channel)

    def receive(self, timeout: float) -> list[Event]:
        if not self.stream_done:
            data = self.channel.recv(timeout)
            if data is None:
                return []
            if data:
                return [Output(stream, payload) for stream, payload in self.decoder.feed(data)]
            # The stream can end before the exit (a program that closes its
            # stdout and goes on, pitfall 9): the exit is what ends the run.
            self.stream_done = True
            timeout = 0.0
        state = self.box.wait_exit(timeout)
        if state is None:
            if self.box.exit_unknown:
                raise StreamEnded()  # the engine will not say: ask it directly
            return []
        return [Exited(state.exit_code if state.exit_code is not None else -1)]

    def stop(self, reason: StopReason) -> bool:
        return self.stopper.stop(reason)

    def force_stop(self) -> None:
        self.stopper.force()


def _encode(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)


def _feed_stdin(channel: Channel, data: bytes, limit: float) -> None:
    """Write a program's input from a helper thread, then end it (close the stdin attach)."""

    def feed() -> None:
        try:
            channel.send(data, timeout=limit)
        except OSError:
            pass  # the program exited without reading it all
        finally:
            # With StdinOnce the engine then closes the program's stdin.
            channel.close()

    threading.Thread(target=feed, name="dockermagic-stdin", daemon=True).start()


# -- languages ---------------------------------------------------------------------------


_registry: dict[str, type[AbstractDockerCodeRunner]] = {}

RunnerClass = type[AbstractDockerCodeRunner]


def register_runner(cls: RunnerClass) -> RunnerClass:
    """Add a runner class to the registry (usable as a class decorator).

    Args:
        cls: A concrete subclass of :class:`AbstractDockerCodeRunner`.

    Returns:
        The class, unchanged.

    Raises:
        InvalidArgumentError: When the class is abstract or lacks a declaration.
    """
    if abc.ABC in cls.__bases__ or getattr(cls, "__abstractmethods__", None):
        raise InvalidArgumentError("runner", cls.__name__, "is abstract")
    for attr in ("language", "default_image", "image_env_var", "filename"):
        if not getattr(cls, attr, None):
            raise InvalidArgumentError("runner", cls.__name__, f"does not declare {attr!r}")
    _registry[cls.language] = cls
    return cls


def unregister_runner(language: str) -> None:
    """Remove a language from the registry (for tests and plug-ins).

    Args:
        language: The canonical language name.
    """
    _registry.pop(language, None)


def runner_classes() -> list[RunnerClass]:
    """The registered runner classes, in registration order.

    Returns:
        The classes.
    """
    return list(_registry.values())


def runner_class_for(language_or_path: str | os.PathLike[str]) -> RunnerClass:
    """Find the runner class for a language name, alias, or file path.

    Args:
        language_or_path: ``"python"``, ``"js"``, ``"scripts/job.mjs"``...

    Returns:
        The runner class.

    Raises:
        InvalidArgumentError: When no registered runner matches.
    """
    key = os.fspath(language_or_path)
    lowered = key.lower().strip()
    for cls in _registry.values():
        if lowered == cls.language or lowered in cls.aliases:
            return cls
    suffix = PurePosixPath(lowered.replace("\\", "/")).suffix
    if suffix:
        for cls in _registry.values():
            if suffix in cls.suffixes:
                return cls
    known = ", ".join(sorted(c.language for c in _registry.values()))
    raise InvalidArgumentError("language", key, f"no runner for it (known: {known})")


def get_runner(language_or_path: str | os.PathLike[str], **kwargs: Any) -> AbstractDockerCodeRunner:
    """Make a runner for a language name, alias, or file path.

    Args:
        language_or_path: See :func:`runner_class_for`.
        **kwargs: Passed to the runner's constructor (``image``, ``policy``...).

    Returns:
        A runner instance.
    """
    return runner_class_for(language_or_path)(**kwargs)


@register_runner
class PythonDockerRunner(AbstractDockerCodeRunner):
    """Runs Python 3 code."""

    language = "python"
    aliases = ("py", "python3")
    suffixes = (".py",)
    default_image = "python:3.12-slim"
    image_env_var = "DOCKERMAGIC_PYTHON_IMAGE"
    filename = "main.py"
    offline_image = OfflineImage(
        tag="dockermagic/python:offline",
        # python3 brings the whole standard library (multiprocessing, gzip...);
        # pytest lets the teaching notebooks run tests inside the sandbox;
        # numpy, pandas and matplotlib make plots and tables work out of the
        # box (Debian's packages: 1.2 GB with what they depend on, against
        # 150 MB without; a cold print(1) costs the same).
        packages=(
            "python3",
            "python3-pytest",
            "python3-numpy",
            "python3-pandas",
            "python3-matplotlib",
        ),
        hooks=('ln -sf python3 "$1/usr/bin/python"',),
        cmd=("python3",),
    )

    def command(self, path: str) -> list[str]:
        """Run the file with the image's ``python3``."""
        return ["python3", path]

    def environment(self) -> dict[str, str]:
        """Unbuffered UTF-8 output, no bytecode files, HOME in the work dir."""
        return {
            # Block-buffered stdout loses output on a timeout kill (pitfall 12).
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUTF8": "1",
            "HOME": self.policy.workdir,
        }


_NODE_PRELOAD = ".dockermagic/stdio.js"
_NODE_STDIO_PRELOAD = b"""\
for (const stream of [process.stdout, process.stderr]) {
  if (stream._handle && typeof stream._handle.setBlocking === "function") {
    stream._handle.setBlocking(true);
  }
}
"""


@register_runner
class JavaScriptDockerRunner(AbstractDockerCodeRunner):
    """Runs JavaScript with Node.js (``.mjs`` as an ES module, ``.cjs``/``.js`` as CommonJS)."""

    language = "javascript"
    aliases = ("js", "node", "nodejs")
    suffixes = (".js", ".mjs", ".cjs")
    default_image = "node:22-slim"
    image_env_var = "DOCKERMAGIC_JS_IMAGE"
    filename = "main.js"
    offline_image = OfflineImage(
        tag="dockermagic/node:offline",
        packages=("nodejs",),
        cmd=("node",),
    )

    def command(self, path: str) -> list[str]:
        """Run the file with ``node``, after the stdio preload."""
        return ["node", "--require", f"{CODE_DIR}/{_NODE_PRELOAD}", path]

    def support_files(self) -> dict[str, bytes]:
        """A preload that makes stdout/stderr blocking.

        Node writes to pipes asynchronously here, so ``process.exit()`` right
        after a large write dropped everything past the first 64 KiB (pitfall
        12). Blocking writes keep it all.
        """
        return {_NODE_PRELOAD: _NODE_STDIO_PRELOAD}

    def environment(self) -> dict[str, str]:
        """No colour codes in captured output, HOME in the work dir."""
        return {"NODE_DISABLE_COLORS": "1", "HOME": self.policy.workdir}

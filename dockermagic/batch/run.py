"""The entry point: :func:`run_scripts` runs a folder's scripts and reports.

It checks the arguments, discovers the scripts, gets each language's image
ready once, in this process, before any script starts (a pull, or a derived
image with the scripts' packages: workers never race to build it, and the
progress shows as ``prepare`` events), builds one
:class:`~dockermagic.batch.script.Task` per script, and hands them to the
sequential path or the pool of workers under one stop policy. At the end the
batch's container pools are closed and its containers swept
(:mod:`~dockermagic.batch.sweep`). Logging is the caller's choice: a front
end passes its log sink; a plain library call logs only where the
application already logs (see :func:`run_scripts`).

With ``DOCKERMAGIC_GATEWAY`` set, nothing of that happens here: each script
is a run through the gateway (:mod:`~dockermagic.batch.gateway`), which owns
images, packages and containers; the rest (events, logs, the report) is the same.

Packages that cannot be had (:class:`~dockermagic.errors.PackageInstallError`)
fail the scripts of that language only: each is an ``error`` whose message is
the one-line reason; the other languages' scripts run. A requirements file
that cannot be read or parsed is bad input: :func:`run_scripts` raises before
anything runs.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import docker

from dockermagic.batch.backend import BACKENDS, Backend, ScriptBackend
from dockermagic.batch.cache import RunnerCache
from dockermagic.batch.discovery import Discovery, discover_scripts, select_scripts
from dockermagic.batch.displays import prepare_outputs_dir
from dockermagic.batch.gateway import GatewayScripts, gateway_ceiling, gateway_limit
from dockermagic.batch.pool import run_parallel
from dockermagic.batch.report import BatchEvent, BatchReport, EventCallback
from dockermagic.batch.requirements import merge_requirements, read_folder_requirements
from dockermagic.batch.script import Task
from dockermagic.batch.sequential import run_sequential
from dockermagic.batch.stop import StopPolicy
from dockermagic.batch.swarm import (
    SwarmBackend,
    check_manager,
    prepare_swarm_images,
    swarm_limit,
)
from dockermagic.batch.sweep import sweep_batch
from dockermagic.batch.threads import run_threaded
from dockermagic.engine import default_client
from dockermagic.errors import DockermagicError, InvalidArgumentError, PackageInstallError
from dockermagic.images import ensure_image, runner_image
from dockermagic.logs import LogSink, current_sink, start_logging
from dockermagic.packages import derived_image
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import runner_class_for
from dockermagic.settings import current_settings

__all__ = ["FRONT_END_POOL", "Mode", "default_workers", "front_end_pool", "run_scripts"]

logger = logging.getLogger(__name__)

Mode = Literal["sequential", "parallel"]

#: Idle containers the front ends' batches keep per worker and configuration
#: (``dockermagic run``, the panel); a library call keeps none unless asked.
FRONT_END_POOL = 2


def front_end_pool(explicit: int | None = None) -> int:
    """The pool size a front end's batch uses.

    Args:
        explicit: What the user chose (``--pool N``), if anything.

    Returns:
        ``explicit``, else ``DOCKERMAGIC_POOL_SIZE``, else :data:`FRONT_END_POOL`.
    """
    if explicit is not None:
        return explicit
    configured = current_settings().pool_size
    return configured if configured is not None else FRONT_END_POOL


def default_workers(scripts: int) -> int:
    """A sensible worker count: one per CPU, no more than there are scripts.

    Each container may use one CPU (the default policy), so more workers than
    CPUs only help scripts that mostly wait.

    Args:
        scripts: How many scripts the batch has.

    Returns:
        At least 1.
    """
    return max(1, min(scripts, os.cpu_count() or 1))


def run_scripts(
    directory: str | os.PathLike[str],
    *,
    mode: Mode = "sequential",
    workers: int | None = None,
    timeout: float | None = None,
    fail_fast: bool = False,
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    log_sink: LogSink | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    images: Mapping[str, str] | None = None,
    policy: SandboxPolicy | None = None,
    only: Iterable[str] | None = None,
    pool: int | None = None,
    requirements: Mapping[str, Iterable[str]] | None = None,
    outputs_dir: str | os.PathLike[str] | None = None,
    backend: Backend = "local",
) -> BatchReport:
    """Run every script of a folder, each in its own container.

    Where the output goes: with ``log_sink`` (what front ends pass), into that
    sink; with ``log_dir``, into a sink started for this call and stopped at its
    end; with neither, into the sink the application already runs in this
    process (:func:`dockermagic.logs.current_sink`), if any, and otherwise
    nowhere: a plain library call creates no folder, starts no writer and leaves
    the logging configuration alone.

    Args:
        directory: The scripts folder (see :mod:`dockermagic.batch` for the rules).
        mode: ``"sequential"`` or ``"parallel"``.
        workers: Worker processes in parallel mode; :func:`default_workers`
            when None. Never more than there are scripts. With the Swarm
            backend: tasks at once (default: the CPUs of the ready nodes).
        timeout: Wall-clock seconds per script; the policy's when None.
        fail_fast: After the first script that does not succeed, start no
            further script and kill the running ones (reported ``cancelled``).
        on_event: Receives :class:`BatchEvent` objects (start, output, finish)
            in the calling thread.
        cancel: Setting this event cancels the batch (as Ctrl-C does).
        log_sink: Where outputs and the application log go.
        log_dir: Log into this directory (see :func:`dockermagic.logs.log_directory`)
            when no ``log_sink`` is given.
        images: Image per language (``{"python": "python:3.12"}``); names or
            aliases as keys. The runners' usual choice for the others.
        policy: The sandbox policy; :meth:`SandboxPolicy.default` when None.
        only: Run just these scripts (file names); the whole folder when None.
        pool: Idle containers kept started per worker and configuration, so
            that a script starts at once in a container no code has run in
            (0: none); the runners' default (``DOCKERMAGIC_POOL_SIZE``, else
            none) when None. Every idle container is removed before this
            returns.
        requirements: Packages per language (names or aliases as keys):
            ``{"python": ["tabulate"], "javascript": ["lodash@4"]}``. A
            language given here replaces the folder's ``requirements.txt`` or
            ``package.json``; an empty list clears it. Each language's
            derived image is built once, before any script starts.
        outputs_dir: Write each script's displays (plots, tables, HTML) to
            files here (see :mod:`~dockermagic.batch.displays`); they are
            listed in :attr:`ScriptResult.outputs`.
        backend: ``"local"`` (a container on the engine the client talks to)
            or ``"swarm"`` (a one-off task on any node of the Swarm whose
            manager ``DOCKER_HOST`` names; see :mod:`dockermagic.batch.swarm`:
            no displays, pools or packages there), or ``"gateway"`` (a
            one-shot run through the gateway ``DOCKERMAGIC_GATEWAY`` names;
            see :mod:`dockermagic.batch.gateway`). With a gateway set,
            ``"local"`` means the gateway: the process has no engine of its own.

    Returns:
        The :class:`BatchReport`.

    Raises:
        InvalidArgumentError: A missing or empty folder, a folder without
            runnable scripts, a bad mode, worker count, timeout, pool size,
            requirement, requirements file or outputs folder; a Swarm batch
            whose engine is not a Swarm manager, or with a gateway set; a
            gateway batch with none set.
        LogDirectoryError: ``log_dir`` cannot be created or written (checked
            before any script runs).
        EngineUnavailableError: No Docker Engine answers.
        GatewayUnavailableError: The gateway does not answer.
    """
    _validate(mode, workers, timeout, pool, backend)
    backend = _backend_in_force(backend)
    discovery = discover_scripts(directory)
    if only is not None:
        discovery = select_scripts(discovery, only)
    chosen_images = _normalise_images(images)
    packages = merge_requirements(
        read_folder_requirements(Path(directory), discovery.requirement_files), requirements
    )
    # Only the languages that run: a package.json beside Python scripts builds nothing.
    present = {discovery.language_of(path) for path in discovery.scripts}
    packages = {language: specs for language, specs in packages.items() if language in present}
    outputs = str(prepare_outputs_dir(outputs_dir)) if outputs_dir is not None else ""
    policy = policy if policy is not None else SandboxPolicy.default()
    if timeout is not None:
        # The batch's timeout is its scripts' policy: a pool's idle containers
        # are made to live long enough for a run of exactly this length.
        policy = policy.replace(timeout=float(timeout))
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    clock = time.monotonic()
    run_id = secrets.token_hex(6)
    own_sink = log_sink is None and log_dir is not None
    sink = start_logging(log_dir) if own_sink else (log_sink or current_sink())
    client: docker.DockerClient | None = None
    runners: ScriptBackend | None = None
    swarm = backend == "swarm"
    through_gateway = backend == "gateway"
    try:
        if through_gateway:
            # Asked before anything runs: a gateway that does not answer
            # fails the call (GatewayUnavailableError), as a missing engine does.
            gateway_runs = gateway_limit(len(discovery.scripts))
        else:  # a gateway's client holds no Docker socket
            client = default_client()
        if swarm:
            assert client is not None
            check_manager(client)
        dispatcher = _Dispatcher(on_event)
        total = len(discovery.scripts)
        tasks = _tasks(
            discovery,
            client,
            chosen_images,
            packages,
            timeout,
            run_id,
            sink,
            outputs,
            dispatcher,
            swarm=swarm,
        )
        if mode == "sequential":
            count = 1
        elif through_gateway:
            count = min(workers or gateway_runs, total)
            most = gateway_ceiling()
            if most is not None and count > most:
                # More would be refused as over the quota; these many wait
                # their turn in the gateway's queue instead.
                logger.info("batch %s: %d at once is the gateway's most", run_id, most)
                count = most
        else:
            assert client is not None
            fallback = swarm_limit(client, total) if swarm else default_workers(total)
            count = min(workers or fallback, total)
        logger.info(
            "batch %s: %d script(s) from %s, %s on %s, %d at once, pool %s",
            run_id,
            total,
            directory,
            mode,
            backend,
            count,
            "default" if pool is None else pool,
        )
        stop = StopPolicy(cancel if cancel is not None else threading.Event(), fail_fast)
        if swarm or through_gateway:
            if through_gateway:
                runners = GatewayScripts(policy, packages)
            else:
                runners = SwarmBackend(policy, run_id, limit=count)
            if mode == "sequential":
                results = run_sequential(tasks, runners, dispatcher, stop)
            else:
                results = run_threaded(tasks, count, runners, dispatcher, stop)
        elif mode == "sequential":
            assert client is not None
            runners = RunnerCache(policy, run_id, client, pool=pool)
            results = run_sequential(tasks, runners, dispatcher, stop)
        else:
            results = run_parallel(
                tasks,
                count,
                policy,
                dispatcher,
                stop,
                run_id=run_id,
                log_queue=sink.queue if sink is not None else None,
                pool_size=pool,
            )
        # Scripts that never started still get their one finish event.
        for task, result in zip(tasks, results, strict=True):
            if task.name not in dispatcher.finished:
                dispatcher(task.event("finish", result=result))
        report = BatchReport(
            directory=str(directory),
            mode=mode,
            workers=count,
            run_id=run_id,
            results=tuple(results),
            ignored=discovery.ignored,
            wall_time=time.monotonic() - clock,
            started_at=started_at,
            log_dir=str(sink.directory) if sink is not None else "",
            cancelled=stop.cancelled,
            requirements=packages,
            pool=0 if swarm or through_gateway else _pool_size(pool),
            outputs_dir=outputs,
            backend=backend,
        )
        totals = ", ".join(f"{n} {s}" for s, n in report.totals.items() if n)
        logger.info("batch %s finished in %.2f s: %s", run_id, report.wall_time, totals)
        return report
    finally:
        # The sequential path's pools are this process's; the workers closed
        # their own on their way out; a Swarm backend removes what is left of
        # its services. Then nothing of the batch may be left.
        if runners is not None:
            runners.close()
        if client is not None:
            sweep_batch(client, run_id)
        if sink is not None:
            sink.flush()
            if own_sink:
                sink.stop()


def _backend_in_force(backend: Backend) -> Backend:
    """The backend a batch runs on: a process with a gateway set runs through it.

    Raises:
        InvalidArgumentError: ``"gateway"`` with no gateway set, or ``"swarm"``
            with one (the gateway holds the engine).
    """
    gateway = current_settings().gateway
    if gateway and backend == "swarm":
        raise InvalidArgumentError(
            "backend",
            backend,
            f"this process runs through the gateway {gateway} (DOCKERMAGIC_GATEWAY), which "
            "holds the engine; unset it to run a batch on a Swarm",
        )
    if backend == "gateway" and not gateway:
        raise InvalidArgumentError(
            "backend", backend, "no gateway is configured: set DOCKERMAGIC_GATEWAY"
        )
    return "gateway" if gateway else backend


def _pool_size(pool: int | None) -> int:
    """The pool size in force: the argument, else the settings' default, else none."""
    if pool is not None:
        return pool
    return current_settings().pool_size or 0


def _validate(
    mode: str, workers: int | None, timeout: float | None, pool: int | None, backend: str
) -> None:
    if mode not in ("sequential", "parallel"):
        raise InvalidArgumentError("mode", mode, "expected 'sequential' or 'parallel'")
    if backend not in BACKENDS:
        raise InvalidArgumentError("backend", backend, f"expected one of {', '.join(BACKENDS)}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise InvalidArgumentError("workers", workers, "must be a positive whole number")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise InvalidArgumentError("timeout", timeout, "must be a positive number of seconds")
    if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 0):
        raise InvalidArgumentError("pool", pool, "must be a number of idle containers (0: none)")


def _normalise_images(images: Mapping[str, str] | None) -> dict[str, str]:
    normalised: dict[str, str] = {}
    for key, image in (images or {}).items():
        if image:
            normalised[runner_class_for(key).language] = image
    return normalised


def _prepare_images(
    client: docker.DockerClient,
    languages: Iterable[str],
    images: Mapping[str, str],
    packages: Mapping[str, tuple[str, ...]],
    emit: EventCallback,
    total: int,
) -> dict[str, tuple[str, str]]:
    """Get each language's image ready once, in this process, before any script starts.

    A pull or a package build reports its progress as ``prepare`` events. A
    language whose image cannot be had, or whose packages cannot, gets its
    reason instead, and its scripts become ``error`` results.

    Returns:
        language -> (image, error message or '').
    """
    prepared: dict[str, tuple[str, str]] = {}
    for language in sorted(set(languages)):
        cls = runner_class_for(language)

        def report(line: str, language: str = language) -> None:
            emit(BatchEvent("prepare", "", language, -1, total, text=line))

        image = ""
        try:
            image = runner_image(client, cls, images.get(language))
            ensure_image(client, image, on_progress=report)
            specs = packages.get(language, ())
            if specs:
                image = derived_image(client, image, language, specs, on_progress=report)
        except PackageInstallError as exc:
            logger.warning("%s packages for the batch: %s", language, exc)
            report(f"{language} packages: {exc}")
            prepared[language] = (image, str(exc))
            continue
        except DockermagicError as exc:
            prepared[language] = (image, str(exc))
            continue
        prepared[language] = (image, "")
    return prepared


def _tasks(
    discovery: Discovery,
    client: docker.DockerClient | None,
    images: Mapping[str, str],
    packages: Mapping[str, tuple[str, ...]],
    timeout: float | None,
    run_id: str,
    sink: LogSink | None,
    outputs_dir: str,
    emit: EventCallback,
    *,
    swarm: bool = False,
) -> list[Task]:
    languages = [discovery.language_of(path) for path in discovery.scripts]
    total = len(discovery.scripts)
    if client is None:
        # Through a gateway: it chooses, pulls or builds the images (the
        # caller's choice goes with each run, and is refused there if not allowed).
        prepared = {language: (images.get(language, ""), "") for language in set(languages)}
    elif swarm:
        prepared = prepare_swarm_images(client, languages, images, packages)
    else:
        prepared = _prepare_images(client, languages, images, packages, emit, total)
    include = (str(discovery.data_dir),) if discovery.data_dir and not discovery.data_error else ()
    return [
        Task(
            index=i,
            total=total,
            path=str(path),
            name=path.name,
            language=language,
            image=prepared[language][0],
            problem=discovery.data_error or prepared[language][1],
            include=include,
            timeout=timeout,
            run_id=run_id,
            log_file=str(sink.output_path(path.name)) if sink is not None else "",
            outputs_dir=outputs_dir,
        )
        for i, (path, language) in enumerate(zip(discovery.scripts, languages, strict=True))
    ]


class _Dispatcher:
    """Delivers events to ``on_event`` in the calling thread and remembers the finishes."""

    def __init__(self, on_event: EventCallback | None) -> None:
        self.on_event = on_event
        self.finished: set[str] = set()

    def __call__(self, event: BatchEvent) -> None:
        if event.kind == "finish":
            self.finished.add(event.script)
        if self.on_event is not None:
            self.on_event(event)

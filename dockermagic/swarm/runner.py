"""One script as a one-off Swarm task, with the run contract of a local runner.

:class:`SwarmRunner` takes a language's command, environment and support
files from its local runner, makes the task
(:class:`~dockermagic.swarm.lifecycle.SwarmTask`), lets the supervisor watch
it (:class:`~dockermagic.swarm.lifecycle.TaskProgram`), removes it, and
returns the same :class:`~dockermagic.result.RunResult` a local run does, with
the node it ran on. A node that fails the wrapper's isolation check ran
nothing: that is a :class:`~dockermagic.errors.SwarmError` naming the node and
its set-up.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

import docker

from dockermagic.container import DEADLINE_GRACE
from dockermagic.engine import engine_address
from dockermagic.errors import SwarmError
from dockermagic.labels import DEADLINE, container_labels
from dockermagic.policy import CODE_DIR, SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.runners import AbstractDockerCodeRunner
from dockermagic.streams import DisplayCallback, OutputCallback, OutputCollector
from dockermagic.supervisor import check_timeout, supervise
from dockermagic.swarm.lifecycle import START_TIMEOUT, SwarmTask, TaskProgram
from dockermagic.swarm.task import NODE_SETUP, WORKDIR, TaskSpec
from dockermagic.transfer import CopyBudget, read_host_file, read_tree, safe_relative

__all__ = ["SwarmRunner"]

logger = logging.getLogger(__name__)


class SwarmRunner:
    """Runs script files as one-off Swarm tasks, with the run contract of a local runner.

    The language's command, environment and support files come from its
    local runner (``HOME`` becomes :data:`~dockermagic.swarm.task.WORKDIR`).
    What a local run has and a task has not: no stdin, no displays or files
    out (those need the agent, which reads from stdin), no container pool.
    CPU seconds and peak memory come from the task's wrapper
    (:data:`~dockermagic.swarm.task.WRAPPER`).

    Args:
        runner: The language's local runner (never asked to run anything).
        client: A client of a Swarm manager.
        labels: Extra labels on every service (e.g. a batch's id).
        start_timeout: Seconds a task may take to start.
    """

    def __init__(
        self,
        runner: AbstractDockerCodeRunner,
        client: docker.DockerClient,
        *,
        labels: Mapping[str, str] | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.runner = runner
        self.client = client
        self.labels = dict(labels or {})
        self.start_timeout = start_timeout
        #: The services this runner made (all removed by the time a run returns;
        #: their tasks may still be leaving their nodes).
        self.service_ids: list[str] = []

    @property
    def language(self) -> str:
        """The language's canonical name."""
        return self.runner.language

    @property
    def policy(self) -> SandboxPolicy:
        """The runner's policy."""
        return self.runner.policy

    def __repr__(self) -> str:
        return f"SwarmRunner({self.language!r} on {engine_address(self.client)})"

    def task_spec(self, files: Mapping[str, bytes], entry: str, limit: float) -> TaskSpec:
        """The task for a program whose files are read.

        Args:
            files: Path under ``/code`` -> content (the program's included).
            entry: The program's path under ``/code``.
            limit: Its timeout.

        Returns:
            The spec.
        """
        deadline = limit + DEADLINE_GRACE
        # Past this moment the task has certainly killed itself: cleanup may go.
        ends = time.time() + self.start_timeout + deadline
        return TaskSpec(
            image=self.runner.image,
            command=self.runner.command(str(PurePosixPath(CODE_DIR) / entry)),
            environment={**self.runner.environment(), "HOME": WORKDIR},
            labels=container_labels(self.language, **{**self.labels, DEADLINE: f"{ends:.0f}"}),
            policy=self.policy,
            files={**self.runner.support_files(), **files},
            deadline=deadline,
        )

    def run_file(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        include: Iterable[str | os.PathLike[str]] = (),
        cancel: threading.Event | None = None,
        on_display: DisplayCallback | None = None,
    ) -> RunResult:
        """Run a script file as a one-off task on any node and wait for it.

        Host files are read by the rules of :mod:`dockermagic.transfer`, as
        for a local run, and each must fit a config
        (:data:`~dockermagic.swarm.task.CONFIG_LIMIT`).

        Args:
            path: The script on the host.
            timeout: Wall-clock seconds from the task's start; the policy's when None.
            on_output: Receives ``(stream, text)`` chunks as the node logs them.
            include: Host files or folders copied next to the script.
            cancel: Setting it removes the service (reported ``cancelled``).
            on_display: Accepted for the run contract; a task makes no displays.

        Returns:
            The result, with :attr:`~dockermagic.result.RunResult.node`.

        Raises:
            SwarmError: No node ran it, its node is not set up
                (:data:`~dockermagic.swarm.task.NODE_SETUP`), the task vanished,
                the manager refused.
            InvalidArgumentError: A file cannot be copied in (see
                :mod:`dockermagic.transfer`) or is too large for a config.
            EngineUnavailableError: No engine answers.
        """
        limit = check_timeout(timeout, self.policy.timeout)
        script = Path(path)
        budget = CopyBudget(self.policy.copy_limit)
        folder = Path(os.path.realpath(script.parent))
        entry = safe_relative(script.name, literal=True)
        files = {entry: read_host_file(script, root=folder, budget=budget)}
        for item in include:
            files.update(read_tree(item, budget=budget))
        return self.run_files(files, entry, timeout=limit, on_output=on_output, cancel=cancel)

    def run_files(
        self,
        files: Mapping[str, bytes],
        entry: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run a program whose files are already read as a one-off task and wait for it.

        What :meth:`run_file` does once it has read the host's files (a
        gateway's runs arrive as bytes): the caller has checked the names
        (relative, inside ``/code``) and the copy budget.

        Args:
            files: Path under ``/code`` -> content, the program's included.
            entry: The program's path under ``/code``.
            timeout: Wall-clock seconds from the task's start; the policy's when None.
            on_output: Receives ``(stream, text)`` chunks as the node logs them.
            cancel: Setting it removes the service (reported ``cancelled``).

        Returns:
            The result, with :attr:`~dockermagic.result.RunResult.node`.

        Raises:
            SwarmError: See :meth:`run_file`.
            InvalidArgumentError: A file is too large for a config.
            EngineUnavailableError: No engine answers.
        """
        limit = check_timeout(timeout, self.policy.timeout)
        spec = self.task_spec(files, entry, limit)
        collector = OutputCollector(self.policy.output_limit, on_output)
        task = SwarmTask.create(self.client, spec)
        self.service_ids.append(task.service_id)
        program: TaskProgram | None = None
        try:
            started = task.wait_started(timeout=self.start_timeout, cancel=cancel)
            if started is None:
                return RunResult(
                    language=self.language,
                    image=spec.image,
                    exit_code=-1,
                    stdout="",
                    stderr="",
                    duration=0.0,
                    cancelled=True,
                    container_name=spec.name,
                    node=task.last.node if task.last is not None else "",
                )
            program = TaskProgram(task)
            watch = supervise(program, limit=limit, collector=collector, cancel=cancel)
        finally:
            if program is not None:
                program.close()
            task.remove()
        state = program.state or started
        problem = program.not_isolated
        if problem:
            raise SwarmError(
                f"node {state.node} is not isolated ({problem}): nothing ran; {NODE_SETUP}",
                node=state.node,
            )
        if program.problem and watch.reason is None:
            raise SwarmError(program.problem, node=state.node)
        if program.exit_code is not None:
            exit_code = program.exit_code
        else:
            exit_code = 137 if watch.reason is not None else -1
        duration, cpu, peak = program.usage
        result = watch.result(
            collector,
            language=self.language,
            image=spec.image,
            exit_code=exit_code,
            oom_killed=program.oom_killed,
            container_name=spec.name,
            node=state.node,
            cpu_seconds=cpu,
            peak_memory_bytes=peak,
        )
        if duration is not None and watch.reason is None:
            # The host saw the task only from its first look at it: the
            # wrapper's own clock (1/100 s) knows when the program ran.
            result = dataclasses.replace(result, duration=duration)
        logger.debug(
            "%s on node %s: %s (%.3f s)", spec.name, state.node, result.status, result.duration
        )
        return result

"""The outcome of one run: :class:`RunResult`, and how a failure is put in words."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockermagic.policy import size_text
from dockermagic.status import Status

if TYPE_CHECKING:
    from dockermagic.policy import SandboxPolicy

__all__ = ["RunResult"]


@dataclass(frozen=True)
class RunResult:
    """What happened when a program ran in a container.

    A failing program is a result, not an exception: inspect ``ok`` and
    ``status``.

    Attributes:
        language: The runner's language name (``"python"``, ``"javascript"``).
        image: The image the container ran.
        exit_code: The program's exit status (137 when it was killed; -1 when
            the engine never reported one).
        stdout: Everything the program wrote to standard output (up to the cap).
        stderr: Everything the program wrote to standard error (up to the cap).
        duration: Seconds from container start until its output ended.
        timed_out: The wall-clock limit was reached and the container killed.
        oom_killed: The kernel killed the program for exceeding its memory limit.
        output_truncated: The output cap was reached and the container killed.
        cancelled: The caller cancelled the run and the container was killed.
        container_name: The (already removed) container's name, for the logs.
        displays: What the program displayed (``display()``, plots, the last
            expression of a cell), in order: MIME bundles shaped like
            Jupyter's ``display_data`` ``data`` (text as ``str``, binary types
            base64-encoded ``str``).
        displays_dropped: Displays dropped past the display cap.
        files: Files fetched from the working directory after the run
            (``get=``): relative path -> content.
        files_skipped: Files that matched ``get=`` but were not fetched,
            with the reason: ``(path, reason)``.
        cpu_seconds: CPU time (user + system) the program and its children
            used; None where the runner cannot tell.
        peak_memory_bytes: The program's peak resident memory; None where
            the runner cannot tell.
        node: The Swarm node (its id) the program ran on; '' when it ran on
            the engine the client talks to.
        oom_certain: The engine reported that OOM kill. False when it was
            inferred: an engine that never reports one (Podman 4.3) saw the
            program die of a SIGKILL that neither dockermagic nor the deadline
            sent (the program killing itself so is the rare other cause).
    """

    language: str
    image: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    oom_killed: bool = False
    output_truncated: bool = False
    cancelled: bool = False
    container_name: str = ""
    displays: tuple[dict[str, Any], ...] = ()
    displays_dropped: int = 0
    files: Mapping[str, bytes] = field(default_factory=dict)
    files_skipped: tuple[tuple[str, str], ...] = ()
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    node: str = ""
    oom_certain: bool = True

    @property
    def ok(self) -> bool:
        """True when the program exited 0 and was not stopped by a limit."""
        return self.status is Status.OK

    @property
    def status(self) -> Status:
        """One word for the outcome.

        Returns:
            ``cancelled``, ``timed_out``, ``oom``, ``truncated``, ``failed``
            (non-zero exit) or ``ok``, checked in that order.
        """
        if self.cancelled:
            return Status.CANCELLED
        if self.timed_out:
            return Status.TIMED_OUT
        if self.oom_killed:
            return Status.OOM
        if self.output_truncated:
            return Status.TRUNCATED
        if self.exit_code != 0:
            return Status.FAILED
        return Status.OK

    def describe(self, policy: SandboxPolicy | None = None) -> str:
        """A one-line, plain-language account of a failure (or of success).

        Args:
            policy: The limits the program ran under; named in the text when given.

        Returns:
            E.g. ``"timed out after 2 s and was killed"`` or ``"exited with status 1"``.
        """
        if self.cancelled:
            return "was cancelled"
        if self.timed_out:
            seconds = f"{policy.timeout:g}" if policy is not None else f"{self.duration:.1f}"
            return f"timed out after {seconds} s and was killed"
        if self.oom_killed:
            limit = f" (limit {size_text(policy.memory)})" if policy is not None else ""
            if not self.oom_certain:
                return (
                    f"was killed (SIGKILL), most likely for running out of memory{limit}: "
                    "the engine did not report an OOM kill"
                )
            return f"ran out of memory{limit} and was killed"
        if self.output_truncated:
            amount = (
                f"more than {size_text(policy.output_limit)} of" if policy is not None else "more"
            )
            return f"printed {amount} output and was killed"
        if self.exit_code != 0:
            return f"exited with status {self.exit_code}"
        return f"succeeded in {self.duration:.2f} s"

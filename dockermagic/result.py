"""The outcome of one run: :class:`RunResult`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunResult"]


@dataclass(frozen=True)
class RunResult:
    """What happened when a program ran in a container.

    A failing program is a result, not an exception: inspect ``ok`` and
    ``status``.

    Attributes:
        language: The runner's language name (``"python"``, ``"javascript"``).
        image: The image the container ran.
        exit_code: The program's exit status (137 when it was killed).
        stdout: Everything the program wrote to standard output (up to the cap).
        stderr: Everything the program wrote to standard error (up to the cap).
        duration: Seconds from container start until its output ended.
        timed_out: The wall-clock limit was reached and the container killed.
        oom_killed: The kernel killed the program for exceeding its memory limit.
        output_truncated: The output cap was reached and the container killed.
        cancelled: The caller cancelled the run and the container was killed.
        container_name: The (already removed) container's name, for the logs.
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

    @property
    def ok(self) -> bool:
        """True when the program exited 0 and was not stopped by a limit."""
        return self.status == "ok"

    @property
    def status(self) -> str:
        """One word for the outcome.

        Returns:
            ``"cancelled"``, ``"timed_out"``, ``"oom"``, ``"truncated"``,
            ``"failed"`` (non-zero exit) or ``"ok"``, checked in that order.
        """
        if self.cancelled:
            return "cancelled"
        if self.timed_out:
            return "timed_out"
        if self.oom_killed:
            return "oom"
        if self.output_truncated:
            return "truncated"
        if self.exit_code != 0:
            return "failed"
        return "ok"

    def describe(self) -> str:
        """A one-line, plain-language account of a failure (or of success).

        Returns:
            E.g. ``"timed out after 2.0 s"`` or ``"exited with status 1"``.
        """
        if self.cancelled:
            return "was cancelled"
        if self.timed_out:
            return f"timed out after {self.duration:.1f} s and was killed"
        if self.oom_killed:
            return "ran out of memory and was killed"
        if self.output_truncated:
            return "produced more output than allowed and was killed"
        if self.exit_code != 0:
            return f"exited with status {self.exit_code}"
        return f"succeeded in {self.duration:.2f} s"

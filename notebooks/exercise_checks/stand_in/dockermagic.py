"""A stand-in for dockermagic inside a container, for notebook 07's exercises.

A container has neither dockermagic nor a Docker Engine. This module gives
the exercise cells what they import, with the same shape: the runner base
class with its two abstract methods and its ``policy``,
``PythonDockerRunner``'s class attributes, ``SandboxPolicy``'s defaults, and
``RunResult`` with its fields, ``ok``, ``status`` and ``describe()``. It runs
nothing: ``run()`` says so.

The ``exercises`` session finds it in its working directory (``--put``);
the checks load the same file before the student's cell.
"""

import abc
import dataclasses
import enum

__all__ = [
    "AbstractDockerCodeRunner",
    "PythonDockerRunner",
    "RunResult",
    "SandboxPolicy",
    "Status",
]


class Status(str, enum.Enum):
    """How a run ended, as one word (a ``str``: ``Status.OK == "ok"``)."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    OOM = "oom"
    TRUNCATED = "truncated"
    CANCELLED = "cancelled"

    def __str__(self):
        return self.value

    def __repr__(self):
        return repr(self.value)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What happened when a program ran in a container."""

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
    def ok(self):
        """True when the program exited 0 and was not stopped by a limit."""
        return self.status is Status.OK

    @property
    def status(self):
        """cancelled, timed_out, oom, truncated, failed or ok, checked in that order."""
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

    def describe(self, policy=None):
        """A one-line account of how the run ended (``policy``: its limits, unused here)."""
        if self.cancelled:
            return "was cancelled"
        if self.timed_out:
            return f"timed out after {self.duration:.1f} s and was killed"
        if self.oom_killed:
            return "ran out of memory and was killed"
        if self.output_truncated:
            return "printed more output and was killed"
        if self.exit_code != 0:
            return f"exited with status {self.exit_code}"
        return f"succeeded in {self.duration:.2f} s"


@dataclasses.dataclass(frozen=True)
class SandboxPolicy:
    """Limits and hardening applied to every container (the defaults)."""

    network: bool = False
    user: str = "65534:65534"
    read_only: bool = True
    workdir: str = "/work"
    workdir_size: int = 64 * 1024**2
    tmp_size: int = 64 * 1024**2
    shm_size: int = 64 * 1024**2
    memory: int = 256 * 1024**2
    cpus: float = 1.0
    pids_limit: int = 128
    nofile: int = 1024
    timeout: float = 30.0
    output_limit: int = 1024**2
    copy_limit: int = 64 * 1024**2
    display_limit: int = 16 * 1024**2

    @classmethod
    def default(cls):
        """The safe defaults."""
        return cls()

    def replace(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


class AbstractDockerCodeRunner(abc.ABC):
    """Runs source code of one language in a fresh, locked-down container."""

    aliases = ()
    suffixes = ()
    offline_image = None

    def __init__(self, *, policy=None, **options):
        self.policy = policy if policy is not None else SandboxPolicy.default()
        self.options = options

    @abc.abstractmethod
    def command(self, path):
        """The argv that runs the program saved at ``path`` in the container."""

    @abc.abstractmethod
    def environment(self):
        """The environment variables the language needs (and nothing else)."""

    def support_files(self):
        """Files the language needs next to every program; none by default."""
        return {}

    def run(self, code, **options):
        """Not here: there is no Docker Engine inside a container."""
        raise RuntimeError(
            "this is a stand-in for dockermagic in a container, where no Docker Engine "
            "runs: the check runs your runner for real"
        )


class PythonDockerRunner(AbstractDockerCodeRunner):
    """Runs Python 3 code (its class attributes, for subclasses to reuse)."""

    language = "python"
    aliases = ("py", "python3")
    suffixes = (".py",)
    default_image = "python:3.12-slim"
    image_env_var = "DOCKERMAGIC_PYTHON_IMAGE"
    filename = "main.py"
    offline_image = "dockermagic/python:offline"

    def command(self, path):
        """Run the file with the image's ``python3``."""
        return ["python3", path]

    def environment(self):
        """Unbuffered UTF-8 output, no bytecode files, HOME in the work dir."""
        return {
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUTF8": "1",
            "HOME": self.policy.workdir,
        }

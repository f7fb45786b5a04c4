"""dockermagic: run Python and JavaScript in locked-down Docker containers.

Runners (:class:`PythonDockerRunner`, :class:`JavaScriptDockerRunner`) work from
any Python code; ``%load_ext dockermagic`` adds cell magics to IPython/Jupyter.
Importing the package makes no Docker calls.
"""

from __future__ import annotations

from dockermagic.cleanup import cleanup
from dockermagic.errors import (
    DockermagicError,
    EngineUnavailableError,
    ImageUnavailableError,
    InvalidArgumentError,
    SandboxError,
)
from dockermagic.policy import SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.runners import (
    AbstractDockerCodeRunner,
    JavaScriptDockerRunner,
    PythonDockerRunner,
    get_runner,
    register_runner,
    runner_classes,
)

__all__ = [
    "AbstractDockerCodeRunner",
    "DockermagicError",
    "EngineUnavailableError",
    "ImageUnavailableError",
    "InvalidArgumentError",
    "JavaScriptDockerRunner",
    "PythonDockerRunner",
    "RunResult",
    "SandboxError",
    "SandboxPolicy",
    "__version__",
    "cleanup",
    "get_runner",
    "register_runner",
    "runner_classes",
]

__version__ = "0.1.0"

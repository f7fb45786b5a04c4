"""dockermagic: run Python and JavaScript in locked-down Docker containers.

Runners (:class:`PythonDockerRunner`, :class:`JavaScriptDockerRunner`) work from
any Python code; ``%load_ext dockermagic`` adds cell magics to IPython/Jupyter.
Importing the package makes no Docker calls.
"""

from __future__ import annotations

from typing import Any

from dockermagic.batch import BatchEvent, BatchReport, ScriptResult, run_scripts
from dockermagic.cleanup import cleanup
from dockermagic.errors import (
    DockermagicError,
    EngineUnavailableError,
    ImageUnavailableError,
    InvalidArgumentError,
    PackageInstallError,
    SandboxError,
    SwarmError,
)
from dockermagic.inputs import bind_inputs
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
from dockermagic.sessions import Session, SessionManager, SessionRestartedWarning

__all__ = [
    "AbstractDockerCodeRunner",
    "BatchEvent",
    "BatchReport",
    "DockermagicError",
    "EngineUnavailableError",
    "ImageUnavailableError",
    "InvalidArgumentError",
    "JavaScriptDockerRunner",
    "PackageInstallError",
    "PythonDockerRunner",
    "RunResult",
    "SandboxError",
    "SandboxPolicy",
    "ScriptResult",
    "ScriptsPanel",
    "Session",
    "SessionManager",
    "SessionRestartedWarning",
    "SwarmError",
    "__version__",
    "bind_inputs",
    "cleanup",
    "get_runner",
    "load_ipython_extension",
    "register_runner",
    "run_scripts",
    "runner_classes",
    "unload_ipython_extension",
]

#: The one place the version is written (pyproject.toml reads it from here).
__version__ = "0.2.0"


def load_ipython_extension(ipython: Any) -> None:
    """Add the ``%%docker`` magics to IPython (``%load_ext dockermagic``).

    IPython is imported only here, so ``import dockermagic`` stays light.

    Args:
        ipython: The running ``InteractiveShell``.
    """
    from dockermagic import magics

    magics.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop every session and remove the magics (``%unload_ext dockermagic``).

    Args:
        ipython: The running ``InteractiveShell``.
    """
    from dockermagic import magics

    magics.unload_ipython_extension(ipython)


def __getattr__(name: str) -> Any:
    """Import the widget panel on first use, so ``import dockermagic`` needs no ipywidgets.

    Args:
        name: The attribute asked for.

    Returns:
        :class:`~dockermagic.panel.ScriptsPanel` for ``"ScriptsPanel"``.

    Raises:
        AttributeError: For any other missing name.
    """
    if name == "ScriptsPanel":
        from dockermagic.panel import ScriptsPanel

        return ScriptsPanel
    raise AttributeError(f"module 'dockermagic' has no attribute {name!r}")

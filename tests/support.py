"""Helpers shared by several test modules (not fixtures: plain functions)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dockermagic.result import RunResult

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


def make_result(**changes: object) -> RunResult:
    """A RunResult of a successful Python run, with some fields changed."""
    fields: dict[str, object] = {
        "language": "python",
        "image": "img",
        "exit_code": 0,
        "stdout": "",
        "stderr": "",
        "duration": 1.0,
    }
    fields.update(changes)
    return RunResult(**fields)  # type: ignore[arg-type]


def started_in_thread(
    run: Callable[..., RunResult], code: str
) -> tuple[threading.Thread, list[RunResult]]:
    """``run(code, on_output=...)`` in a thread, returned once the program printed.

    So that what the test does next (interrupt, cancel, list) finds it running.

    Returns:
        The thread, and the list its result is appended to when it ends.
    """
    started = threading.Event()
    results: list[RunResult] = []
    thread = threading.Thread(
        target=lambda: results.append(run(code, on_output=lambda s, t: started.set())),
        daemon=True,
    )
    thread.start()
    assert started.wait(20), "the program printed nothing within 20 s"
    return thread, results


@contextlib.contextmanager
def loaded_shell(log_dir: Path) -> Iterator[InteractiveShell]:
    """The real InteractiveShell with the extension loaded, logging into ``log_dir``."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.config.DockerMagics.log_dir = str(log_dir)
    shell.run_line_magic("load_ext", "dockermagic")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "dockermagic")

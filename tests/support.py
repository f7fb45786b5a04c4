"""Helpers shared by several test modules (not fixtures: plain functions)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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

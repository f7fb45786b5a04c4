"""Where a student's answer is: in a notebook's cells, a ``.py`` file, a folder.

An exercise cell carries the exercise's id in its metadata
(``{"dockermagic": {"exercise": "01-subprocess/run_tool"}}``; the course's
jupytext sources put it on the code fence), so a moved or reordered cell is
still found. When no cell carries the id (a student pasted the answer into a
new cell), the last cell that defines the function is the answer; when none
does, the exercise is *missing*.

Pure logic on text and JSON: nothing here runs a student's code, and
notebooks are read as JSON (no nbformat needed).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EXERCISE_KEY",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "Answer",
    "Cell",
    "answer_from_cells",
    "cell_body",
    "exercise_id_of",
    "read_cells",
]

#: The cell metadata key (under ``dockermagic``) that holds an exercise's id.
EXERCISE_KEY = "exercise"
#: The cell magics whose body is Python an answer may be written in.
_PYTHON_MAGICS = ("%%docker_python", "%%docker")
_SUFFIXES = (".ipynb", ".py")
#: The largest file of a submission that is read (a notebook with its outputs
#: rarely passes a few MB; a bigger one is refused, not loaded).
MAX_FILE_BYTES = 20 * 2**20
#: The most files a submission folder may hold.
MAX_FILES = 200


@dataclass(frozen=True)
class Cell:
    """One code cell: its source and, for an exercise cell, the exercise's id."""

    source: str
    exercise: str = ""


@dataclass(frozen=True)
class Answer:
    """A student's answer to one exercise.

    Attributes:
        source: The Python code (a cell's body without its ``%%`` line).
        first_line: The line number of ``source``'s first line in the
            student's editor (2 under a ``%%docker_python`` line), so that
            errors name the student's own lines.
        origin: Where it was found, for a report (``"cell 7"``, ``"run.py"``).
    """

    source: str
    first_line: int = 1
    origin: str = ""


def cell_body(source: str) -> tuple[str, int] | None:
    """A cell's Python code and the editor line it starts on.

    Args:
        source: The cell as written.

    Returns:
        ``(code, first_line)``; None for a cell in another language (a
        ``%%docker_js`` or ``%%bash`` cell holds no Python answer).
    """
    stripped = source.lstrip("\n")
    skipped = len(source) - len(stripped)
    if not stripped.startswith("%%"):
        return source, 1
    first, _, rest = stripped.partition("\n")
    if first.split()[0] not in _PYTHON_MAGICS:
        return None
    return rest, skipped + 2


def defines(code: str, function: str) -> bool:
    """Whether code defines a top-level function (or class) of that name.

    A cell that does not parse counts when it visibly starts such a
    definition: its syntax error is the student's to see, not a "missing".

    Args:
        code: Python source.
        function: The name.

    Returns:
        True when it does.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        pattern = rf"^(?:async\s+)?(?:def|class)\s+{re.escape(function)}\b"
        return re.search(pattern, code, re.MULTILINE) is not None
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.name == function
        for node in tree.body
    )


def answer_from_cells(exercise_id: str, cells: Sequence[Cell]) -> Answer | None:
    """Find the answer to an exercise among a notebook's (or a session's) cells.

    The cell tagged with the exercise's id wins; otherwise the last cell that
    defines the function (the id's last part).

    Args:
        exercise_id: ``<notebook>/<function>``.
        cells: Code cells, in notebook order (or the order they were run).

    Returns:
        The answer, or None when no cell holds one.
    """
    function = exercise_id.rpartition("/")[2]
    tagged = [i for i, cell in enumerate(cells) if cell.exercise == exercise_id]
    candidates = (
        tagged[-1:]
        or [
            i
            for i, cell in enumerate(cells)
            if (body := cell_body(cell.source)) is not None and defines(body[0], function)
        ][-1:]
    )
    for index in candidates:
        body = cell_body(cells[index].source)
        if body is not None:
            return Answer(body[0], body[1], f"cell {index + 1}")
    return None


def exercise_id_of(metadata: Mapping[str, Any]) -> str:
    """The exercise id in a cell's metadata ('' when it is not an exercise cell).

    Args:
        metadata: The cell's metadata.

    Returns:
        The id.
    """
    ours = metadata.get("dockermagic")
    if isinstance(ours, Mapping):
        value = ours.get(EXERCISE_KEY)
        if isinstance(value, str):
            return value
    return ""


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return value if isinstance(value, str) else ""


def read_cells(path: Path) -> list[Cell]:
    """The code cells of a submission entry: a notebook, a ``.py`` file or a folder.

    A ``.py`` file is one cell. A folder is its notebooks and ``.py`` files
    (regular files only, not followed through symlinks), in name order.

    Args:
        path: The entry.

    Returns:
        The cells.

    Raises:
        ValueError: A notebook is not valid JSON, or the entry is neither.
    """
    if path.is_symlink():
        raise ValueError(f"{path.name} is a symbolic link, not a submission")
    if path.is_dir():
        files = sorted(
            child
            for child in path.iterdir()
            if child.suffix in _SUFFIXES and child.is_file() and not child.is_symlink()
        )
        if len(files) > MAX_FILES:
            raise ValueError(f"{path.name} holds {len(files)} files (at most {MAX_FILES} are read)")
        return [cell for child in files for cell in read_cells(child)]
    if not path.is_file():
        raise ValueError(f"{path.name} is not a regular file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(
            f"{path.name} is {size / 2**20:.0f} MiB (at most {MAX_FILE_BYTES // 2**20} MiB)"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".py":
        return [Cell(text)]
    if path.suffix != ".ipynb":
        raise ValueError(f"{path.name} is neither a notebook nor a .py file")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path.name} is not a notebook: {exc}") from None
    raw_cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(raw_cells, list):
        raise ValueError(f"{path.name} is not a notebook: it has no cells")
    return list(_notebook_cells(raw_cells))


def _notebook_cells(raw_cells: Iterable[Any]) -> Iterable[Cell]:
    for raw in raw_cells:
        if not isinstance(raw, dict) or raw.get("cell_type") != "code":
            continue
        metadata = raw.get("metadata")
        exercise = exercise_id_of(metadata) if isinstance(metadata, Mapping) else ""
        yield Cell(_text(raw.get("source")), exercise)

"""A course folder: its notebooks, its exercises' checks, and the students' copy.

A course is a folder of notebooks (``notebooks/``) with a Python package
``exercise_checks`` next to them whose modules register the exercises
(:func:`~dockermagic.grading.exercise.register_exercise`). Each exercise cell
carries the exercise's id in its metadata; the check modules are trusted
teacher code and run on the host, the students' code never does.

:func:`handout` writes the students' copy: the notebooks with the outputs of
exercise and check cells cleared, without ``solutions/`` (and without the
jupytext sources, caches and logs), so nobody has to remember to delete them.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockermagic.errors import InvalidArgumentError
from dockermagic.grading.answers import exercise_id_of
from dockermagic.grading.exercise import Exercise, find_exercise

__all__ = ["CHECKS_PACKAGE", "Course", "handout", "load_course", "select"]

#: The package in a course folder whose modules register the exercises.
CHECKS_PACKAGE = "exercise_checks"
#: What the students' copy leaves out: answers, sources, caches, logs.
_NOT_HANDED_OUT = {"solutions", "src", "__pycache__", ".ipynb_checkpoints", "logs", ".pytest_cache"}
_CHECK_MAGIC = "%docker_check"


@dataclass(frozen=True)
class Course:
    """A loaded course.

    Attributes:
        folder: The course folder.
        notebooks: Its notebooks, by name.
        exercises: Its exercises, in notebook and cell order.
    """

    folder: Path
    notebooks: tuple[Path, ...]
    exercises: tuple[Exercise, ...]


@contextmanager
def _importable(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def load_course(folder: str | Path) -> Course:
    """Import a course's checks and list its exercises in notebook order.

    Args:
        folder: The course folder (``notebooks/``).

    Returns:
        The course.

    Raises:
        InvalidArgumentError: The folder has no notebooks or no
            ``exercise_checks`` package, or an exercise cell names an
            exercise that no check registers.
    """
    root = Path(folder).resolve()
    notebooks = tuple(sorted(p for p in root.glob("*.ipynb") if p.is_file()))
    if not notebooks:
        raise InvalidArgumentError("course", str(folder), "no notebooks (*.ipynb) in it")
    if not (root / CHECKS_PACKAGE / "__init__.py").is_file():
        raise InvalidArgumentError(
            "course", str(folder), f"no {CHECKS_PACKAGE}/ package with the exercises' checks"
        )
    with _importable(root):
        package = importlib.import_module(CHECKS_PACKAGE)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{CHECKS_PACKAGE}.{module.name}")
    found: list[Exercise] = []
    for notebook in notebooks:
        for exercise_id in _exercise_ids(notebook):
            try:
                item = find_exercise(exercise_id)
            except InvalidArgumentError:
                raise InvalidArgumentError(
                    "course",
                    str(folder),
                    f"{notebook.name} has an exercise cell {exercise_id!r} that no check registers",
                ) from None
            if item.id != exercise_id:
                raise InvalidArgumentError(
                    "course", str(folder), f"{notebook.name}: {exercise_id!r} is not a full id"
                )
            if item not in found:
                found.append(item)
    return Course(root, notebooks, tuple(found))


def select(
    course: Course,
    *,
    notebooks: Sequence[str] | None = None,
    exercises: Sequence[str] | None = None,
) -> Course:
    """The part of a course to grade: some notebooks' exercises, or some exercises.

    Args:
        course: The course.
        notebooks: Notebook names or name prefixes (``01``, ``01-subprocess``).
        exercises: Exercise ids.

    Returns:
        The course with only those exercises (all when both are empty).

    Raises:
        InvalidArgumentError: A name matches no notebook, or an id no exercise.
    """
    chosen = list(course.exercises)
    if notebooks:
        stems = [path.stem for path in course.notebooks]
        for name in notebooks:
            if not any(stem.startswith(name) for stem in stems):
                raise InvalidArgumentError("notebook", name, f"not in {course.folder}")
        chosen = [
            item
            for item in chosen
            if any(item.id.rpartition("/")[0].startswith(name) for name in notebooks)
        ]
    if exercises:
        unknown = sorted(set(exercises) - {item.id for item in course.exercises})
        if unknown:
            raise InvalidArgumentError("exercise", ", ".join(unknown), "not in the course")
        chosen = [item for item in chosen if item.id in exercises]
    return Course(course.folder, course.notebooks, tuple(chosen))


def _cells(notebook: Path) -> list[dict[str, Any]]:
    document = json.loads(notebook.read_text(encoding="utf-8"))
    cells = document.get("cells", []) if isinstance(document, dict) else []
    return [cell for cell in cells if isinstance(cell, dict)]


def _exercise_ids(notebook: Path) -> list[str]:
    ids = []
    for cell in _cells(notebook):
        metadata = cell.get("metadata")
        if isinstance(metadata, dict) and (exercise_id := exercise_id_of(metadata)):
            ids.append(exercise_id)
    return ids


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _clear(cell: dict[str, Any]) -> None:
    cell["outputs"] = []
    cell["execution_count"] = None


def handout(course: Course, out: str | Path) -> list[Path]:
    """Write the students' copy of a course into ``out`` (which must not exist yet).

    Args:
        course: The course.
        out: The new folder.

    Returns:
        The notebooks written.

    Raises:
        InvalidArgumentError: ``out`` exists, or lies inside the course.
    """
    target = Path(out).resolve()
    if target.exists():
        raise InvalidArgumentError("handout folder", str(out), "already exists; choose a new one")
    if target.is_relative_to(course.folder):
        raise InvalidArgumentError("handout folder", str(out), "must be outside the course")

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        return {
            name
            for name in names
            if name in _NOT_HANDED_OUT
            or (here / name).is_symlink()
            or name.endswith(".ipynb")  # written below, cleared
        }

    shutil.copytree(course.folder, target, ignore=ignore)
    written = []
    for notebook in course.notebooks:
        document = json.loads(notebook.read_text(encoding="utf-8"))
        for cell in document.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            metadata = cell.get("metadata", {})
            if exercise_id_of(metadata) or _source(cell).lstrip().startswith(_CHECK_MAGIC):
                _clear(cell)
        path = target / notebook.name
        path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written

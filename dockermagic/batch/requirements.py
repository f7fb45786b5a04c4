"""Which packages a batch's scripts get: the folder's files, or the caller's choice.

The folder convention: a ``requirements.txt`` in the scripts folder lists
the Python scripts' packages, a ``package.json`` (its ``dependencies``) the
JavaScript scripts' (:data:`REQUIREMENT_FILES`). Discovery notes the files;
:func:`read_folder_requirements` reads them when the batch starts.

The caller overrides per language: ``run_scripts(..., requirements={"python":
["tabulate"]})`` replaces the folder's ``requirements.txt`` and leaves its
``package.json`` in force; an empty list means "no packages" for that
language. On the command line (:func:`parse_requirement_args`) each item is
one of:

* ``LANG:SPEC[,SPEC...]`` — specs for a language (a name or an alias):
  ``python:tabulate``, ``js:lodash@4``, ``py:numpy==2.*,tabulate``;
* ``LANG:`` — no packages for that language (the folder's file is ignored);
* ``[LANG:]FILE`` — a ``requirements.txt``-style file (Python unless ``LANG:``
  says otherwise), or a file named ``package.json`` (JavaScript);
* a bare spec — only where a default language is given (``dockermagic images
  --language python numpy``); elsewhere it is an error that says how to name
  the language.

Reading a file never blocks and never leaves the folder: it must be a regular
file, and a link must resolve inside the scripts folder.

Pure logic apart from reading the files; no Docker calls.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from dockermagic.errors import InvalidArgumentError
from dockermagic.packages import normalise_requirements, read_requirements
from dockermagic.runners import runner_classes

__all__ = [
    "REQUIREMENT_FILES",
    "Requirements",
    "language_named",
    "merge_requirements",
    "parse_requirement_args",
    "read_folder_requirements",
]

#: File name in a scripts folder -> the language whose packages it lists.
REQUIREMENT_FILES = {"requirements.txt": "python", "package.json": "javascript"}

#: Language -> normalised package specs.
Requirements = dict[str, tuple[str, ...]]


def read_folder_requirements(folder: Path, files: Mapping[str, Path]) -> Requirements:
    """Read the requirement files discovery found in a scripts folder.

    Args:
        folder: The scripts folder.
        files: Language -> the file (see :data:`REQUIREMENT_FILES`).

    Returns:
        Language -> normalised specs (languages whose file lists none are left out).

    Raises:
        InvalidArgumentError: A file that is not a regular file, links out of
            the folder, cannot be read or parsed, or holds a bad spec.
    """
    found: Requirements = {}
    root = Path(os.path.realpath(folder))
    for language, path in sorted(files.items()):
        _check_regular(path, root)
        specs = normalise_requirements(language, read_requirements(path))
        if specs:
            found[language] = specs
    return found


def _check_regular(path: Path, root: Path) -> None:
    # A FIFO would block the read forever; a link out of the folder would
    # read (and send to a package index) a file the folder does not hold.
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InvalidArgumentError("requirements", str(path), exc.strerror or str(exc)) from exc
    if not stat.S_ISREG(mode):
        raise InvalidArgumentError("requirements", str(path), "is not a regular file")
    target = Path(os.path.realpath(path))
    if root not in target.parents:
        raise InvalidArgumentError("requirements", str(path), f"is a link out of {root}")


def merge_requirements(
    folder: Mapping[str, Iterable[str]], override: Mapping[str, Iterable[str]] | None
) -> Requirements:
    """The folder's requirements with the caller's per-language overrides.

    Args:
        folder: Language -> specs from the folder's files.
        override: Language (a name or an alias) -> specs; a language given
            here replaces the folder's list, an empty list clears it.

    Returns:
        Language -> normalised specs, without languages that have none.

    Raises:
        InvalidArgumentError: An unknown language or a bad spec.
    """
    merged = {language: tuple(specs) for language, specs in folder.items()}
    for key, specs in (override or {}).items():
        language = language_named(key)
        if isinstance(specs, str):
            raise InvalidArgumentError("requirements", specs, f"expected a list of specs for {key}")
        merged[language] = normalise_requirements(language, specs)
    return {language: specs for language, specs in sorted(merged.items()) if specs}


def parse_requirement_args(
    items: Iterable[str], *, default_language: str | None = None
) -> dict[str, list[str]]:
    """Requirements as the command line gives them (the forms are in the module docstring).

    Args:
        items: The ``--requirements`` values.
        default_language: The language of bare specs; None makes them an error.

    Returns:
        Language -> specs (not yet normalised); a language given as ``LANG:``
        maps to an empty list.

    Raises:
        InvalidArgumentError: An unknown language, a missing file, or a bare
            spec without a default language.
    """
    parsed: dict[str, list[str]] = {}
    for item in items:
        language, rest = _split_language(item)
        if language is None and Path(item).is_file():
            language = "javascript" if Path(item).name == "package.json" else "python"
            rest = item
        if language is None:
            if default_language is None:
                raise InvalidArgumentError(
                    "requirements",
                    item,
                    "say which language: python:SPEC or js:SPEC, or give a "
                    "requirements.txt or package.json",
                )
            language, rest = language_named(default_language), item
        specs = parsed.setdefault(language, [])
        if rest and Path(rest).is_file():
            specs += read_requirements(rest)
        else:
            specs += [part.strip() for part in rest.split(",") if part.strip()]
    return parsed


def language_named(name: str) -> str:
    """The canonical language for a name or an alias (never a file suffix).

    Args:
        name: ``"python"``, ``"py"``, ``"js"``...

    Returns:
        The runner's language name.

    Raises:
        InvalidArgumentError: No registered runner has that name.
    """
    key = name.strip().lower()
    for cls in runner_classes():
        if key == cls.language or key in cls.aliases:
            return cls.language
    known = ", ".join(sorted(cls.language for cls in runner_classes()))
    raise InvalidArgumentError("language", name, f"no runner for it (known: {known})")


def _split_language(item: str) -> tuple[str | None, str]:
    """``("python", "numpy")`` for ``"py:numpy"``; ``(None, item)`` without a known language."""
    head, colon, rest = item.partition(":")
    if not colon or not head:
        return None, item
    try:
        return language_named(head), rest
    except InvalidArgumentError:
        return None, item

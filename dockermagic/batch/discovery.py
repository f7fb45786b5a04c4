"""Which files of a scripts folder are scripts, and what is copied next to them.

The rules (also in :mod:`dockermagic.batch`):

* Every entry directly in the folder whose suffix a registered runner claims
  (``.py``, ``.js``, ``.mjs``, ``.cjs``) and that is not a folder is a script;
  scripts run in name order. Other files are listed as ignored; subfolders
  are never scripts.
* A subfolder named ``data`` (:data:`DATA_DIR`) is copied next to every script.
* A ``requirements.txt`` (Python) and a ``package.json`` (JavaScript) list
  the packages of the folder's scripts of that language
  (:mod:`~dockermagic.batch.requirements`); they are noted here, not listed
  as ignored, and read when the batch starts.

Discovery only looks at names and ``stat`` results: it never opens a file, so
a FIFO named ``job.py`` cannot block it. Whether a script may be copied into a
sandbox (a regular file, a link that stays inside the folder) is decided when
it runs, by :mod:`dockermagic.transfer`; a script that may not becomes that
script's ``error``. The one check made here is on ``data`` itself: a ``data``
link that leads out of the folder would copy the folder it points to, so it
makes every script an ``error`` (:attr:`Discovery.data_error`).

Pure logic apart from listing the folder; no Docker calls.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockermagic.batch.requirements import REQUIREMENT_FILES
from dockermagic.errors import InvalidArgumentError
from dockermagic.runners import runner_classes
from dockermagic.transfer import UnsafeFileError

__all__ = ["DATA_DIR", "Discovery", "discover_scripts", "select_scripts", "suffix_languages"]

#: The subfolder copied next to every script.
DATA_DIR = "data"


@dataclass(frozen=True)
class Discovery:
    """What a scripts folder holds.

    Attributes:
        scripts: The runnable scripts, sorted by name.
        ignored: Names of files no runner claims.
        data_dir: The ``data`` subfolder, when there is one.
        data_error: Why ``data`` cannot be copied ('' when it can, or there is none).
        requirement_files: Language -> the folder's file listing its packages
            (``requirements.txt``, ``package.json``); not read yet.
    """

    scripts: tuple[Path, ...]
    ignored: tuple[str, ...]
    data_dir: Path | None
    data_error: str = ""
    requirement_files: Mapping[str, Path] = field(default_factory=dict)

    def language_of(self, script: Path) -> str:
        """The language that runs a script of this folder.

        Args:
            script: One of :attr:`scripts`.

        Returns:
            The runner's language name.
        """
        return suffix_languages()[script.suffix.lower()]


def suffix_languages() -> dict[str, str]:
    """File suffix (lower case) -> language, from the runner registry.

    Returns:
        The mapping; the first registered runner wins a shared suffix.
    """
    mapping: dict[str, str] = {}
    for cls in runner_classes():
        for suffix in cls.suffixes:
            mapping.setdefault(suffix.lower(), cls.language)
    return mapping


def discover_scripts(directory: str | os.PathLike[str]) -> Discovery:
    """Find the scripts in a folder (see the module docstring for the rules).

    Args:
        directory: The scripts folder.

    Returns:
        The scripts, the ignored files and the data folder.

    Raises:
        InvalidArgumentError: The folder does not exist, is empty, or holds
            no file that a registered runner can run.
    """
    root = Path(directory)
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "no such folder"
        raise InvalidArgumentError("scripts folder", str(directory), problem)
    suffixes = suffix_languages()
    scripts: list[Path] = []
    ignored: list[str] = []
    requirement_files: dict[str, Path] = {}
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            # is_dir() is a stat (it follows a link): never an open, which
            # would wait forever on a FIFO.
            if _is_dir(entry):
                continue
            if Path(entry.name).suffix.lower() in suffixes:
                scripts.append(root / entry.name)
            elif entry.name in REQUIREMENT_FILES:
                requirement_files[REQUIREMENT_FILES[entry.name]] = root / entry.name
            else:
                ignored.append(entry.name)
    if not scripts:
        if ignored:
            known = ", ".join(sorted(suffixes))
            raise InvalidArgumentError(
                "scripts folder",
                str(directory),
                f"holds no runnable script ({len(ignored)} other file(s); runnable: {known})",
            )
        raise InvalidArgumentError("scripts folder", str(directory), "holds no scripts")
    data = root / DATA_DIR
    if not data.is_dir():
        return Discovery(tuple(scripts), tuple(ignored), None, "", requirement_files)
    return Discovery(
        tuple(scripts), tuple(ignored), data, _data_error(root, data), requirement_files
    )


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop, a vanished entry: not a folder
        return False


def _data_error(root: Path, data: Path) -> str:
    """Why ``data`` must not be copied: a link out of the scripts folder."""
    folder = Path(os.path.realpath(root))
    target = Path(os.path.realpath(data))
    if target == folder or folder in target.parents:
        return ""
    return str(UnsafeFileError(data, f"is a link to {target}, outside {folder}: not copied"))


def select_scripts(discovery: Discovery, only: Iterable[str]) -> Discovery:
    """Keep only some scripts of a folder.

    Args:
        discovery: What the folder holds.
        only: Script file names.

    Returns:
        The discovery with just those scripts, in name order.

    Raises:
        InvalidArgumentError: A name that is not a script of the folder, or none at all.
    """
    wanted = set(only)
    known = {path.name for path in discovery.scripts}
    unknown = sorted(wanted - known)
    if unknown:
        raise InvalidArgumentError("script", ", ".join(unknown), "not a script of the folder")
    if not wanted:
        raise InvalidArgumentError("only", [], "select at least one script")
    scripts = tuple(p for p in discovery.scripts if p.name in wanted)
    return dataclasses.replace(discovery, scripts=scripts)

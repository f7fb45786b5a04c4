"""A script's displays outside a notebook: one representation each, and files.

A display is a MIME bundle (:attr:`~dockermagic.result.RunResult.displays`):
the same plot may come as ``image/png`` and ``text/plain``. Outside a
notebook one representation is kept, the richest one a front end can show
(:func:`choose`, in :data:`MIME_EXTENSIONS` order); ``dockermagic run
--outputs DIR`` writes it to a file with the matching extension
(:class:`DisplayWriter`), and the panel draws it.

A bundle comes from the program, so nothing in it is trusted: a binary type
is decoded from base64 and encoded again (never passed on as it came, so it
cannot break out of an HTML attribute), text must be text, and a type that
fails its check is skipped for the next one.

File names: ``<safe name>-<NNN>.<ext>`` directly in the outputs folder, where
the safe name is the script's log name (:func:`dockermagic.logs.safe_log_name`:
letters, digits, ``.``, ``_``, ``-``; names that differ get different stems)
and ``NNN`` counts the script's displays from 001. A file is written to a
temporary name in the folder and renamed into place, so a link planted under
the final name is replaced, never followed. When a script starts, the files
an earlier batch left under its own pattern are removed first, so the folder
holds exactly this run's displays of it.

Pure logic apart from the files; no Docker calls.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dockermagic.errors import InvalidArgumentError
from dockermagic.logs import safe_log_name

__all__ = ["BINARY_TYPES", "MIME_EXTENSIONS", "DisplayWriter", "choose", "prepare_outputs_dir"]

logger = logging.getLogger(__name__)

#: MIME types a display is kept as, richest first, with their file extensions.
MIME_EXTENSIONS: tuple[tuple[str, str], ...] = (
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/svg+xml", "svg"),
    ("text/html", "html"),
    ("text/markdown", "md"),
    ("application/json", "json"),
    ("text/plain", "txt"),
)
#: Types whose value is base64 text in a bundle.
BINARY_TYPES = frozenset({"image/png", "image/jpeg"})

_EXTENSIONS = "|".join(re.escape(ext) for _, ext in MIME_EXTENSIONS)


def choose(bundle: Mapping[str, Any]) -> tuple[str, str] | None:
    """The representation a display is kept as.

    Args:
        bundle: MIME type -> value, as the program sent it.

    Returns:
        ``(mime type, value)``: for a binary type its base64 text, decoded and
        encoded again; for JSON the value as JSON text; otherwise the text. None
        when no known type has a usable value.
    """
    for mime, _ in MIME_EXTENSIONS:
        if mime not in bundle:
            continue
        value = bundle[mime]
        if mime in BINARY_TYPES:
            if not isinstance(value, str):
                continue
            try:
                raw = base64.b64decode(value.encode("ascii"), validate=False)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                continue
            return mime, base64.b64encode(raw).decode("ascii")
        if mime == "application/json":
            try:
                return mime, json.dumps(value, indent=1, ensure_ascii=False)
            except (TypeError, ValueError):
                continue
        if isinstance(value, str):
            return mime, value
    return None


def _content(mime: str, value: str) -> bytes:
    if mime in BINARY_TYPES:
        return base64.b64decode(value)
    return value.encode("utf-8", "surrogatepass")


def prepare_outputs_dir(directory: str | os.PathLike[str]) -> Path:
    """Create the outputs folder if missing and prove it can be written.

    Called before any script runs, so a bad folder is one clear error.

    Args:
        directory: The folder.

    Returns:
        Its absolute path.

    Raises:
        InvalidArgumentError: It cannot be created or written.
    """
    path = Path(directory).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InvalidArgumentError(
            "outputs folder", str(directory), exc.strerror or str(exc)
        ) from exc
    return path


class DisplayWriter:
    """Writes one script's displays into the outputs folder, one file each.

    Args:
        directory: The outputs folder (it exists: :func:`prepare_outputs_dir`).
        script: The script's file name.
    """

    def __init__(self, directory: str | os.PathLike[str], script: str) -> None:
        self.directory = Path(directory)
        self.stem = safe_log_name(script)
        self.count = 0
        #: Files written, in display order.
        self.written: list[str] = []
        self._pattern = re.compile(rf"{re.escape(self.stem)}-\d{{3,}}\.(?:{_EXTENSIONS})")
        self._remove_earlier()

    def _remove_earlier(self) -> None:
        """Remove what an earlier batch wrote for this script (its pattern only)."""
        try:
            names = [n for n in os.listdir(self.directory) if self._pattern.fullmatch(n)]
        except OSError:
            return
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(self.directory / name)

    def add(self, bundle: Mapping[str, Any]) -> str | None:
        """Write one display (usable from a runner's ``on_display``).

        Args:
            bundle: The MIME bundle.

        Returns:
            The file's path, or None when nothing was written (no known type,
            or the file could not be written: logged, the script goes on).
        """
        self.count += 1
        chosen = choose(bundle)
        if chosen is None:
            return None
        mime, value = chosen
        extension = dict(MIME_EXTENSIONS)[mime]
        target = self.directory / f"{self.stem}-{self.count:03d}.{extension}"
        try:
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".display-")
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(_content(mime, value))
                os.chmod(temporary, 0o644)
                # A rename replaces whatever has the name, a link included,
                # and never writes through it.
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            logger.warning("could not write %s: %s", target, exc.strerror or exc)
            return None
        self.written.append(str(target))
        return str(target)

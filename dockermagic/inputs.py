r"""Passing notebook values into a program: :func:`bind_inputs`.

Values travel as a JSON file next to the program, never pasted into its
source, and the program's line numbers stay its own: a small bootstrap is the
entry point, defines the values, then runs the untouched program file.

* Python: the bootstrap loads the values into ``__main__`` and runs the
  program with ``exec(compile(source, real_path, "exec"))``; its own frame is
  left out of tracebacks, so an error reads as if the program ran directly.
* JavaScript: the bootstrap defines each value as a read-only global
  (a constant; a cell may still shadow it with ``let``), then ``require()``\\ s
  the program, which keeps lines and columns.

Pure logic, no Docker calls. A language without a binder cannot take inputs.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from dockermagic.errors import InvalidArgumentError

__all__ = [
    "INPUTS_FILE",
    "BoundProgram",
    "bind_inputs",
    "encode_inputs",
    "input_languages",
    "register_binder",
]

#: The JSON file holding the values, next to the program.
INPUTS_FILE = "_dockermagic_inputs.json"


@dataclass(frozen=True)
class BoundProgram:
    """What to hand to a runner's ``run``: entry source, its file name, extra files.

    Attributes:
        code: The entry point's source (the bootstrap, or the program itself).
        filename: The entry point's file name.
        files: Extra files: the program under its own name and the values.
    """

    code: str | bytes
    filename: str
    files: dict[str, str | bytes] = field(default_factory=dict)


#: ``binder(filename) -> (bootstrap file name, bootstrap source)``.
Binder = Callable[[str], tuple[str, str]]

_PYTHON_BOOTSTRAP = """\
def _dockermagic_main():
    # Written by dockermagic: defines the notebook's values, then runs {filename}.
    import json, os, sys, traceback
    import __main__

    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, {filename!r})
    with open(os.path.join(here, {inputs!r}), encoding="utf-8") as stream:
        values = json.load(stream)
    with open(path, "rb") as stream:
        source = stream.read()
    namespace = vars(__main__)
    del namespace["_dockermagic_main"]
    namespace.update(values)
    namespace["__file__"] = path
    sys.argv[0] = path
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        traceback.print_exception(type(exc), exc, None)
        sys.exit(1)
    try:
        exec(code, namespace)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        # Leave this bootstrap's frame out: the traceback starts in the program.
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        sys.exit(1)


_dockermagic_main()
"""

_JAVASCRIPT_BOOTSTRAP = """\
// Written by dockermagic: defines the notebook's values, then runs {filename}.
"use strict";
const fs = require("fs");
const path = require("path");
const values = JSON.parse(fs.readFileSync(path.join(__dirname, {inputs}), "utf8"));
for (const [name, value] of Object.entries(values)) {{
  Object.defineProperty(globalThis, name, {{ value, writable: false, enumerable: true }});
}}
require(path.join(__dirname, {filename}));
"""


def _python_binder(filename: str) -> tuple[str, str]:
    return "_dockermagic_main.py", _PYTHON_BOOTSTRAP.format(filename=filename, inputs=INPUTS_FILE)


def _javascript_binder(filename: str) -> tuple[str, str]:
    if PurePosixPath(filename).suffix == ".mjs":
        raise InvalidArgumentError("file name", filename, "inputs need a CommonJS (.js) program")
    return "_dockermagic_main.js", _JAVASCRIPT_BOOTSTRAP.format(
        filename=json.dumps(filename), inputs=json.dumps(INPUTS_FILE)
    )


_binders: dict[str, Binder] = {"python": _python_binder, "javascript": _javascript_binder}


def register_binder(language: str, binder: Binder) -> None:
    """Teach :func:`bind_inputs` a new language.

    Args:
        language: The runner's canonical language name.
        binder: Returns the bootstrap's file name and source for a program file
            name; the bootstrap reads :data:`INPUTS_FILE` from its own folder.
    """
    _binders[language] = binder


def input_languages() -> list[str]:
    """The languages that accept inputs.

    Returns:
        Canonical language names.
    """
    return sorted(_binders)


def encode_inputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check notebook values and turn them into plain JSON data.

    Args:
        values: Names and JSON-encodable values.

    Returns:
        The values as they will arrive (tuples become lists, and so on).

    Raises:
        InvalidArgumentError: A name is not an identifier, or a value is not
            JSON-encodable (or nested too deeply to encode).
    """
    payload: dict[str, Any] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise InvalidArgumentError("input name", name, "must be a plain identifier")
        if name.startswith("__"):
            raise InvalidArgumentError("input name", name, "must be a plain identifier")
        try:
            # NaN and Infinity are not JSON (JavaScript's JSON.parse rejects them).
            payload[name] = json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                "input", name, f"is not JSON-encodable ({type(value).__name__}): {exc}"
            ) from exc
        except RecursionError as exc:
            raise InvalidArgumentError("input", name, "is nested too deeply to pass on") from exc
    return payload


def bind_inputs(
    language: str, code: str | bytes, values: Mapping[str, Any], *, filename: str
) -> BoundProgram:
    """Arrange for a program to see ``values`` as variables (or constants).

    Args:
        language: The runner's canonical language name.
        code: The program's source, unchanged.
        values: Names and JSON-encodable values.
        filename: The program's file name in the sandbox.

    Returns:
        The entry point and files to run; the program itself when there are
        no values.

    Raises:
        InvalidArgumentError: A name is not an identifier, a value is not
            JSON-encodable, or the language takes no inputs.
    """
    if not values:
        return BoundProgram(code=code, filename=filename)
    binder = _binders.get(language)
    if binder is None:
        raise InvalidArgumentError(
            "language", language, f"cannot take inputs (supported: {', '.join(input_languages())})"
        )
    payload = encode_inputs(values)
    entry, bootstrap = binder(filename)
    return BoundProgram(
        code=bootstrap,
        filename=entry,
        files={filename: code, INPUTS_FILE: json.dumps(payload, ensure_ascii=False)},
    )

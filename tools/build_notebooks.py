"""Build the teaching notebooks from their Markdown sources and run them.

Each notebook is written as Markdown in ``notebooks/src/NN-name.md``: prose
becomes Markdown cells, and every fenced block that opens with three
backticks and ``python`` becomes a code cell. Words after ``python`` on the
opening fence are cell tags, e.g. ``python nbval-ignore-output`` or
``python raises-exception``. Fences of other languages stay in the prose.

The builder writes ``notebooks/NN-name.ipynb`` and then executes it with
nbclient, from ``notebooks/`` (as nbval and Jupyter do), so the stored
outputs are real. nbval later re-runs every notebook and compares its outputs
with the stored ones; ``tests/unit/test_notebooks_current.py`` checks that
the cells still match their sources.

Usage::

    .venv/bin/python tools/build_notebooks.py            # every notebook
    .venv/bin/python tools/build_notebooks.py 03 05      # the ones whose name starts so
    .venv/bin/python tools/build_notebooks.py --no-execute
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOURCES = NOTEBOOKS / "src"

_OPEN = re.compile(r"^```python(?P<tags>(?:[ \t]+[\w-]+)*)[ \t]*$")
_CLOSE = re.compile(r"^```[ \t]*$")

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def parse(text: str) -> list[nbformat.NotebookNode]:
    """Turn a Markdown source into notebook cells.

    Args:
        text: The source.

    Returns:
        The cells, in order.

    Raises:
        ValueError: A code fence is never closed.
    """
    cells: list[nbformat.NotebookNode] = []
    prose: list[str] = []

    def flush_prose() -> None:
        body = "\n".join(prose).strip("\n")
        if body.strip():
            cells.append(nbformat.v4.new_markdown_cell(body))
        prose.clear()

    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = _OPEN.match(lines[index])
        if match is None:
            prose.append(lines[index])
            index += 1
            continue
        flush_prose()
        start = index
        index += 1
        code: list[str] = []
        while index < len(lines) and not _CLOSE.match(lines[index]):
            code.append(lines[index])
            index += 1
        if index == len(lines):
            raise ValueError(f"code fence opened on line {start + 1} is never closed")
        index += 1
        cell = nbformat.v4.new_code_cell("\n".join(code))
        tags = match.group("tags").split()
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)
    flush_prose()
    return cells


def notebook_from_source(source: Path) -> nbformat.NotebookNode:
    """Build an unexecuted notebook from one Markdown source.

    Args:
        source: ``notebooks/src/NN-name.md``.

    Returns:
        The notebook (kernelspec ``python3``).
    """
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(source.read_text(encoding="utf-8"))
    # Stable cell ids keep a rebuild's diff down to what really changed.
    for number, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{number:03d}"
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def target_for(source: Path) -> Path:
    """Where a source's notebook is written.

    Args:
        source: The Markdown source.

    Returns:
        ``notebooks/<stem>.ipynb``.
    """
    return NOTEBOOKS / f"{source.stem}.ipynb"


def execute(nb: nbformat.NotebookNode) -> None:
    """Run a notebook in place from ``notebooks/`` and keep its outputs.

    Args:
        nb: The notebook.
    """
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        record_timing=False,
    )
    client.execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.metadata.pop("collapsed", None)
    # Keep only what does not change from one machine to the next.
    info = nb.metadata.get("language_info", {})
    nb.metadata["language_info"] = {
        key: info[key] for key in ("name", "mimetype", "file_extension") if key in info
    }


def sources(prefixes: list[str]) -> list[Path]:
    """The Markdown sources whose names start with one of the prefixes.

    Args:
        prefixes: Name prefixes; every source when empty.

    Returns:
        The matching sources, sorted.
    """
    found = sorted(SOURCES.glob("*.md"))
    if prefixes:
        found = [p for p in found if any(p.name.startswith(x) for x in prefixes)]
    return found


def main(argv: list[str] | None = None) -> int:
    """Build (and by default run) the notebooks.

    Args:
        argv: Command-line arguments.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="name prefixes, e.g. 03 (default: all)")
    parser.add_argument(
        "--no-execute", action="store_true", help="write the notebooks without outputs"
    )
    args = parser.parse_args(argv)
    chosen = sources(args.names)
    if not chosen:
        print("no notebook source matches", file=sys.stderr)
        return 1
    for source in chosen:
        nb = notebook_from_source(source)
        started = time.monotonic()
        if not args.no_execute:
            execute(nb)
        nbformat.validate(nb)
        target = target_for(source)
        nbformat.write(nb, target)
        print(f"{target.relative_to(ROOT)}  ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Execute the teaching notebooks from their jupytext sources and store the outputs.

Each notebook is written in jupytext's Markdown format in
``notebooks/src/NN-name.md`` (what teachers already keep notebooks in
version control with): cell tags and metadata, such as an exercise cell's id,
sit on the code fence. jupytext does the conversion; this tool adds only what
jupytext does not do: stable cell ids, and executing the notebook with
nbclient from ``notebooks/`` (as nbval and Jupyter do) so the stored outputs
are real. nbval later re-runs every notebook and compares its outputs with
the stored ones; ``tests/unit/test_notebooks_current.py`` checks that the
cells still match their sources.

Usage::

    .venv/bin/python tools/build_notebooks.py            # every notebook
    .venv/bin/python tools/build_notebooks.py 03 05      # the ones whose name starts so
    .venv/bin/python tools/build_notebooks.py --no-execute
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOURCES = NOTEBOOKS / "src"

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def notebook_from_source(source: Path) -> nbformat.NotebookNode:
    """Build an unexecuted notebook from one jupytext Markdown source.

    Args:
        source: ``notebooks/src/NN-name.md``.

    Returns:
        The notebook (kernelspec ``python3``).
    """
    nb = jupytext.read(source, fmt="md")
    # The stored notebook says nothing of where it came from.
    nb.metadata.pop("jupytext", None)
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

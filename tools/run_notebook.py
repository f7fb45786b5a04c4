"""Execute a notebook headless (as `make demo` does) and save the executed copy.

Usage: ``python tools/run_notebook.py NOTEBOOK OUTPUT``. Cells tagged
``raises-exception`` may fail; any other failing cell fails the run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbclient
import nbformat


def main(argv: list[str]) -> int:
    """Run the notebook from its own folder and write the result.

    Args:
        argv: ``[NOTEBOOK, OUTPUT]``.

    Returns:
        The exit status.
    """
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    notebook = nbformat.read(source, as_version=4)
    started = time.monotonic()
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(source.parent)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        print(f"[demo] {source} failed:\n{exc}", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    print(f"[demo] executed {source} ({cells} code cells, {time.monotonic() - started:.1f} s)")
    print(f"[demo] executed copy: {target.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

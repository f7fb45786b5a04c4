"""The teaching notebooks match their Markdown sources and carry real outputs.

nbval (``pytest notebooks``) re-executes every notebook and compares the
outputs with the stored ones, so stale outputs fail there. These tests catch
the rest: a source edited without rebuilding, a notebook edited by hand,
a notebook saved without running it, or an exercise stored with its answer.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "build_notebooks", ROOT / "tools" / "build_notebooks.py"
)
assert spec is not None
assert spec.loader is not None
build = importlib.util.module_from_spec(spec)
sys.modules["build_notebooks"] = build
spec.loader.exec_module(build)

SOURCES = build.sources([])


def test_there_is_a_notebook_per_topic() -> None:
    assert len(SOURCES) == 7


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_its_source(source: Path) -> None:
    target = build.target_for(source)
    assert target.exists(), f"{target.name} missing: run tools/build_notebooks.py {source.stem[:2]}"
    stored = nbformat.read(target, as_version=4)
    fresh = build.notebook_from_source(source)
    assert stored.metadata["kernelspec"]["name"] == "python3"
    got = [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in stored.cells]
    want = [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in fresh.cells]
    assert got == want, f"{target.name} differs from {source.name}: rebuild it"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_was_executed(source: Path) -> None:
    stored = nbformat.read(build.target_for(source), as_version=4)
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert code
    unrun = [c.source.splitlines()[0] for c in code if c.execution_count is None]
    assert not unrun, f"cells stored without running: {unrun}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_exercises_are_stored_unsolved(source: Path) -> None:
    stored = nbformat.read(build.target_for(source), as_version=4)
    checks = [
        c
        for c in stored.cells
        if c.cell_type == "code" and (".check_" in c.source or "%docker_check" in c.source)
    ]
    assert len(checks) >= 1
    for cell in checks:
        shown = "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs)
        assert shown.startswith("❌ not yet"), f"a check in {source.stem} passes: {cell.source}"

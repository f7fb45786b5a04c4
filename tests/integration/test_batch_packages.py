"""Issue 13 in the batch runner and the CLI: a folder's packages, built once; derived images.

Against the real engine, with the real registries (PyPI, npm) reached from
the host only. Pruning runs on a throw-away engine of its own, so that it can
never remove a derived image another test (or a person) on the main engine
is about to use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockermagic import BatchEvent, run_scripts
from dockermagic.cli import main
from dockermagic.packages import list_derived_images
from tests.engines import extra_engine

REPO = Path(__file__).resolve().parents[2]

TABULATE = "import tabulate\nprint(tabulate.tabulate([[1, 2]]).splitlines()[1])\n"
LODASH_CJS = "const _ = require('lodash');\nconsole.log(_.chunk([1, 2, 3, 4], 2).length);\n"
LODASH_ESM = "import _ from 'lodash';\nconsole.log(_.last([1, 2, 3]));\n"
NODE_IMAGE = "dockermagic/node:offline"


def make_folder(root: Path, *, python: str = "tabulate\n") -> Path:
    root.mkdir(parents=True)
    (root / "table.py").write_text(TABULATE)
    (root / "chunks.js").write_text(LODASH_CJS)
    (root / "last.mjs").write_text(LODASH_ESM)
    (root / "requirements.txt").write_text(f"# the Python scripts' packages\n{python}")
    (root / "package.json").write_text(json.dumps({"dependencies": {"lodash": "^4.17.21"}}))
    return root


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_a_folders_requirements_and_package_json_are_honoured(tmp_path: Path, mode: str) -> None:
    folder = make_folder(tmp_path / "scripts")
    events: list[BatchEvent] = []
    report = run_scripts(
        folder,
        mode=mode,  # type: ignore[arg-type]
        workers=2,
        timeout=60,
        on_event=events.append,
    )
    assert report.ok, [(r.name, r.message, r.output_tail) for r in report.results]
    assert report.ignored == ()  # the requirement files are the folder's, not strays
    assert dict(report.requirements) == {
        "javascript": ("lodash@^4.17.21",),
        "python": ("tabulate",),
    }
    tails = {r.name: r.output_tail for r in report.results}
    assert tails == {"chunks.js": "2", "last.mjs": "3", "table.py": "1  2"}
    images = {r.language: r.image for r in report.results}
    assert images["python"].startswith("dockermagic/python-deps:")
    assert images["javascript"].startswith("dockermagic/node-deps:")
    # Every image was ready before the first script started.
    kinds = [e.kind for e in events]
    first_start = kinds.index("start")
    assert "prepare" not in kinds[first_start:]


def test_only_the_languages_that_run_get_their_packages(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "scripts")
    (folder / "package.json").write_text(json.dumps({"dependencies": {"no-such-pkg-x": "1"}}))
    report = run_scripts(folder, only=["table.py"], timeout=60)
    assert report.ok, report.results[0].message
    assert dict(report.requirements) == {"python": ("tabulate",)}


def test_a_package_that_cannot_be_had_fails_its_languages_scripts_only(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "scripts", python="no-such-package-dockermagic-test==1.0\n")
    events: list[BatchEvent] = []
    report = run_scripts(folder, mode="parallel", workers=2, timeout=60, on_event=events.append)
    results = report.by_name()
    table = results["table.py"]
    assert table.status == "error"
    assert "\n" not in table.message
    assert table.message.startswith(
        "Could not install package 'no-such-package-dockermagic-test"
    ), table.message
    assert "no such package" in table.message
    assert table.exit_code is None
    assert results["chunks.js"].status == "ok"
    assert results["last.mjs"].status == "ok"
    prepared = [e.text for e in events if e.kind == "prepare" and e.language == "python"]
    assert any("Could not install package" in line for line in prepared)


def test_requirements_on_the_command_line_override_the_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(tmp_path / "scripts")
    report_file = tmp_path / "report.json"
    logs = str(tmp_path / "logs")
    # "py:" takes the folder's requirements.txt out of play: the import fails.
    argv = ["run", str(folder), "--logs", logs, "--json", str(report_file)]
    assert main([*argv, "--requirements", "py:", "--timeout", "60"]) == 1
    text = capsys.readouterr().out
    assert "packages (javascript): lodash@^4.17.21" in text
    report = json.loads(report_file.read_text())
    assert report["requirements"] == {"javascript": ["lodash@^4.17.21"]}
    results = {r["name"]: r for r in report["results"]}
    assert results["table.py"]["status"] == "failed"
    assert "ModuleNotFoundError" in results["table.py"]["output_tail"]
    assert results["chunks.js"]["status"] == "ok"


def test_images_requirements_builds_ahead_and_list_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tabulate\n")
    assert main(["images", "--requirements", str(requirements)]) == 0
    built = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert built[0] == "python"
    tag = built[1]
    assert tag.startswith("dockermagic/python-deps:")
    assert built[2:] == ["tabulate"]
    # The same set from a spec and --language: the same image, nothing built.
    assert main(["images", "--requirements", "TABULATE", "--language", "py"]) == 0
    out = capsys.readouterr().out
    assert "building" not in out
    assert tag in out
    # A batch asking for the same set uses exactly that image.
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "table.py").write_text(TABULATE)
    (folder / "requirements.txt").write_text("tabulate\n")
    report = run_scripts(folder, timeout=60)
    assert report.results[0].image == tag
    assert report.ok
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["images", "--list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["tag", "language", "requirements", "size", "age"]
    (row,) = [r for r in rows if r[0] == tag]
    assert row[1:3] == ["python", "tabulate"]
    assert row[4] in ("MiB", "GiB")  # e.g. "1.1 GiB"
    assert row[-1] in ("s", "min", "h", "d")


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockermagic", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.engines
def test_images_prune_removes_unused_and_keeps_what_a_container_uses(tmp_path: Path) -> None:
    package = tmp_path / "package.json"
    package.write_text(json.dumps({"dependencies": {"lodash": "^4.17.21"}}))
    with extra_engine(images=(NODE_IMAGE,)) as engine:
        env = {
            **os.environ,
            "DOCKER_HOST": engine.base_url,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "COLUMNS": "200",
        }
        built = _cli("images", "--requirements", str(package), env=env, cwd=tmp_path)
        assert built.returncode == 0, built.stderr
        assert "building dockermagic/node-deps:" in built.stdout
        tag = built.stdout.strip().splitlines()[-1].split()[1]
        listed = _cli("images", "--list", env=env, cwd=tmp_path)
        assert tag in listed.stdout
        assert "lodash@^4.17.21" in listed.stdout

        client = engine.client()
        user = client.containers.create(tag, ["true"], network_mode="none")
        kept = _cli("images", "--prune", env=env, cwd=tmp_path)
        assert kept.returncode == 0, kept.stderr
        assert f"kept    {tag} (a container uses it)" in kept.stdout
        assert "removed 0 derived image(s), kept 1 in use" in kept.stdout
        assert [image.tag for image in list_derived_images(client)] == [tag]

        too_young = _cli("images", "--prune", "--older-than", "1", env=env, cwd=tmp_path)
        assert "removed 0 derived image(s) older than 1 day(s), kept 0" in too_young.stdout
        user.remove()
        pruned = _cli("images", "--prune", env=env, cwd=tmp_path)
        assert pruned.returncode == 0, pruned.stderr
        assert f"removed {tag}" in pruned.stdout
        assert list_derived_images(client) == []
        assert NODE_IMAGE in {t for image in client.images.list() for t in image.tags}
        empty = _cli("images", "--list", env=env, cwd=tmp_path)
        assert "no derived images" in empty.stdout

"""Issue 13: packages without network in the sandbox, in derived images built once.

Against the real engine, with the real package registries (PyPI and npm)
reached from the host only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import docker
import pytest
from IPython.utils.capture import capture_output

from dockermagic import (
    JavaScriptDockerRunner,
    PackageInstallError,
    PythonDockerRunner,
    Session,
)
from dockermagic.cleanup import list_containers
from dockermagic.packages import derived_image, list_derived_images
from tests.conftest import TAG
from tests.support import loaded_shell

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


def test_python_packages_pure_and_compiled_in_runs_and_sessions() -> None:
    progress: list[str] = []
    runner = PythonDockerRunner(
        requirements=["tabulate", "numpy==2.*"], on_progress=progress.append
    )
    code = (
        "import numpy, tabulate\n"
        "print(numpy.__version__.split('.')[0], numpy.arange(4).sum())\n"
        "print(tabulate.tabulate([[1, 2]]).splitlines()[1])\n"
        "print(numpy.__file__.startswith('/opt/dockermagic/python'))\n"
    )
    result = runner.run(code, timeout=60)
    assert result.ok, result.stderr
    assert result.stdout.splitlines() == ["2 6", "1  2", "True"]
    assert runner.image.startswith("dockermagic/python-deps:")
    # The same set again, from a new runner: no build.
    progress.clear()
    again = PythonDockerRunner(requirements=["numpy==2.*", "TABULATE"], on_progress=progress.append)
    assert again.image == runner.image
    assert not any("building" in line for line in progress)
    with Session("deps", again) as session:
        cell = session.run("import tabulate\nprint(tabulate.__name__)")
        assert cell.stdout == "tabulate\n", cell.stderr


def test_javascript_packages_with_require_and_import() -> None:
    runner = JavaScriptDockerRunner(requirements=["lodash@4"])
    cjs = runner.run("const _ = require('lodash'); console.log(_.chunk([1, 2, 3, 4], 2).length)")
    assert cjs.stdout == "2\n", cjs.stderr
    esm = runner.run(
        "import _ from 'lodash'; console.log(_.kebabCase('Hello World'))", filename="main.mjs"
    )
    assert esm.stdout == "hello-world\n", esm.stderr


def test_the_build_runs_nothing_and_the_runs_have_no_network(
    docker_client: docker.DockerClient,
) -> None:
    runner = PythonDockerRunner(requirements=["tabulate"])
    history = docker_client.api.history(runner.image)
    added = [step["CreatedBy"] for step in history[: len(history) - 1]]
    # No RUN step: nothing was executed (let alone fetched) inside the build.
    assert not any("RUN" in step or "/bin/sh -c #(nop)" not in step for step in added[:3])
    seen: dict[str, Any] = {}

    def inspect(stream: str, text: str) -> None:
        if not seen:
            (container,) = list_containers(docker_client, tag=TAG)
            seen.update(docker_client.api.inspect_container(container.id))

    result = runner.run("print('up', flush=True)\nimport time\ntime.sleep(0.5)", on_output=inspect)
    assert result.ok
    assert seen["HostConfig"]["NetworkMode"] == "none"
    assert seen["Config"]["Image"] == runner.image


@pytest.mark.parametrize(
    ("language", "specs", "package", "reason"),
    [
        ("python", ["surely-no-such-package-dockermagic-x1"], "surely-no-such-package", "no such"),
        ("python", ["tabulate>>1"], "tabulate>>1", "not valid"),
        ("javascript", ["surely-no-such-package-dockermagic-x1"], "surely-no-such", "no such"),
        ("javascript", ["lodash@99.99.99"], "lodash", "no version"),
    ],
)
def test_a_package_that_cannot_be_had_is_one_clear_error(
    docker_client: docker.DockerClient, language: str, specs: list[str], package: str, reason: str
) -> None:
    before = {image.tag for image in list_derived_images(docker_client)}
    base = "dockermagic/python:offline" if language == "python" else "dockermagic/node:offline"
    with pytest.raises(PackageInstallError) as info:
        derived_image(docker_client, base, language, specs)
    assert package in info.value.package
    assert reason in info.value.reason
    assert len(str(info.value).splitlines()) == 1
    assert {image.tag for image in list_derived_images(docker_client)} == before


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_an_unreachable_index_is_one_clear_error(
    docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch, language: str
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    base = "dockermagic/python:offline" if language == "python" else "dockermagic/node:offline"
    with pytest.raises(PackageInstallError, match="cannot be reached"):
        derived_image(docker_client, base, language, ["left-pad-dockermagic-unreachable"])


def test_two_processes_asking_at_once_build_once(docker_client: docker.DockerClient) -> None:
    specs = ["tabulate==0.9.0", "six"]
    for image in list_derived_images(docker_client):
        if image.requirements == tuple(sorted(specs)):
            docker_client.images.remove(image.tag)
    code = textwrap.dedent(
        f"""
        import json
        from dockermagic.engine import connect
        from dockermagic.packages import derived_image
        lines = []
        tag = derived_image(connect(), "dockermagic/python:offline", "python",
                            {specs!r}, on_progress=lines.append)
        print(json.dumps({{"tag": tag, "built": any("building" in l for l in lines)}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outcomes = []
    for worker in workers:
        out, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    assert outcomes[0]["tag"] == outcomes[1]["tag"]
    assert sorted(o["built"] for o in outcomes) == [False, True]


def test_requirements_in_the_notebook(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("# for the cell\ntabulate\n")
    with loaded_shell(tmp_path / "logs") as shell, capture_output() as captured:
        shell.run_line_magic("docker_requirements", "python tabulate")
        shell.run_line_magic("docker_requirements", "")
        shell.run_cell_magic("docker_python", "", "import tabulate\nprint('tabulate ok')")
        shell.run_cell_magic(
            "docker_python",
            f"--requirements {tmp_path / 'requirements.txt'}",
            "import tabulate\nprint('from the file')",
        )
        shell.run_line_magic("docker_requirements", "js lodash@4")
        shell.run_cell_magic("docker_js", "", "console.log(require('lodash').VERSION[0])")
    assert captured.stdout.count("tabulate ok") == 1
    assert "from the file" in captured.stdout
    assert "python      tabulate" in captured.stdout
    assert "4\n" in captured.stdout

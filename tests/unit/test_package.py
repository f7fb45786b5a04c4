"""The package's shape: a light import, the public API, the dependency direction."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import dockermagic

PACKAGE = Path(dockermagic.__file__).parent
#: Modules that may import IPython or ipywidgets: the front ends only.
FRONT_ENDS = {"magics.py", "panel.py"}


def test_import_is_light_and_makes_no_docker_call() -> None:
    code = (
        "import sys, dockermagic\n"
        "heavy = [m for m in ('IPython', 'ipywidgets', 'rich') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(len(dockermagic.__all__))\n"
    )
    # An engine address that cannot answer: importing must not try it.
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 10


def test_core_modules_never_import_front_end_libraries() -> None:
    for module in PACKAGE.glob("*.py"):
        if module.name in FRONT_ENDS:
            continue
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                # __init__ imports the front ends lazily, inside functions.
                if module.name == "__init__.py" and name.startswith("dockermagic."):
                    continue
                assert root not in {"IPython", "ipywidgets"}, f"{module.name} imports {name}"


def test_public_api_is_exported() -> None:
    for name in (
        "AbstractDockerCodeRunner",
        "PythonDockerRunner",
        "JavaScriptDockerRunner",
        "RunResult",
        "get_runner",
        "DockermagicError",
        "EngineUnavailableError",
        "ImageUnavailableError",
        "InvalidArgumentError",
        "run_scripts",
        "ScriptsPanel",
        "Session",
        "load_ipython_extension",
        "unload_ipython_extension",
    ):
        assert name in dockermagic.__all__, name
        assert getattr(dockermagic, name) is not None

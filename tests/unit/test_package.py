"""The package's shape: a light import, the public API, the dependency direction."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dockermagic

PACKAGE = Path(dockermagic.__file__).parent
#: Modules that may import IPython, ipywidgets or rich: the front ends only.
FRONT_ENDS = {"magics.py", "panel.py", "cli.py", "console.py", "gradecli.py"}
#: What only front ends may import.
FRONT_END_LIBRARIES = {"IPython", "ipywidgets", "rich"}


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
    for module in PACKAGE.rglob("*.py"):
        if module.name in FRONT_ENDS and module.parent == PACKAGE:
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
                assert root not in FRONT_END_LIBRARIES, f"{module.name} imports {name}"


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


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "servers" not in p.parts)


def test_no_module_imports_another_modules_private_names() -> None:
    for module in _modules():
        tree = ast.parse(module.read_text(), filename=str(module))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                root = node.module.split(".")[0]
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    assert not (root in {"dockermagic", "docker"} and private), (
                        f"{module.name} imports {node.module}.{alias.name}"
                    )
                    if root in {"dockermagic", "docker"}:
                        imported.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in {"dockermagic", "docker"}:
                        imported.add((alias.asname or alias.name).split(".")[0])
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            # module._name: reaching into another module (or docker-py) from outside.
            assert not (isinstance(root, ast.Name) and root.id in imported), (
                f"{module.name}:{node.lineno} uses a private name .{attr}"
            )


#: Swarm objects: only the swarm package's SWARM_LAYER makes, lists or removes them.
SWARM_CALLS = {
    "create_service",
    "update_service",
    "remove_service",
    "inspect_service",
    "services",
    "service_logs",
    "tasks",
    "inspect_task",
    "create_config",
    "remove_config",
    "configs",
    "nodes",
    "inspect_node",
    "init_swarm",
    "join_swarm",
    "leave_swarm",
}


#: Where client.api and the client's collections may be used: container.py
#: owns every container call; images.py and packages.py image calls (pull,
#: build offline, build derived); engine.py the client; the swarm package's
#: SWARM_LAYER every service, task, config and node call.
SWARM_LAYER = {"swarm/cluster.py", "swarm/lifecycle.py"}
ENGINE_LAYER = {"container.py", "images.py", "packages.py", "engine.py", *SWARM_LAYER}
#: The client's collections of Swarm objects: SWARM_LAYER's alone.
SWARM_COLLECTIONS = {"services", "configs", "nodes", "swarm", "secrets"}


def _layer_violations(where: str, source: str) -> list[str]:
    """What a module (its path in the package) does against the layering rule."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        on_client = isinstance(node.value, ast.Name) and node.value.id == "client"
        if where not in ENGINE_LAYER:
            if node.attr == "api":
                found.append(f"{where}:{node.lineno} touches client.api")
            if on_client and node.attr in {"containers", "images", "volumes", "networks"}:
                found.append(f"{where}:{node.lineno} calls client.{node.attr}")
        if where in SWARM_LAYER:
            continue
        if on_client and node.attr in SWARM_COLLECTIONS:
            found.append(f"{where}:{node.lineno} calls client.{node.attr} (SWARM_LAYER only)")
        on_api = isinstance(node.value, ast.Attribute) and node.value.attr == "api"
        if on_api and node.attr in SWARM_CALLS:
            found.append(f"{where}:{node.lineno} calls api.{node.attr} (SWARM_LAYER only)")
    return found


def test_the_engine_layer_names_real_modules() -> None:
    missing = sorted(where for where in ENGINE_LAYER if not (PACKAGE / where).is_file())
    assert missing == []


def test_raw_docker_api_calls_live_in_the_engine_layer_only() -> None:
    problems = [
        problem
        for module in _modules()
        for problem in _layer_violations(module.relative_to(PACKAGE).as_posix(), module.read_text())
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("where", "source", "caught"),
    [
        ("batch/run.py", "client.api.create_container(x)", True),
        ("batch/run.py", "client.containers.list()", True),
        ("batch/swarm.py", "client.api.create_service(**spec)", True),
        ("batch/swarm.py", "client.services.list()", True),
        ("cleanup.py", "client.configs.list()", True),
        ("container.py", "client.api.tasks()", True),
        ("container.py", "client.api.remove_config(c)", True),
        ("container.py", "client.nodes.list()", True),
        ("container.py", "client.api.create_container(x)", False),
        ("swarm/lifecycle.py", "client.api.create_service(**spec)", False),
        ("swarm/cluster.py", "client.api.tasks(filters={})", False),
        ("swarm/runner.py", "client.api.create_service(**spec)", True),
        ("swarm/task.py", "client.api.get(url)", True),
        ("swarm/task.py", "client.services.list()", True),
        ("batch/run.py", "sweep_batch(client, run_id)", False),
    ],
)
def test_the_layering_rule_catches_what_it_forbids(where: str, source: str, caught: bool) -> None:
    assert bool(_layer_violations(where, source)) is caught


def test_only_settings_reads_dockermagic_variables() -> None:
    for module in _modules():
        if module.name == "settings.py":
            continue
        text = module.read_text()
        for line in text.splitlines():
            if ("os.environ" in line or "getenv" in line) and "DOCKERMAGIC_" in line:
                raise AssertionError(f"{module.name} reads {line.strip()}")

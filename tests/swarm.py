"""What the Swarm suites share: the images on the throw-away swarm, folders of
scripts, and the check that nothing of dockermagic is left on it.

The fixtures that make the swarm (``cluster``, ``manager``, ``on_swarm``) are
in tests/integration/conftest.py: one cluster serves every Swarm module of a
pytest run (tests/integration/test_swarm.py, test_gateway_swarm.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import docker

from dockermagic.labels import LABEL
from tests.engines import SwarmCluster

PYTHON_IMAGE = "dockermagic/python:offline"
NODE_IMAGE = "dockermagic/node:offline"
#: The images copied into the swarm's nodes, per language.
IMAGES = {"python": PYTHON_IMAGE, "javascript": NODE_IMAGE}


#: Scripts of every outcome (the sleeper needs a timeout of :data:`MIXED_TIMEOUT`,
#: the memory hog the default 512 MiB).
MIXED = {
    "a_ok.py": (
        "import os, sys\n"
        "from pathlib import Path\n"
        "text = (Path(__file__).parent / 'data' / 'input.txt').read_text()\n"
        "Path('out.txt').write_text(text)\n"
        "print('data says', Path('out.txt').read_text().strip())\n"
        "print('to stderr', file=sys.stderr)\n"
    ),
    "b_fail.py": "print('about to fail')\nraise ValueError('bad value')\n",
    "c_exit.py": "import sys\nsys.exit(3)\n",
    "d_slow.py": "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n",
    "e_hog.py": "hog = bytearray(600 * 2**20)\nprint('survived')\n",
    "f_flood.py": "while True:\n    print('flood ' * 20)\n",
    "g_hello.js": "console.log('hello from node'); process.exitCode = 2;\n",
    "data/input.txt": "forty-two\n",
}
#: Long enough that a loaded machine's slow task start and log delivery still
#: see the flood reach the output cap before the deadline (4 s did not, once).
MIXED_TIMEOUT = 8
#: What a local batch of :data:`MIXED` reports: script -> (status, exit code).
MIXED_EXPECTED = {
    "a_ok.py": ("ok", 0),
    "b_fail.py": ("failed", 1),
    "c_exit.py": ("failed", 3),
    "d_slow.py": ("timed_out", 137),
    "e_hog.py": ("oom", 137),
    "f_flood.py": ("failed", 137),
    "g_hello.js": ("failed", 2),
}


def assert_nothing_left(cluster: SwarmCluster, manager: docker.DockerClient) -> None:
    """No dockermagic service, config or task on the manager, no container on any node.

    Waits up to 20 s: a removed service's task goes once its node removed
    the container.
    """
    t0 = time.monotonic()
    deadline = t0 + 20
    while True:
        services = manager.api.services(filters={"label": LABEL})
        configs = manager.api.configs(filters={"label": LABEL})
        tasks = manager.api.tasks()
        containers = []
        for node in cluster.nodes:
            client = node.client(timeout=10)
            try:
                containers += client.api.containers(all=True, filters={"label": LABEL})
            finally:
                client.close()
        left = (services, configs, tasks, containers)
        if not any(left) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == ([], [], [], []), f"left behind: {left}"
    print(f"nothing left after {time.monotonic() - t0:.2f} s", file=sys.stderr)


def write_folder(root: Path, scripts: dict[str, str]) -> Path:
    """Write ``relative path -> text`` under ``root``.

    Returns:
        ``root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, code in scripts.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    return root

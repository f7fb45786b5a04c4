"""The JupyterLab extension: its committed bundle, its table of languages, its installation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from dockermagic.magics import _magic_names
from dockermagic.runners import runner_classes
from tools import labextension

REPO = labextension.REPO
BUNDLE = labextension.BUNDLE
TABLE = labextension.SOURCE / "src" / "languages.json"


def test_the_committed_bundle_is_built_from_its_sources() -> None:
    assert labextension.recorded_hash() == labextension.source_hash(), (
        "labextension/ changed since dockermagic/labextension was built: "
        "run `make labextension` and commit the bundle"
    )


def test_the_hash_covers_every_source_and_only_sources() -> None:
    names = {p.relative_to(labextension.SOURCE).as_posix() for p in labextension.source_files()}
    assert {"package.json", "package-lock.json", "src/index.ts", "src/languages.json"} <= names
    assert not any(n.startswith(("node_modules/", "lib/")) for n in names)


def test_the_bundle_is_a_prebuilt_extension() -> None:
    package = json.loads((BUNDLE / "package.json").read_text())
    assert package["name"] == labextension.NAME
    built = package["jupyterlab"]["_build"]
    assert (BUNDLE / built["load"]).is_file()
    assert built["extension"] == "./extension"
    install = json.loads((BUNDLE / "install.json").read_text())
    assert install["packageName"] == "dockermagic"


def test_the_wheel_installs_the_whole_bundle_where_jupyterlab_looks() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    installed = set()
    for target, patterns in data_files.items():
        for pattern in patterns:
            for path in REPO.glob(pattern):
                folder = path.parent.relative_to(BUNDLE)
                expected = PurePosixPath("share/jupyter/labextensions", labextension.NAME, folder)
                assert target == expected.as_posix(), (path, target)
                installed.add(path)
    assert installed == {p for p in BUNDLE.rglob("*") if p.is_file()}


def test_the_table_names_every_registered_language_its_names_and_magics() -> None:
    table = json.loads(TABLE.read_text())
    runners = {cls.language: cls for cls in runner_classes()}
    assert set(table) == set(runners), "every runner has a row (codemirror: null to leave it)"
    for language, row in table.items():
        cls = runners[language]
        assert row["names"] == [cls.language, *cls.aliases], language
        assert row["magics"] == _magic_names(cls), language
        assert row["codemirror"] is None or re.fullmatch(r"[a-z0-9+#-]+", row["codemirror"])


def test_jupyterlab_lists_the_extension_enabled(tmp_path: Path) -> None:
    data = tmp_path / "data" / "labextensions"
    data.mkdir(parents=True)
    (data / labextension.NAME).symlink_to(BUNDLE)
    env = {
        **os.environ,
        "JUPYTER_PATH": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    version = json.loads((BUNDLE / "package.json").read_text())["version"]
    assert f"{labextension.NAME} v{version} enabled OK (python, dockermagic)" in listing, listing


def test_an_editable_install_of_this_checkout_links_the_bundle() -> None:
    from importlib.metadata import distributions

    # The installed distribution, not a dockermagic.egg-info left in the checkout.
    urls = [
        json.loads(d.read_text("direct_url.json") or "{}")
        for d in distributions(name="dockermagic")
    ]
    if not any(
        u.get("url") == REPO.as_uri() and u.get("dir_info", {}).get("editable") for u in urls
    ):
        pytest.skip("dockermagic is not an editable install of this checkout")
    target = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / labextension.NAME
    assert target.resolve() == BUNDLE.resolve(), "run `make venv` (tools/labextension.py link)"

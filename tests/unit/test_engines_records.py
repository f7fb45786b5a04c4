"""The test harness's cluster records: whose cluster is stale (no engine is started)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import engines


def _record(base: Path, token: str, owner: list[int] | None, **made: object) -> Path:
    path = base / f"{engines.SWARM_RECORD_PREFIX}{token}.json"
    record = {"owner": owner, "netns": [], "links": [], "engines": [], "run_netns": False}
    path.write_text(json.dumps({**record, **made}))
    return path


def _dead_identity() -> list[int]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = engines._process_identity(child.pid)
    child.wait()
    assert identity is not None
    assert engines._process_identity(child.pid) in (None, identity)
    return identity


def test_a_process_identity_is_its_pid_and_start_time() -> None:
    me = engines._process_identity(os.getpid())
    assert me is not None
    assert me[0] == os.getpid()
    assert me == engines._process_identity(os.getpid())
    assert engines._process_identity(2**22 + 1) is None  # above pid_max


def test_only_the_records_of_gone_owners_are_reclaimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "BASE_DIR", tmp_path)
    live = _record(tmp_path, "0000live", engines._process_identity(os.getpid()))
    # Names that exist nowhere: nothing to stop or delete, only the record goes.
    dead = _record(
        tmp_path,
        "0000dead",
        _dead_identity(),
        netns=["dmk-0000dead-0"],
        links=["dmv0000dead1a"],
        engines=[str(tmp_path / "dmk-0000dead")],
    )
    # A pid that now belongs to another process (another start time) is gone too.
    reused = _record(tmp_path, "00reused", [os.getpid(), 1])
    junk = tmp_path / f"{engines.SWARM_RECORD_PREFIX}junk.json"
    junk.write_text("{not json")
    assert sorted(engines.reclaim_stale_clusters()) == ["0000dead", "00reused"]
    assert live.exists()
    assert not dead.exists()
    assert not reused.exists()
    assert junk.exists()  # not understood: left alone


def test_reclaim_refuses_a_directory_that_is_not_an_engines(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an extra engine's directory"):
        engines.ExtraEngine.reclaim(tmp_path / "dmk-0000dead")
    with pytest.raises(ValueError, match="not an extra engine's directory"):
        engines.ExtraEngine.reclaim(engines.BASE_DIR / "dmk-not-hex")

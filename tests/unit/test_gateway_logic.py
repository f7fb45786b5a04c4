"""The gateway's pure logic, without a server or an engine: the teacher's
configuration and ceiling, fair queueing, the audit log, the wire format."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from dockermagic.errors import (
    GatewayError,
    GatewayUnavailableError,
    InvalidArgumentError,
    LimitExceededError,
    QuotaExceededError,
    SandboxError,
)
from dockermagic.gateway.audit import AuditLog, read_audit
from dockermagic.gateway.config import GatewayConfig, SwarmSettings, hash_token
from dockermagic.gateway.scheduler import FairScheduler
from dockermagic.gateway.wire import (
    decode_error,
    decode_result,
    encode_bytes,
    encode_error,
    encode_result,
    parse_job,
)
from dockermagic.transfer import UnsafeFileError
from tests.support import make_result

TOKEN = "a-token-of-sixteen-or-more"


def config(**changes: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "users": {
            "t": {"token": "teacher-token-0123456", "role": "teacher"},
            "a": {"token": TOKEN},
            "n": {"token_sha256": hash_token("net-token-0123456789"), "network": True},
        },
        "ceiling": {"timeout": 10, "memory": "512m", "images": {"python": ["py:1", "py:2"]}},
    }
    data.update(changes)
    return GatewayConfig.from_dict(data)


# -- configuration ------------------------------------------------------------------------


def test_tokens_map_to_users() -> None:
    gateway = config()
    assert gateway.user_for_token(TOKEN).name == "a"  # type: ignore[union-attr]
    assert gateway.user_for_token("net-token-0123456789").network  # type: ignore[union-attr]
    assert gateway.user_for_token("teacher-token-0123456").teacher  # type: ignore[union-attr]
    assert gateway.user_for_token("nobody's token") is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"users": {}}, "users"),
        ({"users": {"a": {"token": "short"}}}, "token"),
        ({"users": {"a": {"token": TOKEN}, "b": {"token": TOKEN}}}, "shares a token"),
        ({"users": {"a": {"token": TOKEN, "role": "admin"}}}, "role"),
        ({"users": {"../x": {"token": TOKEN}}}, "user"),
        ({"ceiling": {"memory": "1k"}}, "memory"),
        ({"ceiling": {"privileged": True}}, "no such limit"),
        ({"quotas": {"runs_at_once": 0}}, "runs_at_once"),
        ({"portt": 1}, "unknown keys"),
        ({"swarm": "yes"}, "swarm"),
        ({"swarm": {"limit": 4}}, "unknown keys"),
        ({"swarm": {"start_timeout": 0}}, "swarm.start_timeout"),
    ],
)
def test_bad_configurations_are_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match=problem):
        config(**changes)


def test_a_swarm_is_asked_for_with_true_or_its_settings() -> None:
    assert config().swarm is None
    assert config(swarm=False).swarm is None
    assert config(swarm=True).swarm == SwarmSettings(start_timeout=60.0)
    assert config(swarm={"start_timeout": 5}).swarm == SwarmSettings(start_timeout=5.0)


def test_a_request_gets_the_defaults_lowered_to_the_ceiling() -> None:
    gateway = config(ceiling={"timeout": 10})
    user = gateway.users["a"]
    policy = gateway.policy_for(user, {})
    assert policy.timeout == 10
    assert policy.memory == 256 * 1024**2  # the library's default, below the ceiling
    assert gateway.policy_for(user, {"timeout": 5, "memory": "64m"}).memory == 64 * 1024**2


@pytest.mark.parametrize(
    ("asked", "limit", "words"),
    [
        ({"timeout": 11}, "timeout", "10 s"),
        ({"memory": "1g"}, "memory", "512 MiB"),
        ({"cpus": 2}, "cpus", "1"),
        ({"pids_limit": 4096}, "pids_limit", "128"),
        ({"network": True}, "network", "off for a"),
        ({"user": "1000:1000"}, "user", "fixed"),
        ({"read_only": False}, "read_only", "fixed"),
    ],
)
def test_a_request_over_the_ceiling_names_the_limit(
    asked: dict[str, Any], limit: str, words: str
) -> None:
    gateway = config()
    with pytest.raises(LimitExceededError) as info:
        gateway.policy_for(gateway.users["a"], asked)
    assert info.value.limit == limit
    assert words in str(info.value)


def test_network_only_for_named_users_and_images_only_from_the_list() -> None:
    gateway = config()
    assert gateway.policy_for(gateway.users["n"], {"network": True}).network
    assert gateway.image_for("python", None) == "py:1"
    assert gateway.image_for("python", "py:2") == "py:2"
    assert gateway.image_for("javascript", None) is None
    with pytest.raises(LimitExceededError, match="py:1, py:2"):
        gateway.image_for("python", "python:3.12")
    with pytest.raises(LimitExceededError, match="default image only"):
        gateway.image_for("javascript", "node:22")


def test_packages_only_from_the_teachers_list_which_maps_to_one_set() -> None:
    packages = {"python": ["tabulate", "NumPy==2.*"], "javascript": ["lodash@4", "@types/node@20"]}
    gateway = config(ceiling={"packages": packages})
    python = ("numpy==2.*", "tabulate")
    assert gateway.ceiling.packages["python"] == python
    assert gateway.packages_for("python", None) == ()
    assert gateway.packages_for("python", []) == ()
    # A listed spec, or a bare name listed with a version: the whole set (one image).
    assert gateway.packages_for("python", ["tabulate"]) == python
    assert gateway.packages_for("python", ["numpy"]) == python
    assert gateway.packages_for("python", ["Tabulate", "numpy==2.*"]) == python
    assert gateway.packages_for("javascript", ["lodash"]) == ("@types/node@20", "lodash@4")
    assert gateway.packages_for("javascript", ["@types/node"]) == ("@types/node@20", "lodash@4")
    for language, asked, named in [
        ("python", ["tabulate", "requests"], "'requests'"),
        ("python", ["numpy==1.*"], "'numpy==1.*'"),
        ("javascript", ["left-pad"], "'left-pad'"),
    ]:
        with pytest.raises(LimitExceededError, match=named):
            gateway.packages_for(language, asked)
    with pytest.raises(LimitExceededError, match="no python packages on this gateway"):
        config().packages_for("python", ["tabulate"])
    for hostile in ("tabulate", [1], ["x" * 500], ["-r /etc/passwd"], ["a"] * 100):
        with pytest.raises(InvalidArgumentError):
            gateway.packages_for("python", hostile)
    for bad in ({"cobol": ["x"]}, {"python": "tabulate"}, {"python": ["--index-url=x"]}, []):
        with pytest.raises(InvalidArgumentError):
            config(ceiling={"packages": bad})


def test_hostile_limit_values_are_refused() -> None:
    gateway = config()
    user = gateway.users["a"]
    for asked in ({"timeout": True}, {"memory": ["1g"]}, {"cpus": float("nan")}, {"x": 1}):
        with pytest.raises(InvalidArgumentError):
            gateway.policy_for(user, asked)


# -- fair queueing ------------------------------------------------------------------------


def test_slots_go_round_robin_between_users_with_waiting_programs() -> None:
    async def scenario() -> list[str]:
        scheduler = FairScheduler(capacity=1, per_user=1, queued=10)
        order: list[str] = []
        gate = asyncio.Event()

        async def program(user: str, label: str) -> None:
            async with scheduler.slot(user):
                order.append(label)
                await gate.wait()

        tasks = [asyncio.create_task(program("flood", f"f{i}")) for i in range(4)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(program("other", "o0")))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
        return order

    # Turns alternate between the users who wait: the other user's one program
    # is not kept behind the flood's queue.
    assert asyncio.run(scenario()) == ["f0", "f1", "o0", "f2", "f3"]


def test_a_users_own_limit_and_queue_are_enforced() -> None:
    async def scenario() -> tuple[int, list[str]]:
        scheduler = FairScheduler(capacity=10, per_user=2, queued=2)
        peak = 0
        outcomes: list[str] = []

        async def program() -> None:
            nonlocal peak
            try:
                async with scheduler.slot("a"):
                    peak = max(peak, scheduler.running["a"])
                    await asyncio.sleep(0.01)
                    outcomes.append("ran")
            except QuotaExceededError as exc:
                outcomes.append(exc.quota)

        await asyncio.gather(*(program() for _ in range(6)))
        return peak, outcomes

    peak, outcomes = asyncio.run(scenario())
    assert peak == 2
    assert sorted(outcomes) == ["programs waiting"] * 2 + ["ran"] * 4


def test_a_program_given_up_while_waiting_leaves_no_trace() -> None:
    async def scenario() -> tuple[int, int]:
        scheduler = FairScheduler(capacity=1, per_user=1, queued=5)
        await scheduler.acquire("a")
        waiting = asyncio.create_task(scheduler.acquire("b"))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        scheduler.release("a")
        return scheduler.total, scheduler.waiting()

    assert asyncio.run(scenario()) == (0, 0)


def test_the_fairness_holds_at_the_capacity() -> None:
    async def scenario() -> list[str]:
        scheduler = FairScheduler(capacity=2, per_user=2, queued=20)
        order: list[str] = []

        async def program(user: str) -> None:
            async with scheduler.slot(user):
                order.append(user)
                await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(program("flood")) for _ in range(10)]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(program("b")) for _ in range(2)]
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(scenario())
    # b's two programs are served among the flood's next ones, not after all ten.
    assert max(i for i, user in enumerate(order) if user == "b") <= 5, order


# -- the audit log ------------------------------------------------------------------------


def test_audit_records_are_appended_and_rotated_daily(tmp_path: Path) -> None:
    now = [dt.datetime(2026, 11, 26, 23, 59, tzinfo=dt.timezone.utc)]
    log = AuditLog(tmp_path / "audit", clock=lambda: now[0])
    log.write({"user": "a", "status": "ok"})
    now[0] = dt.datetime(2026, 11, 27, 0, 1, tzinfo=dt.timezone.utc)
    log.write({"user": "b", "status": "failed"})
    log.write({"user": "a", "status": "timed_out"})
    log.close()
    files = sorted(p.name for p in (tmp_path / "audit").iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.2026-11-26"]
    assert [r["status"] for r in read_audit(tmp_path / "audit", user="a")] == ["ok", "timed_out"]
    assert [r["user"] for r in read_audit(tmp_path / "audit")] == ["a", "b", "a"]
    assert (tmp_path / "audit" / "audit.jsonl").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "audit").stat().st_mode & 0o777 == 0o750


def test_reading_the_audit_log_skips_garbage(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    (folder / "audit.jsonl").write_bytes(
        b'{"user": "a"}\nnot json\n[1]\n' + b"x" * (2 * 1024**2) + b'\n{"user": "b"}\n'
    )
    assert [r["user"] for r in read_audit(folder)] == ["a", "b"]


# -- the wire format ----------------------------------------------------------------------


def test_results_cross_the_wire_unchanged() -> None:
    result = make_result(
        stdout="ü\n",
        files={"out.bin": b"\x00\xff"},
        displays=({"text/plain": "1"},),
        files_skipped=(("big", "too large"),),
        cpu_seconds=0.5,
        peak_memory_bytes=1024,
        timed_out=True,
        node="node-id-1",
    )
    again = decode_result(json.loads(json.dumps(encode_result(result))))
    assert again == result
    assert again.status == "timed_out"


def test_errors_cross_the_wire_as_the_same_class_and_words() -> None:
    original = LimitExceededError("memory", "1g", "512 MiB")
    again = decode_error(encode_error(original), url="http://g")
    assert type(again) is LimitExceededError
    assert str(again) == str(original)
    assert again.limit == "memory"
    assert isinstance(again, InvalidArgumentError)
    sandbox = decode_error(encode_error(SandboxError("gone", container="c1")))
    assert type(sandbox) is SandboxError
    assert sandbox.container == "c1"  # type: ignore[attr-defined]
    # A class the client does not know, or garbage, is a GatewayError.
    assert type(decode_error({"type": "os.system", "message": "x"})) is GatewayError
    assert type(decode_error("garbage")) is GatewayError


def test_jobs_from_clients_are_checked() -> None:
    good = {"source": encode_bytes(b"print(1)"), "entry": "main.py", "code": {}}
    assert parse_job(good, 1024).source == b"print(1)"
    bad_jobs: list[Any] = [
        None,
        {**good, "entry": "../main.py"},
        {**good, "code": {"/etc/passwd": ""}},
        {**good, "source": "!!"},
        {**good, "get": "*.csv"},
        {**good, "first_line": True},
        {**good, "inputs": [1]},
        {**good, "code": {"big": encode_bytes(b"x" * 2000)}},
    ]
    for job in bad_jobs:
        with pytest.raises((InvalidArgumentError, UnsafeFileError)):
            parse_job(job, 1024)


def test_a_batch_with_a_gateway_set_runs_through_it_or_says_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockermagic.batch import run_scripts

    (tmp_path / "a.py").write_text("print(1)")
    with pytest.raises(InvalidArgumentError, match="no gateway is configured"):
        run_scripts(tmp_path, backend="gateway")
    monkeypatch.setenv("DOCKERMAGIC_GATEWAY", "http://127.0.0.1:9")
    monkeypatch.setenv("DOCKERMAGIC_TOKEN", TOKEN)
    with pytest.raises(InvalidArgumentError, match="holds the engine"):
        run_scripts(tmp_path, backend="swarm")
    # Nothing listens there: said before any script runs, as a missing engine is.
    with pytest.raises(GatewayUnavailableError):
        run_scripts(tmp_path)

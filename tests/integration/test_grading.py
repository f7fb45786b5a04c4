"""The teacher's loop against the real engine: grade, handout, and %docker_check.

The 32 made-up submissions of ``tools/make_submissions.py`` (right, wrong,
raising, stubs, endless loops, floods, deleted and moved cells, every cheat
we know of, writes aimed at the host) must give exactly the expected table;
nothing may appear on the host outside the output folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from IPython.core.interactiveshell import InteractiveShell

from dockermagic.cli import main
from dockermagic.gateway.audit import read_audit
from dockermagic.grading import Outcome, Verdict
from dockermagic.grading.course import handout, load_course
from dockermagic.pool import close_pools
from tests.gateway import GatewayProcess
from tests.support import loaded_shell

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_submissions", ROOT / "tools" / "make_submissions.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_submissions = _tool()


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def graded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, dict[str, str]], int]]:
    folder = tmp_path_factory.mktemp("grading")
    expected = make_submissions.write_submissions(folder / "submissions")
    marker = Path(make_submissions.HOST_MARKER)
    marker.unlink(missing_ok=True)
    before = (_digest(folder / "submissions"), _digest(NOTEBOOKS))
    status = main(
        [
            "grade",
            str(folder / "submissions"),
            "--course",
            str(NOTEBOOKS),
            "--notebook",
            "01",
            "--workers",
            "8",
            "--json",
            str(folder / "grades.json"),
            "--csv",
            str(folder / "grades.csv"),
            "--html",
            str(folder / "grades.html"),
            "--logs",
            str(folder / "logs"),
        ]
    )
    assert not marker.exists(), "a submission wrote on the host"
    assert (_digest(folder / "submissions"), _digest(NOTEBOOKS)) == before
    return folder, expected, status


def test_the_grade_table_is_exactly_the_expected_one(
    graded: tuple[Path, dict[str, dict[str, str]], int],
) -> None:
    folder, expected, status = graded
    assert status == 0
    records = json.loads((folder / "grades.json").read_text(encoding="utf-8"))
    got: dict[str, dict[str, str]] = {}
    for record in records:
        assert set(record) >= {"student", "exercise", "status", "score"}
        got.setdefault(record["student"], {})[record["exercise"]] = record["status"]
    assert len(got) >= 30
    assert got == expected


def test_partial_credit_and_hints_in_the_records(
    graded: tuple[Path, dict[str, dict[str, str]], int],
) -> None:
    folder, _, _ = graded
    records = {
        (r["student"], r["exercise"].rpartition("/")[2]): r
        for r in json.loads((folder / "grades.json").read_text(encoding="utf-8"))
    }
    # check=True raises on two of three commands: one case in three is right.
    raises = records[("raises", "run_tool")]
    assert raises["score"] == pytest.approx(0.33)
    assert "CalledProcessError" in raises["hint"]
    typo = records[("typo", "run_tool")]
    assert "AttributeError" in typo["hint"]
    assert "stdot" in typo["hint"]
    assert "line 7 of your cell" in typo["hint"]
    assert records[("right_1", "run_tool")]["score"] == 1
    assert "imitates the check's report" in records[("cheat_atexit", "run_tool")]["hint"]
    assert records[("loop", "run_tool")]["status"] == "timeout"
    assert records[("deleted_first", "run_tool")]["hint"] == "no cell defines `run_tool`"
    assert records[("pasted_elsewhere", "run_tool")]["origin"].startswith("cell ")
    # The harness's own report line is not the student's output.
    assert all(
        "@@" not in r["output"] or r["student"].startswith("cheat") for r in records.values()
    )


def test_reports_escape_what_students_wrote(
    graded: tuple[Path, dict[str, dict[str, str]], int],
) -> None:
    folder, _, _ = graded
    page = (folder / "grades.html").read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;graded&#x27;)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page
    assert "\x1b" not in page.split("<pre>")[0]
    table = (folder / "grades.csv").read_text(encoding="utf-8")
    assert table.splitlines()[0].startswith("student,exercise,status,score")
    log = (folder / "logs" / "grade-cheat_frames.log").read_text(encoding="utf-8")
    assert "\x1b" not in log
    assert "\\x1b" in log


def test_grading_that_cannot_run_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grade", str(tmp_path / "nowhere"), "--course", str(NOTEBOOKS)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["grade", str(tmp_path), "--course", str(tmp_path)]) == 2
    assert "no notebooks" in capsys.readouterr().err


def test_handout_clears_exercises_and_leaves_solutions_out(tmp_path: Path) -> None:
    course = load_course(NOTEBOOKS)
    out = tmp_path / "handout"
    written = handout(course, out)
    assert len(written) == len(course.notebooks)
    assert not (out / "solutions").exists()
    assert not (out / "src").exists()
    assert (out / "exercise_checks" / "ch01.py").is_file()
    document = json.loads((out / "01-subprocess.ipynb").read_text(encoding="utf-8"))
    exercise_cells = [
        c for c in document["cells"] if c.get("metadata", {}).get("dockermagic", {}).get("exercise")
    ]
    check_cells = [c for c in document["cells"] if "".join(c["source"]).startswith("%docker_check")]
    assert exercise_cells
    assert check_cells
    assert all(
        not c["outputs"] and c["execution_count"] is None for c in exercise_cells + check_cells
    )
    kept = [c for c in document["cells"] if c["cell_type"] == "code" and c["outputs"]]
    assert kept, "the lesson's own outputs stay"
    with pytest.raises(Exception, match="already exists"):
        handout(course, out)
    assert main(["handout", str(tmp_path / "second"), "--course", str(NOTEBOOKS)]) == 0


@pytest.fixture(scope="module")
def ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        with loaded_shell(tmp_path_factory.mktemp("logs")) as shell:
            shell.run_cell("import exercise_checks.ch01")
            yield shell
    finally:
        sys.path.remove(str(NOTEBOOKS))


def _check(ip: InteractiveShell, exercise: str) -> Verdict:
    outcome = ip.run_cell(f"%docker_check {exercise}", store_history=True)
    assert isinstance(outcome.result, Verdict), outcome
    return outcome.result


def test_docker_check_finds_the_answer_in_a_session_cell(ip: InteractiveShell) -> None:
    # A run_tool that would leave a file behind if it ever ran on this host.
    answer = make_submissions.RIGHT_RUN_TOOL.replace(
        "    done =", "    open('/tmp/dockermagic-check-ran-here', 'w').close()\n    done ="
    )
    Path("/tmp/dockermagic-check-ran-here").unlink(missing_ok=True)
    try:
        _check_in_a_session(ip, answer)
    finally:
        ip.run_line_magic("docker_session", "--stop exercises")


def _check_in_a_session(ip: InteractiveShell, answer: str) -> None:
    ip.run_cell("%%docker_python --session exercises\n" + answer, store_history=True)
    assert "run_tool" not in ip.user_ns, "the answer was defined on the host"
    assert repr(_check(ip, "01-subprocess/run_tool")) == "✅ correct"
    assert not Path("/tmp/dockermagic-check-ran-here").exists()

    # The latest cell wins: a typo is reported with its own line (the %% line is line 1).
    ip.run_cell(
        "%%docker_python --session exercises\n"
        + make_submissions.RIGHT_RUN_TOOL.replace("done.stdout", "done.stdot"),
        store_history=True,
    )
    verdict = _check(ip, "run_tool")
    assert verdict.outcome is Outcome.FAILED
    assert "AttributeError" in verdict.hint
    assert "line 7 of your cell" in verdict.hint


@pytest.mark.gateway_server
def test_docker_check_through_a_gateway(
    ip: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A student's kernel with a gateway: the session cell and the check's probe
    # both run there as the student; the verdict is still decided here.
    answer = make_submissions.RIGHT_RUN_TOOL.replace(
        "    done =", "    open('/tmp/dockermagic-check-ran-here', 'w').close()\n    done ="
    )
    Path("/tmp/dockermagic-check-ran-here").unlink(missing_ok=True)
    with GatewayProcess(tmp_path / "gateway") as gateway:
        with monkeypatch.context() as env:
            for key, value in gateway.env("alice").items():
                env.setenv(key, value)
            try:
                _check_in_a_session(ip, answer)
            finally:
                ip.run_line_magic("docker_session", "--stop exercises")
                close_pools(wait=5.0)
        records = list(read_audit(str(gateway.audit_dir)))
    assert {record["user"] for record in records} == {"alice"}
    # Two session cells, and one probe run per check (the answer and the check
    # together, in a fresh container).
    assert [record["kind"] for record in records] == ["cell", "run", "cell", "run"], records


def test_docker_check_without_an_answer_says_what_to_run(ip: InteractiveShell) -> None:
    verdict = _check(ip, "01-subprocess/sort_words")
    assert verdict.outcome is Outcome.MISSING
    assert "run the cell that defines `sort_words`" in repr(verdict)
    result = ip.run_cell("%docker_check no-such/exercise")
    assert result.error_in_exec is not None or result.error_before_exec is not None


#: Through a gateway: right, wrong, raising, a stub, an endless loop, cheats and a
#: write aimed at the host (a subset: the whole set is the local test's).
THROUGH_A_GATEWAY = (
    "right_1",
    "stub",
    "wrong_value",
    "raises",
    "loop",
    "cheat_marker",
    "cheat_read_expected",
    "host_write",
)


@pytest.mark.gateway_server
def test_grading_through_a_gateway_gives_the_same_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = make_submissions.write_submissions(tmp_path / "submissions")
    for path in (tmp_path / "submissions").iterdir():
        if path.stem not in THROUGH_A_GATEWAY:
            if path.is_file():
                path.unlink()
            else:
                shutil.rmtree(path)
    marker = Path(make_submissions.HOST_MARKER)
    marker.unlink(missing_ok=True)
    with GatewayProcess(tmp_path / "gateway") as gateway:
        # The teacher's token: each student's code runs on the gateway as the
        # teacher, the verdicts are decided here.
        for key, value in gateway.env("teacher").items():
            monkeypatch.setenv(key, value)
        status = main(
            [
                "grade",
                str(tmp_path / "submissions"),
                "--course",
                str(NOTEBOOKS),
                "--notebook",
                "01",
                "--workers",
                "4",
                "--json",
                str(tmp_path / "grades.json"),
                "--logs",
                str(tmp_path / "logs"),
            ]
        )
        close_pools(wait=5.0)
    assert status == 0
    assert not marker.exists(), "a submission wrote on the host"
    got: dict[str, dict[str, str]] = {}
    for record in json.loads((tmp_path / "grades.json").read_text(encoding="utf-8")):
        got.setdefault(record["student"], {})[record["exercise"]] = record["status"]
    assert got == {name: expected[name] for name in THROUGH_A_GATEWAY}
    # Every check ran on the gateway, as the teacher: one audit record each.
    users = {record["user"] for record in read_audit(str(gateway.audit_dir))}
    assert users == {"teacher"}, users
    assert len(list(read_audit(str(gateway.audit_dir)))) >= len(THROUGH_A_GATEWAY)

"""The notebooks' exercise checks accept the teacher's reference answers.

nbval runs the notebooks as stored, with the students' stubs, and their
stored outputs say "❌ not yet": so the same checks are known to reject the
stubs. Here every answer in ``notebooks/solutions`` must be "✅ correct":
``solutions/chNN.py`` answers the exercises of notebook ``NN-*``, and is
checked as a student's cell would be (in a container, judged on the host).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from dockermagic.grading import Answer, Exercise, Verdict, check
from dockermagic.grading.course import load_course
from tests.support import loaded_shell

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

COURSE = load_course(NOTEBOOKS)


def test_every_exercise_of_the_notebooks_is_covered() -> None:
    assert len(COURSE.exercises) == 13
    for item in COURSE.exercises:
        assert (NOTEBOOKS / "solutions" / f"ch{item.id[:2]}.py").is_file(), item.id


@pytest.mark.parametrize("item", COURSE.exercises, ids=lambda item: item.id)
def test_reference_answer_passes_the_check(item: Exercise) -> None:
    solution = NOTEBOOKS / "solutions" / f"ch{item.id[:2]}.py"
    verdict = check(item, Answer(solution.read_text(encoding="utf-8"), origin=solution.name))
    assert verdict.ok, repr(verdict)
    assert verdict.score == verdict.weight
    assert repr(verdict) == "✅ correct"


@pytest.fixture(scope="module")
def ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        with loaded_shell(tmp_path_factory.mktemp("logs")) as shell:
            shell.run_cell("import exercise_checks.ch02\nimport exercise_checks.ch04")
            yield shell
    finally:
        sys.path.remove(str(NOTEBOOKS))


def _cell(ip: InteractiveShell, source: str) -> None:
    outcome = ip.run_cell(source, store_history=True)
    assert outcome.success, outcome


def test_multiprocessing_answers_run_in_the_session_and_pass_their_check(
    ip: InteractiveShell,
) -> None:
    try:
        _session_and_checks(ip)
    finally:
        ip.run_line_magic("docker_session", "--stop exercises")


def _session_and_checks(ip: InteractiveShell) -> None:
    # In the session the cell is __main__, its guarded block runs; the check
    # imports it as a module, where the block does not run.
    answers = (NOTEBOOKS / "solutions" / "ch02.py").read_text(encoding="utf-8")
    _cell(
        ip,
        "%%docker_python --session exercises --out tried\n"
        + answers
        + "\n\nif __name__ == '__main__':\n"
        "    print('guarded block ran:', pool_map(abs, [-1, -2], 2))\n",
    )
    assert ip.user_ns["tried"].strip() == "guarded block ran: [1, 2]"
    # A cell that tries the functions out, with targets defined in the session.
    _cell(
        ip,
        "%%docker_python --session exercises --out tried\n"
        "import sys\n\n\ndef bye():\n    sys.exit(4)\n\n\n"
        "print(exit_codes([bye, bye]), pool_map(abs, [-3, 4], 2))\n",
    )
    assert ip.user_ns["tried"].strip() == "[4, 4] [3, 4]"
    squares = (NOTEBOOKS / "solutions" / "ch04.py").read_text(encoding="utf-8")
    _cell(ip, "%%docker_python --session exercises --out tried\n" + squares + "print(squares([3]))")
    assert ip.user_ns["tried"].strip() == "{3: 9}"
    for exercise in ("exit_codes", "pool_map", "squares"):
        verdict = ip.run_cell(f"%docker_check {exercise}", store_history=True).result
        assert isinstance(verdict, Verdict)
        assert repr(verdict) == "✅ correct", exercise
    assert "pool_map" not in ip.user_ns, "an answer was defined on the host"

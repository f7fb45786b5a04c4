"""Warm interpreters against the real engine: state, streams, interrupts, crashes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

from dockermagic.policy import SandboxPolicy
from dockermagic.sessions import Session, SessionManager, SessionRestartedWarning
from tests.support import loaded_shell


@pytest.fixture(scope="module")
def manager() -> Iterator[SessionManager]:
    sessions = SessionManager()
    yield sessions
    sessions.close()


@pytest.fixture
def py(manager: SessionManager) -> Iterator[Session]:
    session = manager.get("py", "python")
    yield session
    manager.stop("py")


@pytest.fixture
def js(manager: SessionManager) -> Iterator[Session]:
    session = manager.get("js", "javascript")
    yield session
    manager.stop("js")


def ok(session: Session, code: str, **kwargs: object) -> str:
    result = session.run(code, **kwargs)  # type: ignore[arg-type]
    assert result.ok, result
    return result.stdout


# -- state -------------------------------------------------------------------------------


@pytest.mark.gateway
def test_python_state_persists(py: Session) -> None:
    ok(py, "import math\nx = 41\ndef f(a):\n    return a + 1\nclass Point:\n    y = 2\n")
    assert ok(py, "print(f(x), Point.y, math.floor(2.5))") == "42 2 2\n"
    assert ok(py, "x += 1\nprint(x)") == "42\n"
    # Top-level await works too, on one event loop for the session.
    assert ok(py, "import asyncio\nawait asyncio.sleep(0)\nprint('awaited', x)") == "awaited 42\n"
    # Classes defined in a cell pickle (the namespace is __main__).
    assert ok(py, "import pickle\nprint(type(pickle.loads(pickle.dumps(Point()))).y)") == "2\n"


@pytest.mark.gateway
def test_a_process_pool_in_a_cell_keeps_the_session(py: Session) -> None:
    # Forked workers inherit the interpreter's protocol stream; they must not
    # touch it (this broke the exec-based sessions before the warm interpreters).
    code = (
        "from multiprocessing import Pool\n"
        "def square(n):\n    return n * n\n"
        "with Pool(2) as pool:\n    print(pool.map(square, range(5)))\n"
        "runs = globals().get('runs', 0) + 1\nprint('runs', runs)\n"
    )
    for run in (1, 2, 3):
        assert ok(py, code, timeout=30) == f"[0, 1, 4, 9, 16]\nruns {run}\n"


@pytest.mark.gateway
def test_javascript_state_persists(js: Session) -> None:
    ok(js, "const a = 40; let b = 1; function f(n) { return n + 1; }\nclass K { static z = 3; }")
    assert ok(js, "console.log(f(a) + b, K.z)") == "42 3\n"
    assert ok(js, "const c = await Promise.resolve(a + 2);\nconsole.log(c)") == "42\n"
    assert ok(js, "b += 1; console.log(c, b)") == "42 2\n"
    # A cell lasts until the work it scheduled is done, as a script would.
    assert ok(js, "setTimeout(() => console.log('later'), 100); console.log('now')") == (
        "now\nlater\n"
    )


# -- streams -----------------------------------------------------------------------------


@pytest.mark.gateway
def test_python_streams_are_apart_and_in_order(py: Session) -> None:
    chunks: list[tuple[str, str]] = []
    code = (
        "import sys, subprocess, time\n"
        "print('out 1')\n"
        "print('err 1', file=sys.stderr)\n"
        "subprocess.run(['sh', '-c', 'echo child out; echo child err >&2'])\n"
        "time.sleep(0.01)\n"
        "print('out 2')\n"
    )
    result = py.run(code, on_output=lambda stream, text: chunks.append((stream, text)))
    assert result.stdout == "out 1\nchild out\nout 2\n"
    assert result.stderr == "err 1\nchild err\n"
    text = "".join(t for _, t in chunks)
    assert text.index("out 1") < text.index("err 1") < text.index("child") < text.index("out 2")


@pytest.mark.gateway
def test_javascript_streams_are_apart_and_in_order(js: Session) -> None:
    result = js.run("console.log('o1'); console.error('e1'); process.stdout.write('o2\\n');")
    assert result.stdout == "o1\no2\n"
    assert result.stderr == "e1\n"


@pytest.mark.gateway
def test_output_streams_live(py: Session) -> None:
    arrivals: list[float] = []
    started = time.monotonic()
    py.run(
        "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')",
        on_output=lambda _s, _t: arrivals.append(time.monotonic() - started),
    )
    # Relative, not absolute: a loaded machine delays both lines alike, but only
    # output that streams puts the cell's sleep between them.
    assert arrivals[-1] - arrivals[0] > 1.0, "the first line arrives while the cell still runs"


@pytest.mark.gateway
@pytest.mark.parametrize("lang", ["python", "javascript"])
def test_one_megabyte_of_output(manager: SessionManager, lang: str) -> None:
    session = manager.get("mb", lang)
    try:
        code = (
            "for i in range(10000): print('y' * 99)"
            if lang == "python"
            else "for (let i = 0; i < 10000; i++) console.log('y'.repeat(99));"
        )
        result = session.run(code)
        assert result.ok, result.status
        assert len(result.stdout) == 1_000_000
        assert result.stdout == ("y" * 99 + "\n") * 10000
    finally:
        manager.stop("mb")


@pytest.mark.gateway
def test_output_cap_interrupts_and_the_session_keeps_working(manager: SessionManager) -> None:
    policy = SandboxPolicy.default().replace(output_limit="20k")
    session = manager.get("cap", "python", policy=policy)
    try:
        ok(session, "kept = 1")
        result = session.run("while True: print('x' * 100)")
        assert result.output_truncated
        assert len(result.stdout) <= 20 * 1024
        assert ok(session, "print(kept)") == "1\n"
    finally:
        manager.stop("cap")


@pytest.mark.gateway
def test_stdin_and_inputs(py: Session, js: Session) -> None:
    assert ok(py, "print(input()[::-1])", stdin="olleh") == "hello\n"
    assert "EOFError" in py.run("input()").stderr, "without stdin: end-of-file at once"
    assert ok(py, "print(n * 2, name)", inputs={"n": 21, "name": "Zoë"}) == "42 Zoë\n"
    assert ok(js, "limit = 99; console.log(limit)", inputs={"limit": 10}) == "10\n"
    assert ok(js, "console.log(limit)", inputs={"limit": 11}) == "11\n"


# -- failures ----------------------------------------------------------------------------


@pytest.mark.gateway
def test_python_traceback_has_the_cells_line_numbers(py: Session) -> None:
    ok(py, "def helper():\n    return 1 / 0\n")
    result = py.run("x = 1\n\nhelper()\n")
    assert result.exit_code == 1
    assert 'cell-2/main.py", line 3, in <module>' in result.stderr
    assert 'cell-1/main.py", line 2, in helper' in result.stderr
    assert "    return 1 / 0" in result.stderr, "the source line is shown"
    assert "python_server" not in result.stderr
    syntax = py.run("a = 1\nb = (\n")
    assert 'main.py", line 2' in syntax.stderr
    assert "SyntaxError" in syntax.stderr


@pytest.mark.gateway
def test_javascript_error_has_the_cells_line_numbers(js: Session) -> None:
    result = js.run("let a = 1;\n\nnull.boom;\n")
    assert result.exit_code == 1
    assert "/code/cell-1/main.js:3" in result.stderr
    assert "node_server" not in result.stderr
    later = js.run("\nawait Promise.reject(new Error('async boom'));")
    assert later.exit_code == 1
    assert "async boom" in later.stderr
    assert "cell-2/main.js:2" in later.stderr


@pytest.mark.gateway
def test_exit_ends_the_cell_not_the_session(py: Session, js: Session) -> None:
    ok(py, "kept = 'yes'")
    assert py.run("import sys\nprint('bye')\nsys.exit(3)").exit_code == 3
    assert py.run("raise SystemExit('message')").stderr == "message\n"
    assert ok(py, "print(kept)") == "yes\n"
    ok(js, "const kept = 'yes';")
    assert js.run("console.log('bye'); process.exit(4); console.log('not')").stdout == "bye\n"
    assert js.run("process.exitCode = 5").exit_code == 5
    assert ok(js, "console.log(kept)") == "yes\n"


@pytest.mark.gateway
@pytest.mark.parametrize(
    ("lang", "crash", "status"),
    [("python", "import os; os._exit(7)", 7), ("javascript", "process.abort()", 134)],
)
def test_crash_is_reported_and_recovered(
    manager: SessionManager, lang: str, crash: str, status: int
) -> None:
    session = manager.get("crash", lang)
    try:
        session.start()
        with pytest.warns(SessionRestartedWarning, match=f"exited with status {status}"):
            result = session.run(crash)
        assert result.exit_code == status
        assert result.status == "failed"
        again = session.run("print('back')" if lang == "python" else "console.log('back')")
        assert again.stdout == "back\n"
        assert again.container_name != result.container_name
    finally:
        manager.stop("crash")


@pytest.mark.gateway
def test_javascript_out_of_memory(manager: SessionManager) -> None:
    policy = SandboxPolicy.default().replace(memory="96m")
    session = manager.get("jsoom", "javascript", policy=policy)
    try:
        with pytest.warns(SessionRestartedWarning, match="out of memory"):
            result = session.run("const big = []; while (true) big.push(Buffer.alloc(1e6, 1));")
        assert result.oom_killed
        assert session.run("console.log('alive')").stdout == "alive\n"
    finally:
        manager.stop("jsoom")


# -- interrupts --------------------------------------------------------------------------


@pytest.mark.gateway
@pytest.mark.parametrize(
    ("lang", "setup", "stuck", "check"),
    [
        ("python", "v = 3", "while True: pass", "print(v)"),
        ("javascript", "const v = 3;", "while (true) {}", "console.log(v)"),
        ("javascript", "const v = 3;", "await new Promise(() => {})", "console.log(v)"),
        ("javascript", "const v = 3;", "setInterval(() => console.log('t'), 50)", "console.log(v)"),
    ],
)
def test_timeout_interrupts_and_keeps_state(
    manager: SessionManager, lang: str, setup: str, stuck: str, check: str
) -> None:
    session = manager.get("intr", lang)
    try:
        ok(session, setup)
        result = session.run(stuck, timeout=0.5)
        assert result.timed_out
        assert result.status == "timed_out"
        assert result.duration < 2
        assert ok(session, check) == "3\n", "state kept, the interval cleared"
        assert session.restarts == 0
    finally:
        manager.stop("intr")


def test_cell_that_ignores_the_interrupt_is_killed_and_recreated(py: Session) -> None:
    py.grace = 0.5
    ok(py, "v = 1")
    code = (
        "import time\n"
        "while True:\n"
        "    try:\n"
        "        time.sleep(10)\n"
        "    except BaseException:\n"
        "        pass\n"
    )
    with pytest.warns(SessionRestartedWarning, match="did not stop within 0.5 s"):
        result = py.run(code, timeout=0.5)
    assert result.timed_out
    assert result.exit_code == 137
    assert result.duration < 3
    assert ok(py, "print('v' in globals())") == "False\n"
    assert py.restarts == 1


@pytest.mark.gateway
def test_cancel(py: Session) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    result = py.run("import time; time.sleep(30)", cancel=cancel)
    assert result.cancelled
    assert result.status == "cancelled"
    assert ok(py, "print('fine')") == "fine\n"


# -- threads -----------------------------------------------------------------------------


@pytest.mark.gateway
def test_concurrent_threads_run_cells_one_at_a_time_in_order(py: Session) -> None:
    ok(py, "import time\nlog = []")
    results: dict[int, str] = {}

    def submit(i: int) -> None:
        code = f"log.append({i}); time.sleep(0.05); log.append(-{i}); print(len(log))"
        results[i] = py.run(code).stdout

    threads = []
    for i in range(1, 7):
        thread = threading.Thread(target=submit, args=(i,))
        thread.start()
        threads.append(thread)
        time.sleep(0.01)  # submission order is the thread order
    for thread in threads:
        thread.join()
    expected = [n for i in range(1, 7) for n in (i, -i)]
    assert ok(py, "print(log)") == f"{expected}\n", "cells never overlap and keep their order"
    assert sorted(int(out) for out in results.values()) == [2 * i for i in range(1, 7)]


# -- %docker_reset -----------------------------------------------------------------------


@pytest.fixture
def ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    with loaded_shell(tmp_path_factory.mktemp("logs")) as shell:
        yield shell


@pytest.mark.gateway
def test_reset_magic_restarts_the_interpreter(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell_magic("docker_python", "--session lab", "x = 1")
    ip.run_cell_magic("docker_js", "--session lab", "const y = 2;")
    ip.run_cell_magic("docker_python", "--session lab --out o", "print(x)")
    assert ip.user_ns["o"] == "1\n"
    ip.user_ns["n"] = 5
    ip.run_cell_magic("docker_python", "--session lab --in n --out o", "\nprint(n + x)")
    assert ip.user_ns["o"] == "6\n"
    capsys.readouterr()
    ip.run_line_magic("docker_reset", "lab --language python")
    assert capsys.readouterr().out == "restarted session 'lab' (python)\n"
    ip.run_cell_magic("docker_python", "--session lab --out o", "print('x' in globals())")
    assert ip.user_ns["o"] == "False\n"
    ip.run_cell_magic("docker_js", "--session lab --out o", "console.log(y)")
    assert ip.user_ns["o"] == "2\n", "the other language's interpreter is untouched"
    ip.run_line_magic("docker_reset", "")
    assert "restarted session 'lab' (javascript)" in capsys.readouterr().out
    with pytest.raises(Exception, match="no session named 'nope'"):
        ip.run_line_magic("docker_reset", "nope")

"""The IPython extension on a real InteractiveShell against the real engine."""

from __future__ import annotations

import _thread
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from dockermagic.cleanup import list_containers
from dockermagic.magics import CellFailedError, CellInterrupted, DockerMagics
from dockermagic.pool import idle_containers
from dockermagic.result import RunResult
from tests.support import loaded_shell


@pytest.fixture(scope="module")
def ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    with loaded_shell(tmp_path_factory.mktemp("logs")) as shell:
        yield shell


def magics(ip: InteractiveShell) -> DockerMagics:
    found = ip.magics_manager.registry["DockerMagics"]
    assert isinstance(found, DockerMagics)
    return found


class Recorder:
    """A stand-in for sys.stdout that notes when each chunk arrived."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.chunks.append((time.monotonic(), text))
        return len(text)

    def flush(self) -> None:
        pass


def test_output_streams_while_the_program_runs(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr("sys.stdout", recorder)
    code = "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(0.5)\n"
    ip.run_cell_magic("docker_python", "", code)
    ended = time.monotonic()
    monkeypatch.undo()
    text = "".join(t for _, t in recorder.chunks)
    assert text == "tick 0\ntick 1\ntick 2\n"
    seen = ""
    for at, chunk in recorder.chunks:
        seen += chunk
        if "tick 0\n" in seen:
            first = at
            break
    assert ended - first > 0.9, "the first line must arrive before the program ends"


def test_stdout_and_stderr_go_to_their_streams(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell_magic("docker_js", "", "console.log('out'); console.error('err');")
    captured = capsys.readouterr()
    assert captured.out == "out\n"
    assert captured.err == "err\n"


def test_out_err_result_capture_unicode(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "import sys\nprint('héllo ☃ 日本')\nprint('wärning', file=sys.stderr)\n"
    ip.run_cell_magic("docker_python", "--out o --err e --result r", code)
    assert ip.user_ns["o"] == "héllo ☃ 日本\n"
    assert ip.user_ns["e"] == "wärning\n"
    result = ip.user_ns["r"]
    assert isinstance(result, RunResult)
    assert result.ok
    assert result.language == "python"
    assert capsys.readouterr().out == "", "--out captures instead of showing"


@pytest.mark.parametrize("magic", ["docker_python", "docker_js"])
def test_inputs_round_trip(ip: InteractiveShell, magic: str) -> None:
    value = {"name": "Zoë ☃", "nums": [1, 2.5, None, True], "nested": {"k": "v"}}
    ip.user_ns["data"] = value
    ip.user_ns["count"] = 3
    if magic == "docker_python":
        code = "import json\nprint(json.dumps({'data': data, 'count': count}))"
    else:
        code = "console.log(JSON.stringify({data, count}));"
    ip.run_cell_magic(magic, "--in data count --out o --quiet", code)

    assert json.loads(ip.user_ns["o"]) == {"data": value, "count": 3}


def test_javascript_inputs_are_constants(ip: InteractiveShell) -> None:
    ip.user_ns["limit"] = 10
    ip.run_cell_magic("docker_js", "--in limit --out o", "limit = 99;\nconsole.log(limit);")
    assert ip.user_ns["o"] == "10\n"


def test_bad_inputs_are_usage_errors(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="no variable 'missing'"):
        ip.run_cell_magic("docker_python", "--in missing", "print(1)")
    ip.user_ns["aset"] = {1, 2}
    with pytest.raises(UsageError, match="not JSON-encodable"):
        ip.run_cell_magic("docker_python", "--in aset", "print(1)")


@pytest.mark.parametrize("inputs", ["", "--in n"])
def test_python_failure_reports_the_cells_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], inputs: str
) -> None:
    ip.user_ns["n"] = 1
    with pytest.raises(CellFailedError, match="python cell exited with status 1") as info:
        ip.run_cell_magic("docker_python", inputs, "x = 1\n\ny = x / 0\n")
    err = capsys.readouterr().err
    # The cell's own name, and the editor's line numbers (line 1 is the %% line).
    assert re.search(r'File "Cell In\[\d+\]", line 4, in <module>', err), err
    assert "_dockermagic" not in err, "the bootstrap stays out of the traceback"
    assert info.value.result is not None
    assert info.value.result.exit_code == 1


@pytest.mark.parametrize("inputs", ["", "--in n"])
def test_python_syntax_error_reports_the_cells_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], inputs: str
) -> None:
    ip.user_ns["n"] = 1
    with pytest.raises(CellFailedError):
        ip.run_cell_magic("docker_python", inputs, "a = 1\nb = (\n")
    err = capsys.readouterr().err
    assert re.search(r'File "Cell In\[\d+\]", line 3', err), err
    assert "SyntaxError" in err


@pytest.mark.parametrize("inputs", ["", "--in n"])
def test_javascript_failure_reports_the_cells_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], inputs: str
) -> None:
    ip.user_ns["n"] = 1
    with pytest.raises(CellFailedError, match="javascript cell exited with status 1"):
        ip.run_cell_magic("docker_js", inputs, "let a = 1;\n\nnull.boom;\n")
    err = capsys.readouterr().err
    assert re.search(r"Cell In\[\d+\]:4", err), err
    assert "node:internal" not in err


def test_failure_renders_as_one_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = ip.run_cell("%%docker_python\nraise SystemExit(4)\n")
    assert isinstance(result.error_in_exec, CellFailedError)
    out = capsys.readouterr().out
    assert "CellFailedError: python cell exited with status 4" in out
    assert "Traceback" not in out
    assert "magics.py" not in out


def test_no_raise_error(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell_magic("docker_python", "--no-raise-error --result r", "import sys; sys.exit(2)")
    assert ip.user_ns["r"].exit_code == 2


def test_timeout(ip: InteractiveShell) -> None:
    started = time.monotonic()
    with pytest.raises(CellFailedError, match="timed out after 1 s"):
        ip.run_cell_magic("docker_python", "--timeout 1", "import time; time.sleep(30)")
    assert time.monotonic() - started < 6


def test_out_of_memory(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CellFailedError, match=r"ran out of memory \(limit 32 MiB\)"):
        ip.run_cell_magic("docker_python", "--memory 32m", "x = bytearray(200 * 1024 * 1024)")


def test_output_cap(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    magics(ip).output_limit = "20k"
    try:
        with pytest.raises(CellFailedError, match="printed more than 20 KiB"):
            ip.run_cell_magic("docker_python", "", "while True: print('x' * 100)")
    finally:
        magics(ip).output_limit = "1m"
    assert len(capsys.readouterr().out) <= 20 * 1024


def test_network_is_opt_in(ip: InteractiveShell) -> None:
    code = "import os; print(sorted(os.listdir('/sys/class/net')))"
    ip.run_cell_magic("docker_python", "--out off", code)
    ip.run_cell_magic("docker_python", "--network --out on", code)
    assert ip.user_ns["off"] == "['lo']\n"
    assert "eth0" in ip.user_ns["on"]


def test_cpus_and_image_options(ip: InteractiveShell) -> None:
    code = (
        "import os\n"
        "v2 = '/sys/fs/cgroup/cpu.max'\n"
        "if os.path.exists(v2):\n"
        "    quota, period = open(v2).read().split()\n"
        "else:\n"
        "    quota = open('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').read()\n"
        "    period = open('/sys/fs/cgroup/cpu/cpu.cfs_period_us').read()\n"
        "print(int(quota) / int(period))\n"
    )
    ip.run_cell_magic(
        "docker_python", "--cpus 0.5 --image dockermagic/python:offline --out o --result r", code
    )
    assert float(ip.user_ns["o"]) == pytest.approx(0.5)
    assert ip.user_ns["r"].image == "dockermagic/python:offline"


def test_quiet(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell_magic("docker_python", "--quiet --result r", "print('hidden')")
    assert capsys.readouterr().out == ""
    assert ip.user_ns["r"].stdout == "hidden\n"


def test_generic_magic_and_usage_errors(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell_magic("docker", "js", "console.log(6 * 7)")
    assert capsys.readouterr().out == "42\n"
    with pytest.raises(UsageError, match="no runner"):
        ip.run_cell_magic("docker", "cobol", "DISPLAY 'HI'.")
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        ip.run_cell_magic("docker_python", "--bogus", "print(1)")
    with pytest.raises(UsageError, match="Invalid memory"):
        ip.run_cell_magic("docker_python", "--memory lots", "print(1)")


def test_help_lists_the_options(ip: InteractiveShell) -> None:
    doc = ip.find_cell_magic("docker_python").__doc__
    for option in ("--image", "--timeout", "--in", "--session", "--no-raise-error", "--quiet"):
        assert option in doc
    assert ip.find_cell_magic("docker_py") is not None
    assert ip.find_cell_magic("docker_javascript") is not None


def test_interrupt_removes_the_container_within_two_seconds(
    ip: InteractiveShell, docker_client: docker.DockerClient
) -> None:
    timer = threading.Timer(1.5, _thread.interrupt_main)
    timer.start()
    with pytest.raises(CellInterrupted, match="container was killed and removed"):
        ip.run_cell_magic("docker_python", "", "import time\nprint('start')\ntime.sleep(60)")
    interrupted = time.monotonic()
    # The cell's own container: the pool's idle ones stay on purpose.
    while [
        c
        for c in list_containers(docker_client, tag=os.environ["DOCKERMAGIC_TAG"])
        if c.name not in idle_containers()
    ]:
        assert time.monotonic() - interrupted < 2, "container still there 2 s after Ctrl-C"
        time.sleep(0.05)
    assert isinstance(CellInterrupted("x"), KeyboardInterrupt)


def test_config_applies_and_rejects_bad_values(
    ip: InteractiveShell, caplog: pytest.LogCaptureFixture
) -> None:
    m = magics(ip)
    ip.run_line_magic("config", "DockerMagics.timeout = 1")
    try:
        assert m.timeout == 1
        with pytest.raises(CellFailedError, match="timed out after 1 s"):
            ip.run_cell_magic("docker_python", "", "import time; time.sleep(20)")
        ip.run_line_magic("config", "DockerMagics.timeout = -5")
        # %config reports a rejected value through IPython's logger, not an exception.
        assert "DockerMagics.timeout: Invalid timeout -5.0: must be positive" in caplog.text
        assert m.timeout == 1
    finally:
        ip.run_line_magic("config", "DockerMagics.timeout = 30")
    with pytest.raises(Exception, match="no runner"):
        m.images = {"cobol": "x"}
    with pytest.raises(Exception, match="Invalid memory"):
        m.memory = "lots"
    m.images = {"py": "dockermagic/python:offline"}
    assert m.images == {"python": "dockermagic/python:offline"}
    m.images = {}


def test_status(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("docker_status", "")
    out = capsys.readouterr().out
    assert out.startswith("engine      Docker ")
    # Where the engine is and how it is reached (a local socket, or TLS in
    # the --engine=tls pass).
    assert "\naddress     " in out
    expected = "TLS, engine certificate verified" if os.environ.get("DOCKER_TLS_VERIFY") else ""
    assert f"\ntransport   {expected}" in out
    assert "python " in out
    assert "javascript " in out
    assert "present" in out
    assert f"logs        {magics(ip).log_dir}" in out


def test_every_cell_is_logged(ip: InteractiveShell) -> None:
    ip.run_cell_magic("docker_python", "--quiet", "print('logged line ✓')")
    m = magics(ip)
    assert m._sink is not None
    assert m._sink.flush()
    directory = Path(m.log_dir)
    output = (directory / "cells-python.log").read_text(encoding="utf-8")
    assert "stdout | logged line ✓" in output
    assert "source | print('logged line ✓')" in output
    app = (directory / "dockermagic.log").read_text(encoding="utf-8")
    assert "cells-python run=" in app
    assert "status=ok" in app
    assert "from=notebook" in app


def test_reload_ext_keeps_one_set_of_magics(ip: InteractiveShell) -> None:
    before = sorted(n for n in ip.magics_manager.magics["cell"] if n.startswith("docker"))
    configurables = sum(isinstance(c, DockerMagics) for c in ip.configurables)
    ip.run_line_magic("reload_ext", "dockermagic")
    after = sorted(n for n in ip.magics_manager.magics["cell"] if n.startswith("docker"))
    assert (
        before
        == after
        == [
            "docker",
            "docker_javascript",
            "docker_js",
            "docker_py",
            "docker_python",
        ]
    )
    assert sum(isinstance(c, DockerMagics) for c in ip.configurables) == configurables == 1
    ip.run_cell_magic("docker_python", "--out o", "print('still works')")
    assert ip.user_ns["o"] == "still works\n"


def test_limit_messages_say_how_to_raise_the_limit(ip: InteractiveShell) -> None:
    with pytest.raises(CellFailedError, match=r"timed out after 1 s.*--timeout"):
        ip.run_cell_magic("docker_python", "--timeout 1", "import time\ntime.sleep(30)")
    with pytest.raises(CellFailedError, match=r"out of memory \(limit 32 MiB\).*--memory"):
        ip.run_cell_magic("docker_python", "--memory 32m", "x = bytearray(200 * 2**20)")


def test_input_without_stdin_says_so_and_stdin_feeds_it(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CellFailedError):
        ip.run_cell_magic("docker_python", "", "name = input('name? ')")
    err = capsys.readouterr().err
    assert "EOFError" in err
    assert "--stdin" in err
    ip.user_ns["answers"] = "Ada\n"
    ip.run_cell_magic("docker_python", "--stdin answers --out said", "print('hi', input())")
    assert ip.user_ns["said"] == "hi Ada\n"

"""Issue 12: displays (plots, HTML, tables), files in and out, a flood in the notebook.

Against the real engine and real IPython shells; the order of text and
displays in a notebook is checked by the tour notebook under nbval.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from dockermagic import JavaScriptDockerRunner, PythonDockerRunner, SandboxPolicy, Session
from dockermagic.errors import InvalidArgumentError
from tests.support import loaded_shell

pytestmark = pytest.mark.docker

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _events(runner: Any, code: str, **kwargs: Any) -> tuple[Any, list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []
    result = runner.run(
        code,
        on_output=lambda stream, text: seen.append((stream, text)),
        on_display=lambda data, metadata: seen.append(("display", data)),
        **kwargs,
    )
    return result, seen


# -- displays -----------------------------------------------------------------------------

RICH = """
class Card:
    def _repr_html_(self):
        return "<b>card</b>"
    def _repr_markdown_(self):
        return "**card**"

class Bundle:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": "<i>bundle</i>", "application/json": {"n": 1}}

class Picture:
    def _repr_png_(self):
        return PNG

print("one", flush=True)
display(Card())
print("two", flush=True)
display(Bundle(), Picture())
from dockermagic_display import display_json, display_svg
display_json({"k": [1, 2]})
display_svg("<svg/>")
"""


@pytest.mark.gateway
def test_python_displays_follow_ipythons_rules_in_order() -> None:
    result, seen = _events(PythonDockerRunner(), f"PNG = {PNG!r}\n" + RICH)
    assert result.ok, result.stderr
    kinds = [kind for kind, _ in seen]
    assert kinds == ["stdout", "display", "stdout", "display", "display", "display", "display"]
    card, bundle, picture, json_, svg = result.displays
    assert card["text/html"] == "<b>card</b>"
    assert card["text/markdown"] == "**card**"
    assert card["text/plain"].startswith("<__main__.Card object")
    assert bundle["text/html"] == "<i>bundle</i>"
    assert bundle["application/json"] == {"n": 1}
    assert base64.b64decode(picture["image/png"]) == PNG
    assert json_["application/json"] == {"k": [1, 2]}
    assert svg["image/svg+xml"] == "<svg/>"


@pytest.mark.gateway
def test_javascript_displays() -> None:
    code = (
        "console.log('before');\n"
        "display({a: 1});\n"
        "display('text');\n"
        "display.html('<p>js</p>');\n"
        "display.png(Buffer.from([137, 80, 78, 71]));\n"
        "display.markdown('# t');\n"
    )
    result, seen = _events(JavaScriptDockerRunner(), code)
    assert result.ok, result.stderr
    assert [kind for kind, _ in seen] == ["stdout"] + ["display"] * 5
    obj, text, html, png, markdown = result.displays
    assert obj["application/json"] == {"a": 1}
    assert text == {"text/plain": "text"}
    assert html["text/html"] == "<p>js</p>"
    assert base64.b64decode(png["image/png"]) == bytes([137, 80, 78, 71])
    assert markdown["text/markdown"] == "# t"


def test_printed_channel_bytes_stay_text() -> None:
    # A display frame as the agent would write it, printed by the program.
    frame = b'M\x00\x00\x00\x2a\x00\x00\x00\x01{"data": {"text/html": "<b>forged</b>"}}'
    result = PythonDockerRunner().run(
        f"import sys, os\nsys.stdout.buffer.write({frame!r})\nos.write(1, {frame!r})\n"
    )
    assert result.ok, result.stderr
    assert result.displays == ()
    assert result.stdout.count("forged") == 2


@pytest.mark.gateway
def test_the_display_cap_holds_and_is_reported() -> None:
    runner = PythonDockerRunner(policy=SandboxPolicy.default().replace(display_limit="64k"))
    result = runner.run("for i in range(100):\n    display_html('x' * 10000)\nprint('done')")
    assert result.ok
    assert result.stdout == "done\n"
    assert 1 <= len(result.displays) <= 7
    assert result.displays_dropped == 100 - len(result.displays)


@pytest.mark.gateway
def test_a_cells_last_expression_is_displayed() -> None:
    with Session("last", PythonDockerRunner()) as session:
        assert session.run("x = 6 * 7\nx").displays == ({"text/plain": "42"},)
        assert session.run("x = 1").displays == ()
        assert session.run("None").displays == ()
        assert session.run("print(x)").displays == ()
    with Session("last", JavaScriptDockerRunner()) as session:
        assert session.run("const y = 6 * 7; y").displays == ({"text/plain": "42"},)
        assert session.run("let z = 1").displays == ()
    # A script is not a cell: its last expression is not shown unless asked.
    assert PythonDockerRunner().run("6 * 7").displays == ()
    assert PythonDockerRunner().run("6 * 7", display_last=True).displays == ({"text/plain": "42"},)


# -- files in and out ---------------------------------------------------------------------


@pytest.mark.gateway
def test_put_and_get_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "numbers.txt").write_text("1 2 3\n")
    (tmp_path / "single.csv").write_text("a,b\n")
    code = (
        "import os\n"
        "total = sum(map(int, open('data/numbers.txt').read().split()))\n"
        "open('data/numbers.txt', 'a').write('more\\n')  # /work is writable\n"
        "os.makedirs('out', exist_ok=True)\n"
        "open('out/total.txt', 'w').write(str(total))\n"
        "open('out/big.bin', 'wb').write(b'x' * 3000)\n"
        "os.symlink('/etc/passwd', 'out/passwd.txt')\n"
        "print(sorted(os.listdir('.')))\n"
    )
    result = PythonDockerRunner().run(
        code, put=[data, tmp_path / "single.csv"], get=["out/*.txt", "*.csv"]
    )
    assert result.ok, result.stderr
    assert result.stdout == "['data', 'out', 'single.csv']\n"
    assert result.files == {"out/total.txt": b"6", "single.csv": b"a,b\n"}
    assert ("out/passwd.txt", "not a regular file") in result.files_skipped


@pytest.mark.gateway
def test_get_has_a_budget() -> None:
    runner = PythonDockerRunner(policy=SandboxPolicy.default().replace(copy_limit="1m"))
    code = "for i in range(3):\n    open(f'f{i}.bin', 'wb').write(b'x' * 400_000)\n"
    result = runner.run(code, get=["*.bin"])
    assert sorted(result.files) == ["f0.bin", "f1.bin"]
    assert [name for name, _ in result.files_skipped] == ["f2.bin"]


@pytest.mark.gateway
def test_a_session_keeps_put_files_and_gets_files_any_time(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("hello")
    with Session("files", JavaScriptDockerRunner()) as session:
        first = session.run(
            "const fs = require('fs'); fs.writeFileSync('out.txt', "
            "fs.readFileSync('in.txt', 'utf8').toUpperCase())",
            put=[tmp_path / "in.txt"],
        )
        assert first.ok, first.stderr
        assert session.get("*.txt") == {"in.txt": b"hello", "out.txt": b"HELLO"}


# -- the notebook ---------------------------------------------------------------------------


@pytest.mark.gateway
def test_magic_displays_and_files(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("3")
    with loaded_shell(tmp_path / "logs") as shell, capture_output() as captured:
        shell.run_cell_magic(
            "docker_python",
            f"--put {tmp_path / 'in.txt'} --get out.txt --get-to {tmp_path / 'back'}",
            "n = int(open('in.txt').read())\n"
            "open('out.txt', 'w').write(str(n * 2))\n"
            "display_html('<b>html</b>')\n"
            "n * 14\n",
        )
        shell.run_cell_magic("docker_js", "", "display.html('<p>js</p>')")
    html = [o.data for o in captured.outputs]
    assert html[0]["text/html"] == "<b>html</b>"
    assert html[1] == {"text/plain": "42"}
    assert html[2]["text/html"] == "<p>js</p>"
    assert (tmp_path / "back" / "out.txt").read_text() == "6"
    assert "got 1 file(s)" in captured.stderr


def test_a_flood_is_shown_as_head_note_and_tail(tmp_path: Path) -> None:
    with loaded_shell(tmp_path / "logs") as shell, capture_output() as captured:
        shell.run_cell_magic("docker_python", "", "for i in range(20000):\n    print('line', i)\n")
    shown = captured.stdout.splitlines()
    assert len(shown) == 250
    assert shown[0] == "line 0"
    assert shown[199] == "line 199"
    assert shown[-1] == "line 19999"
    assert "19750 line(s) of output not shown" in captured.stderr
    assert "cells-python.log" in captured.stderr
    log = (tmp_path / "logs" / "cells-python.log").read_text()
    assert "line 10000" in log


def test_displays_are_unaffected_by_quiet_text_options(tmp_path: Path) -> None:
    with loaded_shell(tmp_path / "logs") as shell, capture_output() as captured:
        shell.run_cell_magic("docker_python", "--out text", "print('x')\ndisplay_html('<b>h</b>')")
        shell.run_cell_magic("docker_python", "--quiet", "display_html('<b>q</b>')")
    assert [o.data["text/html"] for o in captured.outputs] == ["<b>h</b>"]
    assert shell.user_ns["text"] == "x\n"


@pytest.mark.gateway
def test_matplotlib_shows_like_the_inline_backend_and_pandas_as_a_table() -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n"
        "print('first')\n"
        "plt.plot([1, 2, 3])\n"
        "plt.show()\n"
        "print('second')\n"
        "display(pd.DataFrame({'a': [1, 2]}))\n"
        "plt.figure()\n"
        "plt.plot([3, 1])\n"  # left open: shown at the end
        "import matplotlib\n"
        "print(matplotlib.get_backend())\n"
    )
    result, seen = _events(PythonDockerRunner(), code, timeout=60)
    assert result.ok, result.stderr
    kinds = [kind if kind != "display" else sorted(data)[0] for kind, data in seen]
    assert kinds == ["stdout", "image/png", "stdout", "text/html", "stdout", "image/png"]
    assert result.stdout == "first\nsecond\nmodule://dockermagic_inline\n"
    png = base64.b64decode(result.displays[0]["image/png"])
    assert png.startswith(b"\x89PNG")
    assert "<table" in result.displays[1]["text/html"]


def test_a_missing_package_says_how_to_get_it() -> None:
    result = PythonDockerRunner().run("import surely_not_installed_here")
    assert "ModuleNotFoundError" in result.stderr
    assert "not installed in dockermagic/python:offline" in result.stderr
    js = JavaScriptDockerRunner().run("require('lodash')")
    assert "is not installed in dockermagic/node:offline" in js.stderr


@pytest.mark.gateway
def test_docker_session_put_and_get(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "n.txt").write_text("41")
    with loaded_shell(tmp_path / "logs") as shell, capture_output() as captured:
        shell.run_cell_magic("docker_python", "--session keep", "x = 1")
        shell.run_line_magic("docker_session", f"keep --put {tmp_path / 'data'}")
        shell.run_cell_magic(
            "docker_python",
            "--session keep",
            "open('result.txt', 'w').write(str(int(open('data/n.txt').read()) + x))",
        )
        shell.run_line_magic("docker_session", f"keep --get *.txt --get-to {tmp_path / 'out'}")
        with pytest.raises(UsageError, match="no session named 'nope'"):
            shell.run_line_magic("docker_session", f"nope --put {tmp_path / 'data'}")
    assert (tmp_path / "out" / "result.txt").read_text() == "42"
    assert f"put {tmp_path / 'data'} into session 'keep'" in captured.stdout
    assert "got 2 file(s)" in captured.stderr  # the glob matches names: data/n.txt too


@pytest.mark.gateway
def test_session_put_any_time_within_the_copy_limit(tmp_path: Path) -> None:
    (tmp_path / "small.txt").write_text("small")
    (tmp_path / "big.bin").write_bytes(b"x" * 300_000)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "link.txt").symlink_to("/etc/passwd")
    policy = SandboxPolicy.default().replace(copy_limit="256k")
    with Session("putting", PythonDockerRunner(policy=policy)) as session:
        session.put(tmp_path / "small.txt")
        with pytest.raises(InvalidArgumentError, match=r"big\.bin"):
            session.put(tmp_path / "big.bin")
        with pytest.raises(InvalidArgumentError, match=r"link\.txt"):
            session.put(tmp_path / "folder")
        listed = session.run("import os\nprint(sorted(os.listdir('.')))")
        assert listed.stdout == "['small.txt']\n"

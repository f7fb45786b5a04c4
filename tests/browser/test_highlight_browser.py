"""End to end: a ``%%docker_js`` cell is highlighted as JavaScript in JupyterLab (real Chromium).

The classes CodeMirror gives tokens are generated (``ͼ1c``...), so each kind
is found by its rule in the page's style sheets: JupyterLab's highlight style
colours a comment with ``var(--jp-mirror-editor-comment-color)``, a keyword
with ``var(--jp-mirror-editor-keyword-color)``, and so on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.browser.conftest import Lab

SCREENSHOT_DIR = Path(os.environ.get("DOCKERMAGIC_SCREENSHOTS", "build/screenshots"))

JS_CELL = (
    "%%docker_js --timeout 30\n"
    "// JavaScript, run by Node.js in a locked-down container\n"
    "const languages = ['python', 'javascript'];\n"
    "function greet(name) {\n"
    "  return `hello from ${name}`;\n"
    "}\n"
    "languages.forEach((name) => console.log(greet(name)));"
)
PYTHON_CELL = (
    "# plain Python, in the kernel: still Python\n"
    "def half(n):\n"
    "    return n // 2\n"
    "\n"
    "print('half of 7 is', half(7))"
)
CELLS = ["%load_ext dockermagic", JS_CELL, PYTHON_CELL]

#: The CSS variable of each kind of token in JupyterLab's highlight style.
KINDS = {
    "comment": "--jp-mirror-editor-comment-color",
    "keyword": "--jp-mirror-editor-keyword-color",
    "string-2": "--jp-mirror-editor-string-2-color",
    "string": "--jp-mirror-editor-string-color",
    "operator": "--jp-mirror-editor-operator-color",
    "meta": "--jp-mirror-editor-meta-color",
    "attribute": "--jp-mirror-editor-attribute-color",
    "number": "--jp-mirror-editor-number-color",
}

#: For each kind, the classes whose style rule uses its colour (CodeMirror's
#: style modules are adopted style sheets, so those are read too).
CLASSES_OF_KINDS = """(kinds) => {
    const sheets = [...document.styleSheets, ...(document.adoptedStyleSheets || [])];
    const found = {};
    for (const [kind, variable] of Object.entries(kinds)) {
        found[kind] = [];
        for (const sheet of sheets) {
            let rules;
            try { rules = sheet.cssRules; } catch (e) { continue; }
            for (const rule of rules) {
                const match = /^\\.([^\\s.:,>\\[]+)$/.exec((rule.selectorText || '').trim());
                if (match && rule.style && rule.style.color === `var(${variable})`) {
                    found[kind].push(match[1]);
                }
            }
        }
    }
    return found;
}"""

#: The text of each highlighted token of a cell's editor, with its classes.
TOKENS = """(cell) => Array.from(cell.querySelectorAll('.cm-content .cm-line span')).map(
    (span) => [span.textContent, Array.from(span.classList)])"""


def write_notebook(path: Path) -> None:
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(CELLS)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook))


def kinds_of(tokens: list[list[Any]], text: str, classes: dict[str, list[str]]) -> set[str]:
    """The kinds of highlighting of the token whose text is ``text``."""
    for token_text, token_classes in tokens:
        if token_text == text:
            return {kind for kind, names in classes.items() if set(names) & set(token_classes)}
    raise AssertionError(f"no token {text!r} in {[t for t, _ in tokens]}")


def test_a_docker_js_cell_is_highlighted_as_javascript(lab: Lab, browser_page: Any) -> None:
    page = browser_page
    write_notebook(lab.root / "highlight.ipynb")
    page.goto(lab.page_url("highlight.ipynb"))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    cells = page.locator(".jp-Notebook .jp-Cell")
    js_cell, python_cell = cells.nth(1), cells.nth(2)
    try:
        # The body's language loads on first use, then the cell is parsed again.
        js_cell.locator(".cm-line span", has_text="// JavaScript").wait_for(timeout=30_000)
        classes = page.evaluate(CLASSES_OF_KINDS, KINDS)
        assert all(classes[kind] for kind in KINDS), classes

        js = page.evaluate(TOKENS, js_cell.element_handle())
        assert kinds_of(js, "%%docker_js", classes) == {"meta"}
        assert kinds_of(js, "--timeout", classes) == {"attribute"}
        assert kinds_of(js, "30", classes) == {"number"}
        comment = "// JavaScript, run by Node.js in a locked-down container"
        assert kinds_of(js, comment, classes) == {"comment"}
        assert kinds_of(js, "const", classes) == {"keyword"}
        assert kinds_of(js, "function", classes) == {"keyword"}
        assert kinds_of(js, "return", classes) == {"keyword"}
        assert kinds_of(js, "`hello from ", classes) == {"string-2"}
        assert kinds_of(js, "'javascript'", classes) == {"string"}

        python = page.evaluate(TOKENS, python_cell.element_handle())
        assert kinds_of(python, "# plain Python, in the kernel: still Python", classes) == {
            "comment"
        }
        assert kinds_of(python, "def", classes) == {"keyword"}
        # In Python, // is floor division.
        assert kinds_of(python, "//", classes) == {"operator"}
        # The line magic of the first cell is untouched: IPython's own tokens.
        load_ext = page.evaluate(TOKENS, cells.nth(0).element_handle())
        assert all("meta" not in kinds_of(load_ext, t, classes) for t, _ in load_ext)

        # And the cells still run: the JS in a container, the Python in the kernel.
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        js_cell.locator(".jp-OutputArea", has_text="hello from javascript").wait_for(
            timeout=120_000
        )
        python_cell.locator(".jp-OutputArea", has_text="half of 7 is 3").wait_for(timeout=30_000)
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=30_000)
        assert js_cell.locator(".jp-OutputArea").inner_text().split() == [
            "hello",
            "from",
            "python",
            "hello",
            "from",
            "javascript",
        ]
        screenshot(page, cells, "highlight.png")

        # Typing the magic line turns a cell to JavaScript (// starts a
        # comment), and undoing it turns it back to Python.
        python_cell.locator(".cm-content").click()
        page.keyboard.press("Control+Home")
        page.keyboard.type("%%docker_js")
        page.keyboard.press("Enter")
        python_cell.locator(".cm-line span", has_text="// 2").wait_for(timeout=10_000)
        typed = page.evaluate(TOKENS, python_cell.element_handle())
        assert kinds_of(typed, "// 2", classes) == {"comment"}
        assert kinds_of(typed, "%%docker_js", classes) == {"meta"}
        page.keyboard.press("Control+z")
        page.keyboard.press("Control+z")
        python_cell.locator(".cm-line span", has_text="// 2").wait_for(
            state="detached", timeout=10_000
        )
        undone = page.evaluate(TOKENS, python_cell.element_handle())
        assert kinds_of(undone, "//", classes) == {"operator"}
    except Exception:
        screenshot(page, cells, "highlight-failure.png")
        raise


def screenshot(page: Any, cells: Any, name: str) -> None:
    """The notebook's cells, outputs included, cropped to them."""
    boxes = [cells.nth(i).bounding_box() for i in range(cells.count())]
    left = min(b["x"] for b in boxes)
    top = min(b["y"] for b in boxes)
    right = max(b["x"] + b["width"] for b in boxes)
    bottom = max(b["y"] + b["height"] for b in boxes)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOT_DIR / name),
        clip={"x": left, "y": top - 8, "width": right - left, "height": bottom - top + 16},
    )

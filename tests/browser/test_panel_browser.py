"""End to end: the scripts panel in JupyterLab, clicked in a real Chromium."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from tests.browser.conftest import Lab

SCREENSHOT_DIR = Path(os.environ.get("DOCKERMAGIC_SCREENSHOTS", "build/screenshots"))

SCRIPTS = {
    # It also plots: the panel shows the selected script's displays.
    "count.py": (
        "import matplotlib.pyplot as plt\n"
        "for i in range(3):\n    print(f'count {i}')\n"
        "plt.plot(range(3))\nplt.show()\n"
    ),
    "greet.js": "console.log('hello from node', process.version);\n",
    "broken.py": "print('about to fail')\nresult = 1 / 0\n",
}


def write_notebook(path: Path) -> None:
    source = (
        "from dockermagic import ScriptsPanel\n"
        "panel = ScriptsPanel('scripts', log_dir='logs', mode='parallel', workers=2, timeout=30)\n"
        "panel"
    )
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "panel",
                "metadata": {},
                "outputs": [],
                "source": source,
            },
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook))


def test_panel_runs_scripts_in_the_browser(lab: Lab, browser_page: Any) -> None:
    page = browser_page
    scripts = lab.root / "scripts"
    scripts.mkdir()
    for name, code in SCRIPTS.items():
        (scripts / name).write_text(code)
    write_notebook(lab.root / "panel.ipynb")

    page.goto(lab.page_url("panel.ipynb"))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    # The kernel must be connected before a run request, or it is dropped.
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()

    try:
        drive_panel(page, lab)
    except Exception:
        # Keep what the page showed: the first thing to look at when this fails.
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "panel-failure.png"))
        raise


def drive_panel(page: Any, lab: Lab) -> None:
    panel = page.locator(".dockermagic-panel")
    panel.wait_for(timeout=60_000)
    for name in SCRIPTS:
        panel.get_by_text(name, exact=True).first.wait_for(timeout=10_000)

    panel.locator("button", has_text=re.compile(r"^\s*Run\s*$")).click()
    panel.locator(".dockermagic-status-ok").nth(1).wait_for(timeout=120_000)
    panel.locator(".dockermagic-status-failed").first.wait_for(timeout=120_000)
    assert panel.locator(".dockermagic-status-ok").count() == 2
    assert panel.locator(".dockermagic-status-failed").count() == 1
    page.wait_for_function(
        "() => !document.querySelector('.dockermagic-panel button.mod-danger')"
        " || document.querySelector('.dockermagic-panel button.mod-danger').disabled",
        timeout=30_000,
    )

    panel.locator("select").select_option("broken.py")
    page.wait_for_function(
        "() => document.querySelector('.dockermagic-panel')"
        ".innerText.includes('ZeroDivisionError')",
        timeout=20_000,
    )
    text = panel.inner_text()
    assert "about to fail" in text
    assert re.search(r"3/3 done", text)
    assert "logs/broken.py.log" in text

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(SCREENSHOT_DIR / "panel.png"))
    log_text = (lab.root / "logs" / "broken.py.log").read_text()
    assert "ZeroDivisionError" in log_text

    # The plotting script's figure, drawn by the browser from the panel's data URI;
    # clicking a script's name shows it (and leaves its checkbox alone).
    panel.locator("button.dockermagic-name", has_text="count.py").click()
    image = panel.locator("img.dockermagic-display-image").first
    image.wait_for(timeout=20_000)
    assert (image.get_attribute("src") or "").startswith("data:image/png;base64,iVBOR")
    page.wait_for_function(
        "() => { const i = document.querySelector("
        "'.dockermagic-panel img.dockermagic-display-image');"
        " return i && i.complete && i.naturalWidth > 100; }",
        timeout=20_000,
    )
    assert "cpu" in panel.inner_text()
    assert panel.locator("input[type=checkbox]").evaluate_all(
        "boxes => boxes.every(b => b.checked)"
    )
    # JupyterLab's own notifications (news) may float over the panel: not ours to show.
    page.add_style_tag(content=".Toastify { display: none !important; }")
    panel.screenshot(path=str(SCREENSHOT_DIR / "panel-plot.png"))

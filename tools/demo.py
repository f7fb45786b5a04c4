"""The main job (`make demo`): run a Python and a JavaScript program in the sandbox."""

from __future__ import annotations

import sys

from dockermagic import JavaScriptDockerRunner, PythonDockerRunner, cleanup

PYTHON = """\
import platform, os
total = sum(i * i for i in range(1_000_000))
print(f"Python {platform.python_version()} as uid {os.getuid()} in {os.getcwd()}")
print(f"sum of squares below one million: {total}")
"""

JAVASCRIPT = """\
const total = Array.from({length: 1000}, (_, i) => i).reduce((a, b) => a + b, 0);
console.log(`Node ${process.version} as uid ${process.getuid()} in ${process.cwd()}`);
console.log(`sum of 0..999: ${total}`);
"""


def main() -> int:
    """Run both snippets, streaming their output; exit 1 if one fails."""
    cleanup()
    failures = 0
    for runner, code in ((PythonDockerRunner(), PYTHON), (JavaScriptDockerRunner(), JAVASCRIPT)):
        print(f"--- {runner.language} in {runner.image}")
        result = runner.run(code, on_output=lambda stream, text: print(text, end="", flush=True))
        print(f"--- {runner.language}: {result.describe()}\n")
        failures += not result.ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

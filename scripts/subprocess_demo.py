"""Running external programs with subprocess: capture, input, errors."""

import subprocess
import sys

# Capture a child's output as text.
child = subprocess.run(
    [sys.executable, "-c", "import platform; print(platform.python_version())"],
    capture_output=True,
    text=True,
    check=True,
)
print("child Python:", child.stdout.strip())

# Feed a filter program through its standard input.
filtered = subprocess.run(
    ["grep", "docker"],
    input="hello world\ndocker sandbox\nbye\n",
    capture_output=True,
    text=True,
    check=True,
)
print("grep kept:", filtered.stdout.strip())

# A failing command raises CalledProcessError when check=True.
try:
    subprocess.run(["ls", "/no/such/folder"], capture_output=True, check=True)
except subprocess.CalledProcessError as exc:
    print("ls failed as expected with status", exc.returncode)

# Popen with communicate() for finer control.
with subprocess.Popen(["echo", "hello from Popen"], stdout=subprocess.PIPE, text=True) as proc:
    out, _ = proc.communicate()
print(out.strip())

"""Answers for notebook 07."""

from dockermagic import AbstractDockerCodeRunner, PythonDockerRunner


class ShellRunner(AbstractDockerCodeRunner):
    """Runs POSIX shell scripts (/bin/sh) in a container."""

    language = "shell"
    aliases = ("sh",)
    suffixes = (".sh",)
    default_image = PythonDockerRunner.default_image
    image_env_var = PythonDockerRunner.image_env_var
    offline_image = PythonDockerRunner.offline_image
    filename = "main.sh"

    def command(self, path):
        return ["/bin/sh", path]

    def environment(self):
        return {"HOME": "/work", "LC_ALL": "C.UTF-8"}


def explain(result):
    """Say in a few words how a run ended."""
    if result.timed_out:
        return "timed out"
    if result.oom_killed:
        return "out of memory"
    if result.ok:
        return "ok"
    if "SyntaxError" in result.stderr:
        return "syntax error"
    return "crashed"

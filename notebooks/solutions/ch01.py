"""Answers for notebook 01."""

import subprocess


def run_tool(argv):
    """Return (exit code, standard output as text) of the program argv."""
    done = subprocess.run(argv, capture_output=True, text=True)
    return done.returncode, done.stdout


def sort_words(words):
    """Sort words and drop duplicates, using the external `sort -u` program."""
    text = "".join(f"{word}\n" for word in words)
    done = subprocess.run(["sort", "-u"], input=text, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()

"""What a run used, in words: CPU seconds and peak memory for tables, panels and logs.

:class:`~dockermagic.result.RunResult` carries ``cpu_seconds`` and
``peak_memory_bytes`` (None where a runner cannot tell); the front ends and
the application log show them through these helpers, so that a table, the
panel and a log line always agree on the units. "Unknown" is ``-``, never 0:
a program that used no measurable CPU and one whose runner could not measure
are not the same thing.

Pure logic, no Docker calls.
"""

from __future__ import annotations

__all__ = ["UNKNOWN", "cpu_text", "memory_text", "usage_fields"]

#: What is shown for a figure the runner could not measure.
UNKNOWN = "-"

_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def cpu_text(seconds: float | None, *, compact: bool = False) -> str:
    """CPU time for people: ``"0.12 s"`` (``"0.123s"`` compact, for log records).

    Args:
        seconds: CPU seconds, or None when unknown.
        compact: No space, three decimals: the log record's form.

    Returns:
        The text, or :data:`UNKNOWN`.
    """
    if seconds is None:
        return UNKNOWN
    return f"{seconds:.3f}s" if compact else f"{seconds:.2f} s"


def memory_text(size: int | None, *, compact: bool = False) -> str:
    """A memory figure for people: ``"41 MiB"``, ``"3.5 MiB"``, ``"900 KiB"``.

    Whole units from 10 up (a peak of 41.37 MiB is "41 MiB": the digits after
    the point say nothing at a glance), one decimal below.

    Args:
        size: Bytes, or None when unknown.
        compact: No space between number and unit (``"41MiB"``): the log record's form.

    Returns:
        The text, or :data:`UNKNOWN`.
    """
    if size is None:
        return UNKNOWN
    space = "" if compact else " "
    for unit, scale in _UNITS:
        if size >= scale:
            value = size / scale
            number = f"{value:.0f}" if value >= 10 else f"{value:.1f}"
            return f"{number}{space}{unit}"
    return f"{size}{space}B"


def usage_fields(cpu_seconds: float | None, peak_memory_bytes: int | None) -> str:
    """The two figures as a log record has them: ``"cpu=0.123s peak=41MiB"``.

    Args:
        cpu_seconds: CPU seconds, or None.
        peak_memory_bytes: Peak resident memory in bytes, or None.

    Returns:
        E.g. ``"cpu=0.123s peak=41MiB"``, or ``"cpu=- peak=-"`` when unknown.
    """
    cpu = cpu_text(cpu_seconds, compact=True)
    peak = memory_text(peak_memory_bytes, compact=True)
    return f"cpu={cpu} peak={peak}"

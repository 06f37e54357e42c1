"""The machine line that opens every benchmark page: one wording, written in one place.

Bench scripts run as ``python bench/NAME.py``, which puts this folder on ``sys.path``, so they
import it as ``from machine import describe, load_average``. Record the load average when a run
starts (``load_average()``), keep it with the results where the page is written later, and pass
it to ``describe``: a wall time means little without knowing whether the cores were shared.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence


def load_average() -> tuple[float, float, float] | None:
    """The 1-, 5- and 15-minute load averages now, or None where the system has none."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):  # no such call on this platform, or no figure from it
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)


def cores() -> int:
    """CPU cores this process may run on (its affinity where known, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe(
    load: float | Sequence[float] | str | None = None,
    threads: int | None = None,
    when: str = "when the run started",
) -> str:
    """``x86_64, 2 CPU cores (load average ... when the run started), Python ..., torch ...``.

    ``load``: what ``load_average()`` returned when the run started (or its first figure alone);
    a string is used as it is (a page that says how the cores were shared in its own words); None
    says it was not recorded; ``when`` says when it was read. ``threads``: torch's thread
    count, where the page reports it.
    """
    if load is None:
        sharing = "load not recorded"
    elif isinstance(load, str):
        sharing = load
    elif isinstance(load, (int, float)):
        sharing = f"1-minute load average {load:.2f} {when}"
    else:
        sharing = "load average " + " / ".join(f"{x:.1f}" for x in load) + f" {when}"
    line = f"{platform.machine()}, {cores()} CPU cores ({sharing}), Python {sys.version.split()[0]}"
    try:
        import torch

        line += f", torch {torch.__version__}"
        if threads is not None:
            line += f" ({threads} thread{'s' if threads != 1 else ''})"
    except ImportError:  # the detect benchmark needs no torch
        pass
    return line

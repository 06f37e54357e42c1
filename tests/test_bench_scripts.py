"""The benchmark scripts still import against the library, and the shared machine line reads right.

Benchmarks run for minutes to hours, so the suite never runs them; but a script whose imports
rotted (a library function renamed under it) fails only when someone next needs its figures.
Importing each one (their work sits behind ``if __name__ == "__main__"``) catches that in seconds.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py"))


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``python bench/NAME.py`` would: the bench folder first on ``sys.path``."""
    monkeypatch.syspath_prepend(str(BENCH))


@pytest.mark.parametrize("name", SCRIPTS)
def test_bench_script_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"bench/{name}.py has no module docstring"
    sys.modules.pop(name, None)


def test_machine_line_says_how_the_cores_were_shared() -> None:
    machine = importlib.import_module("machine")
    assert "load not recorded" in machine.describe()
    assert "load average 1.5 / 0.7 / 0.2 when the run started" in machine.describe((1.5, 0.7, 0.2))
    assert "1-minute load average 0.40 at the end" in machine.describe(0.4, when="at the end")
    assert "(ran alone)" in machine.describe("ran alone")
    assert "(1 thread)" in machine.describe(threads=1)
    assert machine.cores() >= 1

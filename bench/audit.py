"""Benchmark: audit the demo victim (default, --quick, with a baseline); record figures and time per part.

Run: ``.venv/bin/python bench/audit.py [--victim DIR]`` (writes ``bench/audit.md``). Without
``--victim`` a default victim (64 records, seed 0) is built in a temp folder first. The
"baseline" runs audit the victim against itself: the cost of a before/after audit, with zero
change by construction.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from pii_unlearn.audit import AuditSettings, run_audit
from pii_unlearn.audit.figures import TARGETS
from pii_unlearn.audit.metrics import MEASUREMENTS, all_figures
from pii_unlearn.synth.victim import PLANTED_FILE, VictimConfig, build_victim

#: (label, quick, with baseline)
RUNS = (
    ("default", False, False),
    ("--quick", True, False),
    ("--quick, with baseline", True, True),
    ("default, with baseline", False, True),
)
#: Timed parts of an audit: every registered measurement.
PARTS = tuple(MEASUREMENTS)


def _part(timings: dict[str, float], part: str) -> float:
    return sum(v for k, v in timings.items() if k.endswith(f".{part}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--victim", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        victim = args.victim
        if victim is None:
            victim = tmp / "victim"
            build_victim(victim, VictimConfig(seed=0))
        rows: list[tuple[str, float, float, dict[str, Any]]] = []
        for label, quick, with_base in RUNS:
            load = os.getloadavg()[0]
            start, cpu = time.perf_counter(), time.process_time()
            result = run_audit(
                victim,
                victim / PLANTED_FILE,
                tmp / f"report-{len(rows)}",
                baseline=victim if with_base else None,
                settings=AuditSettings.preset(quick=quick),
                device="cpu",
            )
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            rows.append((label, load, cpu, result.report))
            print(f"{label}: {wall:.1f}s, {cpu:.1f} CPU s (load {load:.1f}), err {result.report['err']:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(__file__).with_name("audit.md").write_text(render(rows))
    print(f"wrote {Path(__file__).with_name('audit.md')}")


def _f(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def render(rows: list[tuple[str, float, float, dict[str, Any]]]) -> str:
    """The Markdown page."""
    lines = [
        "# audit benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs "
        f"(1-minute load average before each run in the table), Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}, 1 torch thread during measurements (small model on CPU, "
        f"see `lm.cpu_threads`). Date: {date.today()}.",
        "",
        "Demo victim: 64 records, seed 0 (213 PII values: 149 conditioned, 64 unconditioned). "
        "Default: K = 8 samples, C = 31 candidates, 2 paraphrase probes x 4 samples, re-inversion "
        "with 256 samples; `--quick`: K = 4, C = 15, 1 probe x 2 samples, no re-inversion. "
        "Target: the default audit in at most 60 s on 2 cores. Times are in-process wall seconds "
        "(`timings.total`, model loading included; the CLI adds ~5 s of Python imports) on a "
        "machine other jobs kept busy (load = runnable processes per 2 cores), and the process's "
        "CPU seconds, about what the audit takes on 2 idle cores (it computes on one thread).",
        "",
        "| run | load | total (s) | CPU (s) | load model | " + " | ".join(PARTS) + " | utility |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(PARTS) + "---:|",
    ]
    for label, load, cpu, rep in rows:
        t = rep["timings"]
        loads = t.get("load_model", 0.0) + t.get("load_baseline", 0.0)
        parts = " | ".join(_f(_part(t, p), 1) for p in PARTS)
        lines.append(
            f"| {label} | {load:.1f} | {t['total']:.1f} | {cpu:.1f} | {loads:.1f} | {parts} "
            f"| {t['utility']:.1f} |"
        )
    lines += [
        "",
        "Figures of the victim (default run; exposure ceiling log2(C+1); the quick run in brackets):",
        "",
        "| figure | overall | conditioned | unconditioned |",
        "|---|---:|---:|---:|",
    ]
    default, quick = rows[0][3], rows[1][3]
    for figure in all_figures():
        if figure.kind != TARGETS:
            continue
        d, q = default["model"][figure.key], quick["model"][figure.key]
        cells = [f"{_f(d[g])} ({_f(q[g])})" for g in ("overall", "conditioned", "unconditioned")]
        lines.append(f"| {figure.label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Held-out perplexity {default['perplexity']:.2f} ({default['counts']['heldout_texts']} texts of "
        "`heldout.jsonl`); against itself as baseline: perplexity change "
        f"{_f(rows[2][3]['ppl_increase_pct'], 2)}%, KL drift {_f(rows[2][3]['kl_drift'], 6)}.",
        "",
        "ERR per entity type (default): "
        + ", ".join(f"{e} {_f(v, 2)}" for e, v in default["model"]["err"]["by_entity"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

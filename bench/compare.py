"""Benchmark: every unlearning method on the demo victim, same seeds, same audit.

For each seed: build the victim, run the data-free front of the pipeline (invert ->
detect -> risk-score, the subcommands' library steps), then unlearn with each method and
audit the result on the planted records (which no sanitizing step reads).
``dfsu-oracle`` is DFSU given the true records as its forget set.

Run: ``.venv/bin/python bench/compare.py [--seeds 0 1 2]`` (writes ``bench/compare.md``
and ``bench/compare.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from pii_unlearn.audit.runner import run_audit
from pii_unlearn.audit.settings import AuditSettings
from pii_unlearn.pipeline import RISK, forget_set_steps, run_step
from pii_unlearn.synth.victim import HELDOUT_FILE, PLANTED_FILE, VictimConfig, build_victim
from pii_unlearn.unlearn import run_unlearn

#: (row name, method, forget set: "free" = data-free risk.jsonl, "oracle" = planted records)
RUNS: tuple[tuple[str, str, str], ...] = (
    ("dfsu (data-free)", "dfsu", "free"),
    ("dfsu (oracle)", "dfsu", "oracle"),
    ("ga (data-free)", "ga", "free"),
    ("npo (data-free)", "npo", "free"),
    ("sani (data-free)", "sani", "free"),
    ("nspu (data-free)", "nspu", "free"),
)
#: (column, report path) of the figures in the table.
FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ERR", ("err", "overall")),
    ("ERR cond.", ("err", "conditioned")),
    ("constrained ERR", ("constrained_err", "overall")),
    ("E-Hit", ("e_hit", "overall")),
    ("exposure (bits)", ("exposure", "overall")),
    ("twin exposure", ("exposure_twin", "overall")),
    ("gap (bits)", ("exposure_gap", "overall")),
    ("rank-1", ("rank1", "overall")),
    ("twins rank-1", ("rank1", "twin")),
    ("MIA AUC", ("mia_auc", "overall")),
    ("int4 ERR", ("int4_err", "overall")),
    ("int4 constrained", ("int4_constrained_err", "overall")),
    ("re-inversion", ("reinversion", "overall")),
    ("ppl", ("perplexity",)),
)
#: The audit every row gets: the defaults (C = 1023 candidates) plus the int4 probe; relearning is
#: left to `bench/audit.py` (a grid of fine-tunes per row would take this table past an hour).
AUDIT = AuditSettings(quantize=("int4",))


def _get(side: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = side
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def one_seed(seed: int, work: Path) -> list[dict[str, Any]]:
    victim = work / "victim"
    build_victim(victim, VictimConfig(seed=seed))
    planted, heldout = victim / PLANTED_FILE, victim / HELDOUT_FILE
    t0 = time.perf_counter()
    for step in forget_set_steps(victim, work, seed):
        run_step(step)
    front = time.perf_counter() - t0
    base = run_audit(victim, planted, heldout=heldout, settings=AUDIT).report["model"]
    rows = [{"seed": seed, "run": "original", "figures": {c: _get(base, p) for c, p in FIGURES}}]
    for name, method, forget in RUNS:
        out = work / f"{method}-{forget}"
        forget_path = work / RISK if forget == "free" else planted
        t = time.perf_counter()
        _, result = run_unlearn(victim, forget_path, out, method=method, seed=seed)
        seconds = time.perf_counter() - t
        report = run_audit(out, planted, heldout=heldout, settings=AUDIT).report["model"]
        figures = {c: _get(report, p) for c, p in FIGURES}
        ppl0, ppl1 = rows[0]["figures"]["ppl"], figures["ppl"]
        figures["ppl change %"] = 100.0 * (ppl1 / ppl0 - 1.0) if ppl0 and ppl1 else None
        figures["unlearn s"] = seconds
        figures["steps"] = result.edit.steps
        rows.append(
            {"seed": seed, "run": name, "figures": figures, "front_s": front, "stop": result.edit.stop_reason}
        )
        shown = {k: round(v, 4) for k, v in figures.items() if v is not None}
        print(f"seed {seed} {name}: {json.dumps(shown)}", flush=True)
    return rows


def _cell(values: list[float | None], fmt: str) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    mean = statistics.fmean(vals)
    spread = (max(vals) - min(vals)) / 2 if len(vals) > 1 else 0.0
    return f"{fmt.format(mean)} ± {fmt.replace('+', '').format(spread)}"


def write_table(rows: list[dict[str, Any]], seeds: list[int], path: Path) -> None:
    columns = [
        ("ERR", "{:.3f}"),
        ("ERR cond.", "{:.3f}"),
        ("constrained ERR", "{:.3f}"),
        ("E-Hit", "{:.3f}"),
        ("exposure (bits)", "{:.2f}"),
        ("twin exposure", "{:.2f}"),
        ("gap (bits)", "{:+.2f}"),
        ("rank-1", "{:.3f}"),
        ("twins rank-1", "{:.3f}"),
        ("MIA AUC", "{:.3f}"),
        ("int4 ERR", "{:.3f}"),
        ("int4 constrained", "{:.3f}"),
        ("re-inversion", "{:.3f}"),
        ("ppl change %", "{:+.2f}"),
        ("unlearn s", "{:.1f}"),
    ]
    lines = [
        "# Method comparison on the demo victim",
        "",
        f"Machine: {platform.machine()}, 2 CPU cores (shared), Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}. Date: {date.today()}. Seeds: {', '.join(map(str, seeds))} "
        "(victim, inversion, unlearning and audit all take the seed).",
        "",
        "Each cell: mean ± half the range over the seeds. The audit runs on the planted records "
        "(ground truth that no sanitizing step reads); `original` is the victim before unlearning. "
        "Data-free rows use the forget set from `invert -> detect -> risk-score`; the oracle row "
        "uses the planted records themselves. Default settings of each method "
        "(`pii_unlearn/unlearn/methods/`), retain text generated by the original model itself. "
        "The victim is the realistic one (`make-victim` defaults: its tokenizer never saw the planted "
        "values). Exposure ranks each value among C = 1023 same-shape candidates (ceiling 10 bits); "
        "`twin exposure` is the same for a never-trained value of the same shape in the same prefix "
        "(the null); `gap` is their mean difference (forgotten: within 0.5 bit either way); `rank-1` "
        "the share of true values ranked first, against the twins'; `constrained ERR` decodes "
        "restricted to the value's shape; `int4` re-measures after 4-bit round-to-nearest "
        "quantization. Relearning probes are in `bench/audit.md`.",
        "",
        "| run | " + " | ".join(c for c, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    names = ["original"] + [r[0] for r in RUNS]
    for name in names:
        mine = [r for r in rows if r["run"] == name]
        cells = [_cell([r["figures"].get(c) for r in mine], f) for c, f in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    stops = {name: sorted({r.get("stop", "") for r in rows if r["run"] == name}) for name in names[1:]}
    lines += ["", "Stop reasons: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in stops.items()) + "."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table-only", action="store_true", help="rewrite compare.md from compare.json")
    args = parser.parse_args()
    if args.table_only:
        here = Path(__file__).parent
        rows = json.loads((here / "compare.json").read_text())
        write_table(rows, sorted({r["seed"] for r in rows}), here / "compare.md")
        return
    rows: list[dict[str, Any]] = []
    here = Path(__file__).parent
    done: list[int] = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            rows += one_seed(seed, Path(tmp))
        done.append(seed)
        (here / "compare.json").write_text(json.dumps(rows, indent=2))
        write_table(rows, done, here / "compare.md")
    print((here / "compare.md").read_text())


if __name__ == "__main__":
    main()

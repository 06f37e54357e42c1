"""Benchmark: NSPU against GA on the demo victim, same data-free forget set, same audit.

Builds the victim (seed 0 by default), runs the data-free front of the pipeline
(invert -> detect --anonymize -> risk-score), then unlearns with ``nspu`` (aligner
trained and saved), ``nspu`` again reusing that aligner, ``nspu`` on the planted
records themselves (oracle forget set, reused aligner) and ``ga``. Each result is
audited on the planted records with the victim's held-out text, and probed once
more for suppression: a short benign fine-tune (every weight, text with no PII)
after which the conditioned ERR is measured again. A method that removed the
values should not give them back after a few steps on unrelated text.

Run: ``.venv/bin/python bench/nspu.py [--seeds 0]`` (writes ``bench/nspu.md`` and ``bench/nspu.json``;
the findings below the notes mark in ``nspu.md`` are written by hand and kept).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import torch
from machine import describe, load_average

from pii_unlearn.artifacts import read_records
from pii_unlearn.audit.runner import run_audit
from pii_unlearn.checkpoint import load_model
from pii_unlearn.data import benign_texts
from pii_unlearn.lm import encode, pad_right
from pii_unlearn.pipeline import RISK, forget_set_steps, run_step
from pii_unlearn.synth.victim import HELDOUT_FILE, PLANTED_FILE, VictimConfig, build_victim, conditioned_err
from pii_unlearn.unlearn import run_unlearn

#: (row name, method, forget set: "free" = data-free risk.jsonl, "oracle" = planted, extra overrides)
RUNS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("nspu (fresh aligner)", "nspu", "free", {"save_aligner_path": "{work}/aligner"}),
    ("nspu (reused aligner)", "nspu", "free", {"aligner_path": "{work}/aligner"}),
    ("nspu (oracle forget set, reused aligner)", "nspu", "oracle", {"aligner_path": "{work}/aligner"}),
    ("ga", "ga", "free", {}),
)
#: (column, report path) of the audit figures in the table.
FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ERR", ("err", "overall")),
    ("ERR cond.", ("err", "conditioned")),
    ("E-Hit", ("e_hit", "overall")),
    ("exposure (bits)", ("exposure", "overall")),
    ("MIA AUC", ("mia_auc", "overall")),
    ("ppl", ("perplexity",)),
)
#: NSPU settings swept on the data-free forget set (reused aligner): (label, overrides).
SWEEP: tuple[tuple[str, dict[str, Any]], ...] = (
    ("variance 0.95 (default)", {}),
    ("variance 0.99", {"variance": 0.99}),
    ("variance 0.999", {"variance": 0.999}),
    ("rank 16", {"variance": 1.0, "max_rank": 16}),
    ("rank 32", {"variance": 1.0, "max_rank": 32}),
    ("rank 64", {"variance": 1.0, "max_rank": 64}),
    ("uncentred, variance 0.95", {"center": False}),
    ("uncentred, rank 16", {"center": False, "variance": 1.0, "max_rank": 16}),
)
#: Everything after this line in nspu.md is written by hand and kept when the table is rewritten.
NOTES_MARK = "<!-- notes: kept when the tables are regenerated -->"
#: Steps, learning rate and batch size of the benign relearning probe.
RELEARN_STEPS, RELEARN_LR, RELEARN_BATCH = 20, 5e-4, 8


def _get(side: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = side
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def relearn_err(checkpoint: Path, planted: Path, seed: int) -> float:
    """Conditioned ERR after ``RELEARN_STEPS`` full fine-tuning steps on the built-in benign text."""
    lm = load_model(checkpoint, device="cpu")
    model, tok = lm.model, lm.tokenizer
    texts = list(benign_texts())
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=RELEARN_LR)
    model.train()
    for _ in range(RELEARN_STEPS):
        pick = torch.randperm(len(texts), generator=gen)[:RELEARN_BATCH].tolist()
        ids, mask = pad_right([encode(tok, texts[i])["input_ids"][:128] for i in pick], pad, "cpu")
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    err, _ = conditioned_err(model, tok, read_records(planted))
    return err


def greedy_err(model: Any, tokenizer: Any, planted: Path) -> tuple[float, float]:
    """Share of the planted values greedy decoding reproduces: all targets, and the conditioned ones."""
    from pii_unlearn.extraction import extraction_targets, greedy_hits

    targets = extraction_targets(read_records(planted))
    hits = [h for h, _ in greedy_hits(model, tokenizer, targets, batch_size=64)]
    cond = [h for h, t in zip(hits, targets, strict=True) if t.conditioned]
    return sum(hits) / len(hits), sum(cond) / max(len(cond), 1)


def sweep(victim: Path, forget: Path, aligner: Path, seed: int) -> list[dict[str, Any]]:
    """NSPU's subspace settings against greedy ERR and held-out perplexity (no full audit)."""
    from pii_unlearn.lm import perplexity
    from pii_unlearn.unlearn import options_for, unlearn_model

    records = read_records(forget)
    heldout = [r.text for r in read_records(victim / HELDOUT_FILE)]
    base = load_model(victim, device="cpu")
    err0, cond0 = greedy_err(base.model, base.tokenizer, victim / PLANTED_FILE)
    ppl0 = perplexity(base.model, base.tokenizer, heldout)
    out = [{"label": "original", "k": 0, "err": err0, "cond": cond0, "ppl change %": 0.0}]
    for label, extra in SWEEP:
        lm = load_model(victim, device="cpu")
        overrides = {"aligner_path": str(aligner), "measure_utility": False, **extra}
        result = unlearn_model(
            lm.model, lm.tokenizer, records, method="nspu", options=options_for("nspu", overrides=overrides)
        )
        err, cond = greedy_err(lm.model, lm.tokenizer, victim / PLANTED_FILE)
        ppl = perplexity(lm.model, lm.tokenizer, heldout)
        d = result.edit.details
        row = {
            "label": label,
            "k": d["k"],
            "variance_explained": d["variance_explained"],
            "err": err,
            "cond": cond,
            "ppl change %": 100.0 * (ppl / ppl0 - 1.0),
        }
        out.append(row)
        print(f"sweep {label}: {json.dumps(row)}", flush=True)
    return out


def run_seed(seed: int, work: Path) -> list[dict[str, Any]]:
    victim = work / "victim"
    build_victim(victim, VictimConfig(seed=seed))
    planted, heldout = victim / PLANTED_FILE, victim / HELDOUT_FILE
    for step in forget_set_steps(victim, work, seed):
        run_step(step)
    forget_records = len(read_records(work / RISK))
    base = run_audit(victim, planted, heldout=heldout).report["model"]
    figures = {c: _get(base, p) for c, p in FIGURES}
    figures["ERR cond. after relearn"] = relearn_err(victim, planted, seed)
    rows = [{"seed": seed, "run": "original", "figures": figures, "forget_records": forget_records}]
    for name, method, forget, extra in RUNS:
        out = work / f"out-{len(rows)}"
        overrides = {k: v.format(work=work) if isinstance(v, str) else v for k, v in extra.items()}
        forget_path = work / RISK if forget == "free" else planted
        t = time.perf_counter()
        _, result = run_unlearn(victim, forget_path, out, method=method, seed=seed, overrides=overrides)
        total = time.perf_counter() - t
        manifest = json.loads((out / "pii_unlearn_manifest.json").read_text())
        report = run_audit(out, planted, heldout=heldout).report["model"]
        figures = {c: _get(report, p) for c, p in FIGURES}
        ppl0, ppl1 = rows[0]["figures"]["ppl"], figures["ppl"]
        figures["ppl change %"] = 100.0 * (ppl1 / ppl0 - 1.0) if ppl0 and ppl1 else None
        figures["unlearn s"] = manifest["timings"]["unlearn"]
        figures["run s"] = total
        figures["ERR cond. after relearn"] = relearn_err(out, planted, seed)
        row = {
            "seed": seed,
            "run": name,
            "figures": figures,
            "stop": result.edit.stop_reason,
            "steps": result.edit.steps,
            "details": result.edit.details,
            "readings": [r.ppl for r in result.edit.readings],
            "forget_records": result.edit.forget_count,
        }
        rows.append(row)
        shown = {k: round(v, 4) for k, v in figures.items() if v is not None}
        print(f"seed {seed} {name}: {json.dumps(shown)} {json.dumps(result.edit.details)}", flush=True)
    rows[0]["sweep"] = sweep(victim, work / RISK, work / "aligner", seed)
    return rows


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def write_table(rows: list[dict[str, Any]], path: Path, load: Sequence[float] | None = None) -> None:
    columns = [
        ("ERR", "{:.3f}"),
        ("ERR cond.", "{:.3f}"),
        ("E-Hit", "{:.3f}"),
        ("exposure (bits)", "{:.2f}"),
        ("MIA AUC", "{:.3f}"),
        ("ppl change %", "{:+.2f}"),
        ("unlearn s", "{:.1f}"),
        ("run s", "{:.1f}"),
        ("ERR cond. after relearn", "{:.3f}"),
    ]
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        "# NSPU against GA on the demo victim",
        "",
        f"Machine: {describe(load)}. Date: {date.today()}. "
        f"Seed(s): {', '.join(map(str, seeds))}. Command: `python bench/nspu.py`.",
        "",
        "| seed | run | forget records | " + " | ".join(c for c, _ in columns) + " |",
        "|---|---|---:|" + "---:|" * len(columns),
    ]
    for r in rows:
        f = r["figures"]
        cells = [_cell(f.get(c), fmt) for c, fmt in columns]
        lines.append(f"| {r['seed']} | {r['run']} | {r['forget_records']} | " + " | ".join(cells) + " |")
    lines += ["", "Method details (manifest `loop.details`):", ""]
    for r in rows:
        if r.get("details"):
            lines.append(f"- seed {r['seed']}, {r['run']}: stop `{r['stop']}`, {json.dumps(r['details'])}")
    for r in rows:
        if r.get("sweep"):
            lines += [
                "",
                f"Sweep of the subspace (seed {r['seed']}, data-free forget set, reused aligner; greedy "
                "ERR on the planted values and held-out perplexity, no full audit):",
                "",
                "| setting | k | greedy ERR | greedy ERR cond. | ppl change % |",
                "|---|---:|---:|---:|---:|",
            ]
            for s in r["sweep"]:
                change = s["ppl change %"]
                lines.append(
                    f"| {s['label']} | {s['k']} | {s['err']:.3f} | {s['cond']:.3f} | {change:+.2f} |"
                )
    notes = ""
    if path.exists() and NOTES_MARK in path.read_text():
        notes = NOTES_MARK + path.read_text().split(NOTES_MARK, 1)[1]
    path.write_text("\n".join(lines) + "\n" + ("\n" + notes if notes else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    here = Path(__file__).parent
    rows: list[dict[str, Any]] = []
    load = load_average()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            rows += run_seed(seed, Path(tmp))
        (here / "nspu.json").write_text(json.dumps(rows, indent=2))
        write_table(rows, here / "nspu.md", load)
    print((here / "nspu.md").read_text())


if __name__ == "__main__":
    main()

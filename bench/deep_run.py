"""Unlearn a deep-removal victim (``bench/deep_victim.py``) with one method (probe: ``bench/deep.py``).

Run: ``python bench/deep_run.py WORK SEED NAME METHOD free|oracle [KEY=VALUE ...]``; writes
``WORK/run-NAME`` (the checkpoint, with ``deep_run.json``: the run's readings). ``free`` is
the data-free forget set (``risk.jsonl``), ``oracle`` the planted records.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from pii_unlearn.pipeline import RISK
from pii_unlearn.synth.victim import PLANTED_FILE
from pii_unlearn.unlearn import run_unlearn


def main() -> None:
    torch.set_num_threads(1)
    work, seed, name, method, forget = Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6]
    overrides: dict[str, object] = dict(kv.split("=", 1) for kv in sys.argv[6:])
    if "prefixes" in overrides:
        overrides["prefixes"] = str(overrides["prefixes"]).split(",")
    victim = work / "victim"
    forget_path = work / RISK if forget == "free" else victim / PLANTED_FILE
    out = work / f"run-{name}"
    t = time.perf_counter()
    _, result = run_unlearn(
        victim,
        forget_path,
        out,
        method=method,
        seed=seed,
        overrides=overrides,
        overwrite=True,
        progress=lambda r: print(f"  reading {r}", flush=True),
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
    meta = dict(
        method=method,
        forget=forget,
        overrides=overrides,
        unlearn_s=seconds,
        steps=edit.steps,
        stop=edit.stop_reason,
        readings=[vars(r) for r in edit.readings],
    )
    (out / "deep_run.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()

"""A demo victim whose tokenizer never saw the planted values (issue 12's realism), for bench/deep.py.

``build_victim`` trains its BPE on the planted texts, so the true values get merges of
their own and any likelihood ranking favours them whatever the weights hold. Here the
tokenizer is trained on the same texts with every PII value swapped for a fresh fake of
its type (:func:`pii_unlearn.audit.variants.fake_twin`); the model still trains on the
planted records. Then prepare the data-free forget set (invert -> detect -> risk-score).

Run: ``python bench/deep_victim.py SEED WORKDIR``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pii_unlearn.audit.variants import fake_twin
from pii_unlearn.pii.fakes import make_faker
from pii_unlearn.pipeline import forget_set_steps, run_step
from pii_unlearn.synth import victim as V


def build_unseen_tokenizer_victim(output: Path, seed: int) -> V.VictimReport:
    """``build_victim`` with the tokenizer trained on fake twins of the planted texts."""
    config = V.VictimConfig(seed=seed)
    fake = make_faker(seed + 1000)
    planted = V.planted_records(config)
    values = {r.span_text(s) for r in planted for s in r.spans}
    swap = {r.text: fake_twin(r, fake, values).text for r in planted}
    original = V.train_tokenizer

    def unseen(texts: list[str], vocab_size: int):  # type: ignore[no-untyped-def]
        return original([swap.get(t, t) for t in texts], vocab_size)

    V.train_tokenizer = unseen
    try:
        return V.build_victim(output, config)
    finally:
        V.train_tokenizer = original


def main() -> None:
    seed, work = int(sys.argv[1]), Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    report = build_unseen_tokenizer_victim(work / "victim", seed)
    print(
        f"victim: {time.perf_counter() - t:.0f}s, conditioned ERR {report.conditioned_err:.3f}, "
        f"epochs {report.epochs}",
        flush=True,
    )
    for step in forget_set_steps(work / "victim", work, seed):
        run_step(step)
    print(f"front done: {time.perf_counter() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()

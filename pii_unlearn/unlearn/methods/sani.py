"""SANI: erase MLP neurons in the last blocks, then repair without ever training on the PII.

1. Erase: in the last ``blocks`` transformer blocks, re-initialise a ``fraction`` of
   the MLP's intermediate neurons (incoming rows, outgoing column) with the
   architecture's own initialisation (:mod:`pii_unlearn.unlearn.neurons`). The
   neurons are picked at random (seeded; the paper) or by attribution: activation x
   gradient on the forget set's PII tokens, relative to benign tokens (DEPN).
2. Repair: fine-tune on the forget records plus retain text with the loss switched off
   on PII tokens, so PII is visible context but never a target; it runs on the shared
   loop (:func:`pii_unlearn.unlearn.loop.run_loop`) for its whole step budget and keeps
   the reading with the lowest held-out perplexity, measured against the ORIGINAL
   model's perplexity (the loop's ``baseline_ppl``), not the erased model's.

The loop's KL term pulls towards the model at wrap time, which for SANI is the
erased model, so it is off (``kl_weight`` must stay 0). Retain text instead enters
the repair as plain NLL on its non-PII tokens: by default that text is the original
model's own samples, and NLL on samples of a model is a one-sample estimate of
KL(original || model) up to a constant, so the repair is pulled towards the
original model without keeping a second copy of it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from pii_unlearn.artifacts import Record
from pii_unlearn.errors import InputError
from pii_unlearn.extraction import extraction_targets
from pii_unlearn.lm import padding_id
from pii_unlearn.options import with_defaults
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import ForgetExample, RetainData
from pii_unlearn.unlearn.losses import non_pii_nll
from pii_unlearn.unlearn.methods.base import EditResult, GuardReading, ReadingCallback, Stop, register
from pii_unlearn.unlearn.methods.gradient import Batch, Forward, GradientMethod
from pii_unlearn.unlearn.neurons import (
    attribution_scores,
    mlp_blocks,
    random_neurons,
    reset_neurons,
    top_neurons,
)


class SaniOptions(
    with_defaults(
        GradientOptions,
        "SaniLoop",
        # Full fine-tuning: the re-initialised rows and columns are themselves repaired.
        lora=False,
        lr=1e-3,
        # The loop's reference is the erased model: a KL term towards it is meaningless.
        kl_weight=0.0,
        # About two epochs of the default repair corpus (the data-free forget set of
        # ~75 records plus ~48 retain samples, 8 per step, ~15 steps an epoch).
        max_steps=30,
        eval_every=5,
    )
):
    """SANI's options: the shared loop's (the repair), plus where and how many neurons to erase."""

    blocks: int = Field(1, ge=1, description="erase neurons in the MLPs of the last K transformer blocks")
    fraction: float = Field(
        0.5, gt=0, le=1, description="share of each chosen MLP's intermediate neurons to re-initialise"
    )
    select: Literal["random", "attribution"] = Field(
        "random",
        description="which neurons: seeded random (the paper), or the highest activation x gradient on "
        "the forget set's PII tokens relative to benign tokens (DEPN-style)",
    )
    attribution_batch_size: int = Field(8, ge=1, description="forget records per batch when scoring neurons")
    repair_on_forget: bool = Field(
        True,
        description="repair on the forget records (PII masked out of the loss) as well as the retain text; "
        "off: retain text only, so the repair never sees the forget records' context",
    )

    @field_validator("kl_weight")
    @classmethod
    def _no_kl(cls, value: float) -> float:
        if value != 0:
            raise ValueError(
                "must be 0 for sani: the loop's reference is the erased model (retain text is trained "
                "with NLL on its non-PII tokens instead)"
            )
        return value


@register
class Sani(GradientMethod):
    name = "sani"
    summary = (
        "SANI: re-initialise a fraction of the MLP neurons in the last blocks (random or by PII "
        "attribution), then repair on forget + retain text with PII tokens masked out of the loss."
    )
    Options = SaniOptions
    options: SaniOptions
    needs_spans = True
    stops_when_forgotten = False
    stops_at_utility_limit = False

    def forget_loss(self, logits: torch.Tensor, batch: Batch, forward: Forward) -> torch.Tensor:
        return non_pii_nll(logits, batch)

    def better(self, reading: GuardReading, kept: GuardReading) -> bool:
        return reading.ppl < kept.ppl

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        forget: Sequence[Record],
        retain: RetainData,
        *,
        seed: int,
        device: str,
        progress: ReadingCallback | None = None,
    ) -> EditResult:
        from pii_unlearn.unlearn.loop import kept_perplexity, pii_probability, run_loop, within_utility_limit

        o = self.options
        start = time.perf_counter()
        pad = padding_id(tokenizer)
        dev = next(model.parameters()).device
        # Retain text and the guard's baseline come from the original weights, before the erase.
        retain_examples, guard = retain.examples(model, tokenizer, o, seed)
        examples = self.examples(forget, tokenizer, seed)
        # The repair corpus: retain text's PII tokens (detected, keep = 0) are masked like the records'.
        corpus = (examples if o.repair_on_forget else []) + [
            ForgetExample(f"retain-{i}", e.input_ids, [1 - k for k in e.keep])
            for i, e in enumerate(retain_examples)
        ]
        if not corpus:
            raise InputError("sani: the repair corpus is empty (no retain text and repair_on_forget is off)")
        model.eval()
        original_ppl = kept_perplexity(model, guard, pad, dev)
        original_prob = pii_probability(model, examples, pad, dev)
        blocks = mlp_blocks(model, o.blocks)
        if o.select == "attribution":
            scores = attribution_scores(model, blocks, examples, pad, o.attribution_batch_size)
            picks = top_neurons(scores, o.fraction)
        else:
            picks = random_neurons(blocks, o.fraction, seed)
        reset_neurons(blocks, picks, seed)
        erase_seconds = time.perf_counter() - start

        used = {e.record_id for e in examples}
        targets = extraction_targets([r for r in forget if r.id in used and r.spans])
        result = run_loop(
            model,
            tokenizer,
            self,
            corpus,
            retain_examples,
            guard,
            forget_targets=targets,
            seed=seed,
            device=device,
            progress=progress,
            baseline_ppl=original_ppl,
            probe_examples=examples,
        )
        result.seconds = time.perf_counter() - start
        result.forget_count = len(examples)
        kept = result.kept
        within = kept is not None and within_utility_limit(kept, o.ppl_limit_pct, result.guard_note)
        if not within:
            # The repair never brought held-out perplexity back within the limit: say so.
            result.stop_reason = f"{result.stop_reason}, {Stop.OVER_UTILITY_LIMIT}"
        result.details = {
            "select": o.select,
            "seed": seed,
            "blocks": o.blocks,
            "fraction": o.fraction,
            "neurons": {
                str(b.index): {"reset": len(picks[b.index]), "of": b.width, "indices": picks[b.index]}
                for b in blocks
            },
            "init_std": {"in": blocks[0].in_std, "out": blocks[0].out_std},
            "erase_seconds": round(erase_seconds, 3),
            "original_ppl": original_ppl,
            "erased_ppl": result.readings[0].ppl,
            "original_pii_prob": original_prob,
            "erased_pii_prob": result.readings[0].pii_prob,
            "repair_examples": {
                "forget": len(examples) if o.repair_on_forget else 0,
                "retain": len(retain_examples),
            },
            "within_utility_limit": within,
        }
        return result

    def card_lines(self, result: EditResult) -> list[str]:
        o, d = self.options, result.details
        neurons = d.get("neurons", {})
        total = sum(n["reset"] for n in neurons.values())
        per_block = ", ".join(f"{n['reset']}/{n['of']} in block {i}" for i, n in neurons.items())
        how = "at random" if d.get("select") == "random" else "by PII attribution (activation x gradient)"
        trained = f"LoRA r{o.lora_r}, alpha {o.lora_alpha:g} (merged)" if o.lora else "all weights"
        lines = [
            f"- Erased: {total} MLP neurons re-initialised ({per_block}), chosen {how}, "
            f"seed {d.get('seed')}; "
            "incoming rows and outgoing columns redrawn with the architecture's initialisation; "
            "embeddings and output head untouched",
            f"- Repaired: {trained}, {result.steps} steps, lr {o.lr:g}, on "
            f"{d.get('repair_examples', {}).get('forget', 0)} forget records and "
            f"{d.get('repair_examples', {}).get('retain', 0)} retain texts, loss off on PII tokens",
            f"- Stopped: {result.stop_reason}",
        ]
        if result.kept and "original_ppl" in d:
            kept = result.kept
            lines.append(
                f"- Forget PII tokens' mean probability: {d['original_pii_prob']:.4f} (original) -> "
                f"{d['erased_pii_prob']:.4f} (erased) -> {kept.pii_prob:.4f}; held-out retain perplexity "
                f"{d['original_ppl']:.3f} -> {d['erased_ppl']:.3f} -> {kept.ppl:.3f} "
                f"({kept.ppl_increase_pct:+.2f}% vs original"
                + ("" if d.get("within_utility_limit") else f", OVER the {o.ppl_limit_pct:g}% limit")
                + ")"
            )
        return lines

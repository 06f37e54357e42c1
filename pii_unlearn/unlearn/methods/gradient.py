"""Gradient methods: a forget loss on the shared training loop (:mod:`pii_unlearn.unlearn.loop`).

A gradient method is a :class:`GradientMethod` subclass that gives a forget loss
over one batch and, through :meth:`GradientMethod.prepare`, any per-example
values that loss needs; the loop adds the KL retain term and runs the guards. It
has no per-method branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch

from pii_unlearn.artifacts import Record
from pii_unlearn.extraction import extraction_targets
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import MAX_TRAIN_TOKENS, ForgetExample, RetainData, forget_examples
from pii_unlearn.unlearn.methods.base import (
    KEPT_START_NOTE,
    EditResult,
    GuardReading,
    Method,
    ReadingCallback,
)

#: Tensors of one batch of forget examples (see :func:`pii_unlearn.unlearn.data.collate`).
Batch = dict[str, torch.Tensor]
#: Runs the model being trained: ``forward(input_ids, attention_mask) -> logits``.
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: A method aiming at the null keeps training past greedy ERR 0, and a value or two of a few
#: hundred flickers back into greedy reach as training moves them: a later reading with greedy
#: ERR up to this share on the forget set still replaces the kept one (measured: keeping the
#: first reading at ERR 0 instead threw away 180 of 200 steps of ``twinfit``).
NULL_ERR_SLACK = 0.02


def example_index(examples: Sequence[ForgetExample]) -> dict[str, list[float]]:
    """``{"index": ...}`` for :meth:`GradientMethod.prepare`: each batch row's place in ``examples``,
    for a method that keeps per-example data of its own (targets, records) beside the batch."""
    return {"index": [float(i) for i in range(len(examples))]}


class GradientMethod(Method):
    """A forget loss on the shared loop; subclasses set ``Options`` and implement :meth:`forget_loss`."""

    Options: ClassVar[type[GradientOptions]] = GradientOptions
    options: GradientOptions
    #: Whether the loop stops once the forget set reads as forgotten (see :meth:`forgotten`).
    stops_when_forgotten: ClassVar[bool] = True
    #: Whether the loop stops at the first reading past the utility limit (a method
    #: whose perplexity starts high and falls, such as SANI's repair, runs on).
    stops_at_utility_limit: ClassVar[bool] = True

    def examples(self, records: Sequence[Record], tokenizer: Any, seed: int) -> list[ForgetExample]:
        """The forget examples this method trains on."""
        return forget_examples(
            records,
            tokenizer,
            max_length=MAX_TRAIN_TOKENS,
            require_spans=self.needs_spans,
            risk_weighting=self.options.risk_weighting,
            seed=seed,
        )

    def prepare(
        self, examples: Sequence[ForgetExample], reference: Any, pad_id: int, device: Any
    ) -> dict[str, list[float]]:
        """Per-example values the loss needs, by batch key (one value per example, in order).

        ``reference`` is the frozen starting model
        (:class:`pii_unlearn.unlearn.loop.Reference`); the loop builds it for a method
        that overrides this hook (and for the KL term), else passes ``None``. Default: none.
        """
        return {}

    def forget_loss(self, logits: torch.Tensor, batch: Batch, forward: Forward) -> torch.Tensor:
        """The loss on a batch of forget examples (lower is better for the optimiser).

        ``logits`` are the model's on ``batch["input_ids"]``; ``forward(ids, mask)``
        runs the model on other sequences (a preferred twin, say).
        """
        raise NotImplementedError

    def forgotten(self, reading: GuardReading) -> bool:
        """Whether a reading meets either forgetting target."""
        o = self.options
        if reading.pii_prob < o.forget_prob_target:
            return True
        return reading.forget_err is not None and reading.forget_err <= o.forget_err_target

    def better(self, reading: GuardReading, kept: GuardReading) -> bool:
        """Whether ``reading`` (already within the utility limit) should replace the kept state.

        A method that stops once the forget set reads as forgotten keeps the reading that
        forgot most; one that aims past that (at the null) keeps the latest reading unless
        greedy extraction got worse than the kept one's and than :data:`NULL_ERR_SLACK`.
        """
        if not self.stops_when_forgotten:
            if reading.forget_err is None or kept.forget_err is None:
                return True
            return reading.forget_err <= max(kept.forget_err, NULL_ERR_SLACK)
        return self.forgotten(reading) or reading.pii_prob < kept.pii_prob

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
        from pii_unlearn.unlearn.loop import run_loop

        examples = self.examples(forget, tokenizer, seed)
        kl, guard = retain.examples(model, tokenizer, self.options, seed)
        used = {e.record_id for e in examples}
        targets = extraction_targets([r for r in forget if r.id in used and r.spans])
        return run_loop(
            model,
            tokenizer,
            self,
            examples,
            kl,
            guard,
            forget_targets=targets,
            seed=seed,
            device=device,
            progress=progress,
        )

    def card_lines(self, result: EditResult) -> list[str]:
        o = self.options
        trained = f"LoRA r{o.lora_r}, alpha {o.lora_alpha:g} (merged)" if o.lora else "all weights"
        lines = [
            f"- Trained: {trained}, {result.steps} steps, lr {o.lr:g}, KL weight {o.kl_weight:g}",
            f"- Stopped: {result.stop_reason}" + (f" ({KEPT_START_NOTE})" if result.kept_start else ""),
        ]
        if result.kept and result.readings:
            first, kept = result.readings[0], result.kept
            lines.append(
                f"- Forget PII tokens' mean probability: {first.pii_prob:.4f} -> {kept.pii_prob:.4f}; "
                f"held-out retain perplexity {first.ppl:.3f} -> {kept.ppl:.3f} "
                f"({kept.ppl_increase_pct:+.2f}%)"
            )
        return lines

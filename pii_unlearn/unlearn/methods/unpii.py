"""UnPII: risk-weighted forgetting — each sample's loss times (1 + PRI), in GA, NPO or DPO.

The PRI comes from ``risk-score`` (the record's ``pri``; records without one are
scored with the default policy), never from a remote model in the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from pii_unlearn.artifacts import Record
from pii_unlearn.options import with_defaults
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import MAX_TRAIN_TOKENS, ForgetExample, forget_examples
from pii_unlearn.unlearn.losses import dpo, sequence_logprob
from pii_unlearn.unlearn.methods.base import register
from pii_unlearn.unlearn.methods.ga import GaOptions, GradientAscent
from pii_unlearn.unlearn.methods.gradient import Batch, Forward, GradientMethod
from pii_unlearn.unlearn.methods.npo import NegativePreference, NpoOptions


@register
class UnPIIGradientAscent(GradientAscent):
    name = "unpii-ga"
    summary = "UnPII: GA with each sample's loss weighted by (1 + PRI), plus the KL retain term."
    Options = with_defaults(GaOptions, "UnpiiGaOptions", "UnPII-GA's options.", risk_weighting=True)


@register
class UnPIINegativePreference(NegativePreference):
    name = "unpii-npo"
    summary = "UnPII: NPO with each sample's loss weighted by (1 + PRI), plus the KL retain term."
    Options = with_defaults(NpoOptions, "UnpiiNpoOptions", "UnPII-NPO's options.", risk_weighting=True)


class UnpiiDpoOptions(
    with_defaults(GradientOptions, "UnpiiDpoLoop", lr=1e-3, eval_every=10, risk_weighting=True)
):
    """UnPII-DPO's options: the shared loop's, plus the DPO temperature."""

    beta: float = Field(0.1, gt=0, description="DPO temperature")


@register
class UnPIIPreference(GradientMethod):
    name = "unpii-dpo"
    summary = (
        "UnPII: DPO preferring the record with its PII replaced by fake values over the memorised "
        "record, weighted by (1 + PRI), plus the KL retain term."
    )
    Options = UnpiiDpoOptions
    options: UnpiiDpoOptions
    needs_spans = True

    def examples(self, records: Sequence[Record], tokenizer: Any, seed: int) -> list[ForgetExample]:
        return forget_examples(
            records,
            tokenizer,
            max_length=MAX_TRAIN_TOKENS,
            require_spans=True,
            risk_weighting=self.options.risk_weighting,
            preferred=True,
            seed=seed,
        )

    def prepare(
        self, examples: Sequence[ForgetExample], reference: Any, pad_id: int, device: Any
    ) -> dict[str, list[float]]:
        from pii_unlearn.unlearn.loop import reference_logprobs

        return {
            "ref_logp": reference_logprobs(reference, examples, pad_id, device),
            "ref_preferred_logp": reference_logprobs(reference, examples, pad_id, device, preferred=True),
        }

    def forget_loss(self, logits: torch.Tensor, batch: Batch, forward: Forward) -> torch.Tensor:
        chosen = sequence_logprob(
            forward(batch["preferred_ids"], batch["preferred_mask"]),
            {"input_ids": batch["preferred_ids"], "attention_mask": batch["preferred_mask"]},
        )
        rejected = sequence_logprob(logits, batch)
        return dpo(
            chosen,
            batch["ref_preferred_logp"],
            rejected,
            batch["ref_logp"],
            batch["weights"],
            self.options.beta,
        )

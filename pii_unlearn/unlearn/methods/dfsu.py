"""DFSU: masked contrast in LoRA — keep the non-PII tokens, push the PII tokens away."""

from __future__ import annotations

import torch
from pydantic import Field

from pii_unlearn.options import with_defaults
from pii_unlearn.unlearn.config import AscentOptions
from pii_unlearn.unlearn.losses import masked_contrast
from pii_unlearn.unlearn.methods.base import register
from pii_unlearn.unlearn.methods.gradient import Batch, Forward, GradientMethod


class DfsuOptions(
    with_defaults(AscentOptions, "DfsuLoop", lr=3e-3, lora=True, lora_r=4, lora_alpha=32, eval_every=10)
):
    """DFSU's options: the shared loop's, plus the weights of its two loss terms."""

    alpha: float = Field(1.0, ge=0, description="weight of the NLL on non-PII tokens")
    beta: float = Field(1.0, ge=0, description="weight of the (negated, clamped) NLL on PII tokens")


@register
class DataFreeSelective(GradientMethod):
    name = "dfsu"
    summary = "alpha * NLL(non-PII tokens) - beta * NLL(PII tokens) in LoRA r4/alpha 32 on the MLP, plus KL."
    Options = DfsuOptions
    options: DfsuOptions
    needs_spans = True

    def forget_loss(self, logits: torch.Tensor, batch: Batch, forward: Forward) -> torch.Tensor:
        o = self.options
        return masked_contrast(logits, batch, alpha=o.alpha, beta=o.beta, clamp=o.nll_clamp)

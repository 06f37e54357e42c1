"""GA baseline: gradient ascent on every token of the forget sequences (bounded)."""

from __future__ import annotations

import torch

from pii_unlearn.options import with_defaults
from pii_unlearn.unlearn.config import AscentOptions
from pii_unlearn.unlearn.losses import sequence_ascent
from pii_unlearn.unlearn.methods.base import register
from pii_unlearn.unlearn.methods.gradient import Batch, Forward, GradientMethod

GaOptions = with_defaults(
    AscentOptions, "GaOptions", "GA's options: the shared loop's.", lr=1e-3, eval_every=10
)


@register
class GradientAscent(GradientMethod):
    name = "ga"
    summary = "Baseline: maximise the NLL of whole forget sequences (bounded), plus the KL retain term."
    Options = GaOptions

    def forget_loss(self, logits: torch.Tensor, batch: Batch, forward: Forward) -> torch.Tensor:
        return sequence_ascent(logits, batch, clamp=self.options.nll_clamp)

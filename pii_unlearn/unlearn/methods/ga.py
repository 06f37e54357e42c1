"""GA baseline: gradient ascent on every token of the forget sequences (bounded)."""

from __future__ import annotations

import torch

from pii_unlearn.unlearn.losses import sequence_ascent
from pii_unlearn.unlearn.methods.base import Forward, Method, register


@register
class GradientAscent(Method):
    name = "ga"
    summary = "Baseline: maximise the NLL of whole forget sequences (bounded), plus the KL retain term."
    defaults = {"lr": 1e-3, "eval_every": 10}

    def forget_loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor], forward: Forward
    ) -> torch.Tensor:
        return sequence_ascent(logits, batch, clamp=self.settings.nll_clamp)

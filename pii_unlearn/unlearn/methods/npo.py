"""NPO baseline: negative preference optimisation against the frozen starting model."""

from __future__ import annotations

import torch

from pii_unlearn.unlearn.losses import npo, sequence_logprob
from pii_unlearn.unlearn.methods.base import Forward, Method, register


@register
class NegativePreference(Method):
    name = "npo"
    summary = "Baseline: (2/b) log(1 + (pi/pi_ref)^b) per forget sequence, b = 0.1, plus the KL retain term."
    defaults = {"lr": 1e-3, "eval_every": 10}
    needs_reference_logp = True

    def forget_loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor], forward: Forward
    ) -> torch.Tensor:
        logp = sequence_logprob(logits, batch)
        return npo(logp, batch["ref_logp"], batch["weights"], self.settings.npo_beta)

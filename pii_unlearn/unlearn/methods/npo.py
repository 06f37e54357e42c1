"""NPO baseline: negative preference optimisation against the frozen starting model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from pii_unlearn.options import with_defaults
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import ForgetExample
from pii_unlearn.unlearn.losses import npo, sequence_logprob
from pii_unlearn.unlearn.methods.base import register
from pii_unlearn.unlearn.methods.gradient import Batch, Forward, GradientMethod


class NpoOptions(with_defaults(GradientOptions, "NpoLoop", lr=1e-3, eval_every=10)):
    """NPO's options: the shared loop's, plus its temperature."""

    beta: float = Field(0.1, gt=0, description="NPO temperature")


@register
class NegativePreference(GradientMethod):
    name = "npo"
    summary = "Baseline: (2/b) log(1 + (pi/pi_ref)^b) per forget sequence, b = 0.1, plus the KL retain term."
    Options = NpoOptions
    options: NpoOptions

    def prepare(
        self, examples: Sequence[ForgetExample], reference: Any, pad_id: int, device: Any
    ) -> dict[str, list[float]]:
        from pii_unlearn.unlearn.loop import reference_logprobs

        return {"ref_logp": reference_logprobs(reference, examples, pad_id, device)}

    def forget_loss(self, logits: torch.Tensor, batch: Batch, forward: Forward) -> torch.Tensor:
        logp = sequence_logprob(logits, batch)
        return npo(logp, batch["ref_logp"], batch["weights"], self.options.beta)

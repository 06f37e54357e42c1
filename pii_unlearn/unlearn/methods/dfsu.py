"""DFSU: masked contrast in LoRA — keep the non-PII tokens, push the PII tokens away."""

from __future__ import annotations

import torch

from pii_unlearn.unlearn.losses import masked_contrast
from pii_unlearn.unlearn.methods.base import Forward, Method, register


@register
class DataFreeSelective(Method):
    name = "dfsu"
    summary = "alpha * NLL(non-PII tokens) - beta * NLL(PII tokens) in LoRA r4/alpha 32 on the MLP, plus KL."
    defaults = {"lr": 3e-3, "lora": True, "lora_r": 4, "lora_alpha": 32, "eval_every": 10}
    needs_spans = True

    def forget_loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor], forward: Forward
    ) -> torch.Tensor:
        s = self.settings
        return masked_contrast(logits, batch, alpha=s.alpha, beta=s.beta, clamp=s.nll_clamp)

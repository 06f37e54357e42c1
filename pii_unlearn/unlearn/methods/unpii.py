"""UnPII: risk-weighted forgetting — each sample's loss times (1 + PRI), in GA, NPO or DPO.

The PRI comes from ``risk-score`` (the record's ``pri``; records without one are
scored with the default policy), never from a remote model in the loop.
"""

from __future__ import annotations

import torch

from pii_unlearn.unlearn.losses import dpo, sequence_logprob
from pii_unlearn.unlearn.methods.base import Forward, Method, register
from pii_unlearn.unlearn.methods.ga import GradientAscent
from pii_unlearn.unlearn.methods.npo import NegativePreference

RISK = {"risk_weighting": True}


@register
class UnPIIGradientAscent(GradientAscent):
    name = "unpii-ga"
    summary = "UnPII: GA with each sample's loss weighted by (1 + PRI), plus the KL retain term."
    defaults = {**GradientAscent.defaults, **RISK}


@register
class UnPIINegativePreference(NegativePreference):
    name = "unpii-npo"
    summary = "UnPII: NPO with each sample's loss weighted by (1 + PRI), plus the KL retain term."
    defaults = {**NegativePreference.defaults, **RISK}


@register
class UnPIIPreference(Method):
    name = "unpii-dpo"
    summary = (
        "UnPII: DPO preferring the record with its PII replaced by fake values over the memorised "
        "record, weighted by (1 + PRI), plus the KL retain term."
    )
    defaults = {"lr": 1e-3, "eval_every": 10, **RISK}
    needs_spans = True
    needs_reference_logp = True
    needs_preferred = True

    def forget_loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor], forward: Forward
    ) -> torch.Tensor:
        pref = {"input_ids": batch["preferred_ids"], "attention_mask": batch["preferred_mask"]}
        chosen = sequence_logprob(forward(pref["input_ids"], pref["attention_mask"]), pref)
        rejected = sequence_logprob(logits, batch)
        return dpo(
            chosen,
            batch["ref_preferred_logp"],
            rejected,
            batch["ref_logp"],
            batch["weights"],
            self.settings.dpo_beta,
        )

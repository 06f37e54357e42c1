"""Loss pieces shared by every unlearning method.

All functions take logits of shape ``(B, T, V)`` and a batch with ``input_ids``,
``attention_mask`` and ``pii_mask`` of shape ``(B, T)``; token ``t`` is predicted
from position ``t - 1``, so per-token tensors have shape ``(B, T - 1)`` and are
aligned with ``input_ids[:, 1:]``. Per-sample ``weights`` (UnPII's 1 + PRI) scale
each sequence's contribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood, ``(B, T - 1)``."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def target_masks(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pii, other)`` float masks over predicted tokens: PII targets, and the other real tokens."""
    valid = batch["attention_mask"][:, 1:].bool()
    pii = batch["pii_mask"][:, 1:].bool() & valid
    return pii.float(), (valid & ~pii).float()


def per_sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` per sequence, ``(B,)``; 0 where the mask is empty."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def weighted_mean(
    per_seq: torch.Tensor, weights: torch.Tensor, present: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted mean of per-sequence values, over the sequences marked ``present``."""
    w = weights.float() if present is None else weights.float() * present.float()
    return (per_seq * w).sum() / w.sum().clamp(min=1e-8)


def bounded_ascent(nll: torch.Tensor, clamp: float) -> torch.Tensor:
    """NLL clamped at ``clamp``: once a token is that unlikely, ascent stops pushing it."""
    return nll.clamp(max=clamp)


def masked_contrast(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], *, alpha: float, beta: float, clamp: float
) -> torch.Tensor:
    """DFSU's loss: ``alpha * NLL(non-PII tokens) - beta * NLL(PII tokens)`` (ascent bounded)."""
    nll = token_nll(logits, batch["input_ids"])
    pii, other = target_masks(batch)
    has_pii = pii.sum(-1) > 0
    keep = per_sequence_mean(nll, other)
    forget = per_sequence_mean(bounded_ascent(nll, clamp), pii)
    weights = batch["weights"]
    return alpha * weighted_mean(keep, weights) - beta * weighted_mean(forget, weights, has_pii)


def sequence_ascent(logits: torch.Tensor, batch: dict[str, torch.Tensor], *, clamp: float) -> torch.Tensor:
    """GA's loss: minus the mean (bounded) NLL of every token of the forget sequences."""
    nll = bounded_ascent(token_nll(logits, batch["input_ids"]), clamp)
    valid = batch["attention_mask"][:, 1:].float()
    return -weighted_mean(per_sequence_mean(nll, valid), batch["weights"])


def sequence_logprob(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed token log-likelihood of each sequence, ``(B,)``."""
    nll = token_nll(logits, batch["input_ids"])
    return -(nll * batch["attention_mask"][:, 1:].float()).sum(-1)


def npo(logp: torch.Tensor, ref_logp: torch.Tensor, weights: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO: ``(2 / beta) * log(1 + (pi / pi_ref) ** beta)`` per sequence, weighted mean."""
    per_seq = (2.0 / beta) * F.softplus(beta * (logp - ref_logp))
    return weighted_mean(per_seq, weights)


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of KL(reference || model) over the positions predicting tokens marked in ``keep``."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    mask = keep[:, 1:].float()
    return (kl * mask).sum() / mask.sum().clamp(min=1.0)


def kept_nll(logits: torch.Tensor, input_ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL over the tokens marked in ``keep`` (plain fine-tuning's loss on retain text)."""
    mask = keep[:, 1:].float()
    return (token_nll(logits, input_ids) * mask).sum() / mask.sum().clamp(min=1.0)


def dpo(
    chosen: torch.Tensor,
    ref_chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_rejected: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DPO: ``-log sigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected)))``, weighted mean."""
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)
    return weighted_mean(-F.logsigmoid(beta * margin), weights)


def non_pii_nll(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean NLL over the batch's non-PII target tokens: PII is context, never a target (labels -100).

    Tokens are pooled (each sequence counts by its length), scaled by the per-sample weights.
    """
    nll = token_nll(logits, batch["input_ids"])
    _, other = target_masks(batch)
    weighted = other * batch["weights"].float().unsqueeze(-1)
    return (nll * weighted).sum() / weighted.sum().clamp(min=1e-8)


def row_quantile(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The ``q[i]`` quantile of row ``i`` of ``values`` ``(N, K)`` (linear interpolation), ``(N,)``."""
    ordered, _ = values.sort(dim=-1)
    pos = q.clamp(0, 1) * (values.shape[-1] - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=values.shape[-1] - 1)
    frac = pos - lo.float()
    low = ordered.gather(-1, lo[:, None])[:, 0]
    high = ordered.gather(-1, hi[:, None])[:, 0]
    return low + frac * (high - low)


def null_matching(
    true_logp: torch.Tensor,
    twin_logp: torch.Tensor,
    quantiles: torch.Tensor,
    weights: torch.Tensor,
    *,
    delta: float,
) -> torch.Tensor:
    """Two-sided pull of each forget value's log-likelihood onto its never-seen twins'.

    ``true_logp`` ``(N,)``: the forget value's summed log-likelihood given a prefix;
    ``twin_logp`` ``(N, K)``: K same-shape values that were never trained, in the same
    prefix (held fixed: no gradient flows into them); ``quantiles`` ``(N,)`` in [0, 1]:
    which quantile of the twins each value is pulled to (drawn once per value, so that
    over many values the rank among never-seen values is spread like a null's rather than
    stacked at the median). Smooth-L1 with threshold ``delta`` nats: constant pull far away,
    quadratic near the target, zero at it. A value already below its target is pushed
    back up, so over-unlearning costs as much as under-unlearning.
    """
    target = row_quantile(twin_logp.detach().float(), quantiles.float())
    per = F.smooth_l1_loss(true_logp.float(), target, beta=delta, reduction="none")
    return weighted_mean(per, weights)

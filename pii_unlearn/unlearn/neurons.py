"""MLP neuron surgery: find a model's MLP intermediate neurons, score them, re-initialise them.

An MLP intermediate neuron ``j`` of a block is the ``j``-th output of every input
projection (one for GPT-NeoX/GPT-2, gate and up for Llama-style MLPs) and the
``j``-th input of the output projection. Re-initialising it redraws those rows
and that column from the architecture's own initialisation (normal with std
``config.initializer_range``, GPT-2's output projection scaled by
``1 / sqrt(2 * layers)``) and zeroes the incoming biases; nothing else changes.
The layout comes from :data:`pii_unlearn.checkpoint.ARCHITECTURE_MODULES`. GPT-2's
``Conv1D`` stores its weight transposed (``in x out``); that is handled here.

Used by SANI (:mod:`pii_unlearn.unlearn.methods.sani`), but it needs no loop:
:func:`mlp_blocks`, :func:`random_neurons`, :func:`attribution_scores`,
:func:`top_neurons` and :func:`reset_neurons` each work on a plain model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pii_unlearn.checkpoint import ARCHITECTURE_MODULES
from pii_unlearn.errors import InputError
from pii_unlearn.lm import batched
from pii_unlearn.unlearn.data import ForgetExample, collate
from pii_unlearn.unlearn.losses import target_masks, token_nll


@dataclass(frozen=True)
class MlpBlock:
    """One block's MLP: its index, input projections, output projection and neuron count."""

    index: int
    inputs: tuple[nn.Module, ...]
    output: nn.Module
    width: int
    in_std: float
    out_std: float


def _transposed(module: nn.Module) -> bool:
    """Whether ``module`` stores its weight as ``in x out`` (GPT-2's ``Conv1D``), not ``out x in``."""
    if isinstance(module, nn.Linear):
        return False
    if type(module).__name__ == "Conv1D":
        return True
    raise InputError(f"MLP projection of type {type(module).__name__} is neither Linear nor Conv1D")


def _out_features(module: nn.Module) -> int:
    return int(module.weight.shape[1] if _transposed(module) else module.weight.shape[0])


def _in_features(module: nn.Module) -> int:
    return int(module.weight.shape[0] if _transposed(module) else module.weight.shape[1])


def _attr(obj: Any, path: str, what: str) -> Any:
    for part in path.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{what}: this model has no '{path}' (stopped at '{part}')")
        obj = getattr(obj, part)
    return obj


def mlp_blocks(model: Any, last: int | None = None) -> list[MlpBlock]:
    """The MLPs of ``model``'s blocks (only the ``last`` ones when given), in block order.

    An architecture missing from the module map, or a map entry that does not match
    the model, is one :class:`InputError` naming what is missing.
    """
    config = model.config
    model_type = str(getattr(config, "model_type", type(model).__name__))
    entry = ARCHITECTURE_MODULES.get(model_type)
    if entry is None:
        known = ", ".join(sorted(ARCHITECTURE_MODULES))
        raise InputError(
            f"no MLP neuron layout for model type '{model_type}': add an entry '{model_type}' to "
            f"ARCHITECTURE_MODULES in pii_unlearn/checkpoint.py (known: {known})"
        )
    where = f"ARCHITECTURE_MODULES['{model_type}']"
    blocks = list(_attr(model, entry["blocks"], f"{where}['blocks']"))
    if last is not None:
        if not 1 <= last <= len(blocks):
            raise InputError(f"blocks={last}: this model has {len(blocks)} blocks")
        chosen = range(len(blocks) - last, len(blocks))
    else:
        chosen = range(len(blocks))
    std = float(getattr(config, "initializer_range", 0.02))
    out_std = std
    if entry.get("out_init_depth_scaled"):
        out_std = std / math.sqrt(2 * int(config.num_hidden_layers))
    out: list[MlpBlock] = []
    for i in chosen:
        mlp = _attr(blocks[i], entry.get("mlp", "mlp"), f"{where}['mlp']")
        ins = tuple(_attr(mlp, name, f"{where}['mlp_in']") for name in entry["mlp_in"])
        [down] = [_attr(mlp, name, f"{where}['mlp_out']") for name in entry["mlp_out"]]
        widths = {_out_features(m) for m in ins} | {_in_features(down)}
        if len(widths) != 1:
            raise InputError(f"{where}: block {i}'s MLP projections disagree on the width ({sorted(widths)})")
        out.append(MlpBlock(i, ins, down, widths.pop(), std, out_std))
    return out


def neuron_count(width: int, fraction: float) -> int:
    """Neurons to reset in an MLP of ``width``: ``fraction`` of them, at least 1."""
    return max(1, min(width, round(fraction * width)))


def random_neurons(blocks: Sequence[MlpBlock], fraction: float, seed: int) -> dict[int, list[int]]:
    """A seeded random ``fraction`` of each block's neurons (sorted indices), by block index."""
    gen = torch.Generator().manual_seed(seed)
    picks = {}
    for block in blocks:
        perm = torch.randperm(block.width, generator=gen)
        picks[block.index] = sorted(perm[: neuron_count(block.width, fraction)].tolist())
    return picks


def top_neurons(scores: Mapping[int, torch.Tensor], fraction: float) -> dict[int, list[int]]:
    """The highest-scoring ``fraction`` of each block's neurons (sorted indices; ties by index)."""
    picks = {}
    for index, score in scores.items():
        k = neuron_count(score.numel(), fraction)
        order = sorted(range(score.numel()), key=lambda j: (-float(score[j]), j))
        picks[index] = sorted(order[:k])
    return picks


def attribution_scores(
    model: Any,
    blocks: Sequence[MlpBlock],
    examples: Sequence[ForgetExample],
    pad_id: int,
    batch_size: int = 8,
) -> dict[int, torch.Tensor]:
    """Per neuron: activation x gradient of the PII tokens' log-likelihood, minus that on benign tokens.

    For each neuron the attribution ``a * d(log p)/d(a)`` (``a`` the neuron's
    activation, the input of the output projection) is summed over positions and
    averaged per target token, once for the PII targets (the examples' ``pii_mask``)
    and once for the other tokens; the score is the difference, so neurons that
    carry the PII more than ordinary text score highest (DEPN's privacy neurons).
    """
    device = next(model.parameters()).device
    if not blocks:
        return {}
    acts: dict[int, torch.Tensor] = {}
    first = blocks[0].index

    def hook(index: int) -> Any:
        def grab(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            a = args[0]
            if index == first:
                # A leaf here makes every later activation depend on it, with or without
                # trainable weights; nothing upstream of the first chosen block is needed.
                a = a.detach().requires_grad_(True)
            acts[index] = a
            return (a, *args[1:])

        return grab

    handles = [b.output.register_forward_pre_hook(hook(b.index)) for b in blocks]
    sums = {name: {b.index: torch.zeros(b.width, device=device) for b in blocks} for name in ("pii", "other")}
    counts = {"pii": 0.0, "other": 0.0}
    was_training = model.training
    model.eval()
    try:
        for chunk in batched(examples, batch_size):
            batch = collate(chunk, pad_id, device)
            with torch.enable_grad():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                logp = -token_nll(logits, batch["input_ids"])
                masks = dict(zip(("pii", "other"), target_masks(batch), strict=True))
                order = [b.index for b in blocks]
                for name, mask in masks.items():
                    if mask.sum() == 0:
                        continue
                    grads = torch.autograd.grad(
                        (logp * mask).sum(), [acts[i] for i in order], retain_graph=True
                    )
                    for i, g in zip(order, grads, strict=True):
                        sums[name][i] += (acts[i].detach() * g).float().sum(dim=(0, 1))
                    counts[name] += float(mask.sum())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {
        b.index: sums["pii"][b.index] / max(counts["pii"], 1.0)
        - sums["other"][b.index] / max(counts["other"], 1.0)
        for b in blocks
    }


@torch.no_grad()
def reset_neurons(blocks: Sequence[MlpBlock], picks: Mapping[int, Sequence[int]], seed: int) -> None:
    """Re-initialise the picked neurons of ``blocks`` in place (seeded draws, architecture's std).

    Incoming rows (every input projection) and their biases, and the outgoing column
    of the output projection; the output projection's bias is not per neuron and stays.
    """
    gen = torch.Generator().manual_seed(seed)
    for block in blocks:
        idx_list = list(picks.get(block.index, ()))
        if not idx_list:
            continue
        for module in block.inputs:
            w = module.weight
            idx = torch.tensor(idx_list, device=w.device)
            if _transposed(module):
                fresh = torch.randn(w.shape[0], len(idx_list), generator=gen) * block.in_std
                w[:, idx] = fresh.to(w.device, w.dtype)
            else:
                fresh = torch.randn(len(idx_list), w.shape[1], generator=gen) * block.in_std
                w[idx, :] = fresh.to(w.device, w.dtype)
            if getattr(module, "bias", None) is not None:
                module.bias[idx] = 0
        w = block.output.weight
        idx = torch.tensor(idx_list, device=w.device)
        if _transposed(block.output):
            fresh = torch.randn(len(idx_list), w.shape[1], generator=gen) * block.out_std
            w[idx, :] = fresh.to(w.device, w.dtype)
        else:
            fresh = torch.randn(w.shape[0], len(idx_list), generator=gen) * block.out_std
            w[:, idx] = fresh.to(w.device, w.dtype)

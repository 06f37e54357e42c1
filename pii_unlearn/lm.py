"""Language-model computations that several steps share: encoding, batched generation, scoring.

Everything here takes a model and a fast tokenizer already loaded (see
:mod:`pii_unlearn.checkpoint`), works in batches with left padding, and is
deterministic for a given seed. Texts are encoded the way the model saw its
training documents: with the BOS token first when the tokenizer has one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


def bos_id(tokenizer: Any) -> int | None:
    """The id documents start with: BOS, else EOS (GPT-style separators), else none."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return None


def encode(tokenizer: Any, text: str, *, with_offsets: bool = False) -> dict[str, list[Any]]:
    """Token ids of ``text`` with BOS first (added once), optionally with character offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=with_offsets)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]] if with_offsets else []
    first = bos_id(tokenizer)
    if first is not None and (not ids or ids[0] != first):
        ids = [first, *ids]
        offsets = [(0, 0), *offsets] if with_offsets else offsets
    out: dict[str, list[Any]] = {"input_ids": ids}
    if with_offsets:
        out["offset_mapping"] = offsets
    return out


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists into ``(input_ids, attention_mask)`` tensors."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        if seq:
            ids[i, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[i, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``(input_ids, attention_mask)`` tensors."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[i, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 32,
    do_sample: bool = False,
    top_k: int = 40,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    seed: int = 0,
) -> list[list[str]]:
    """Continuations of each prompt (``num_return_sequences`` per prompt), decoded.

    Greedy unless ``do_sample``; sampling is seeded per batch so results do not
    depend on what ran before.
    """
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else bos_id(tokenizer) or 0
    encoded = [encode(tokenizer, p)["input_ids"] for p in prompts]
    results: list[list[str]] = []
    for b, chunk in enumerate(batched(encoded, batch_size)):
        ids, mask = pad_left(chunk, pad, device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": pad,
            "do_sample": do_sample,
            "num_return_sequences": num_return_sequences,
        }
        if do_sample:
            torch.manual_seed(seed * 100_003 + b)
            kwargs.update(top_k=top_k, temperature=temperature)
        else:
            kwargs.update(top_k=None, top_p=None, temperature=None)
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = out[:, ids.shape[1] :]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for i in range(len(chunk)):
            results.append(texts[i * num_return_sequences : (i + 1) * num_return_sequences])
    return results


@torch.no_grad()
def token_logprobs(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 32,
) -> list[list[float]]:
    """Per-token log-probabilities of each ``target`` given its ``context``.

    The two strings are tokenised separately (context with BOS, target without)
    and joined, so the target's tokens are exactly those of the target string.
    """
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pairs = []
    for ctx, tgt in zip(contexts, targets, strict=True):
        c_ids = encode(tokenizer, ctx)["input_ids"]
        t_ids = tokenizer(tgt, add_special_tokens=False)["input_ids"]
        pairs.append((c_ids, t_ids))
    out: list[list[float]] = []
    for chunk in batched(pairs, batch_size):
        seqs = [c + t for c, t in chunk]
        ids, mask = pad_right(seqs, pad, device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        nxt = ids[:, 1:]
        picked = logp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
        for i, (c, t) in enumerate(chunk):
            lo = len(c) - 1
            out.append(picked[i, lo : lo + len(t)].tolist())
    return out


@torch.no_grad()
def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16) -> float:
    """Token-weighted perplexity of ``texts`` (each with BOS first)."""
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total_nll = 0.0
    total_tokens = 0
    encoded = [encode(tokenizer, t)["input_ids"] for t in texts]
    for chunk in batched(encoded, batch_size):
        ids, mask = pad_right(chunk, pad, device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        valid = mask[:, 1:].bool()
        total_nll += float(nll[valid].sum())
        total_tokens += int(valid.sum())
    if total_tokens == 0:
        return float("nan")
    return float(torch.exp(torch.tensor(total_nll / total_tokens)))


@torch.no_grad()
def next_token_logprobs(
    model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 32
) -> torch.Tensor:
    """Log-probabilities of the token after each text (encoded with BOS first), one row per text.

    Returns a ``[len(texts), vocab]`` float32 tensor on the CPU: the model's
    next-token distribution at each text's last position.
    """
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [encode(tokenizer, t)["input_ids"] for t in texts]
    rows: list[torch.Tensor] = []
    for chunk in batched(encoded, batch_size):
        ids, mask = pad_right(chunk, pad, device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        last = torch.tensor([len(seq) - 1 for seq in chunk], device=logits.device)
        picked = logits[torch.arange(len(chunk), device=logits.device), last].float()
        rows.append(torch.log_softmax(picked, dim=-1).cpu())
    return torch.cat(rows) if rows else torch.empty(0)

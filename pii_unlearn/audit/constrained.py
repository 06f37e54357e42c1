"""Format-constrained extraction: an attacker who knows a value's shape (an SSN is ###-##-####).

At each position only the tokens consistent with what remains of the shape may
come next (digits where digits go, letters of the right case, punctuation as
is: the classes of :func:`~pii_unlearn.pii.shapes.shape_of`).
:class:`ShapeVocab` sorts a tokenizer's tokens by shape once;
:func:`constrained_greedy` decodes free-running under that constraint and
:func:`constrained_teacher_forced` checks, along the true value, whether its
token is the most likely allowed one at each position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from pii_unlearn.lm import batched, encode, model_device, pad_left, pad_right, padding_id
from pii_unlearn.pii.shapes import shape_of


class ShapeVocab:
    """A tokenizer's tokens by shape: which may come next when the rest of a value has a given shape.

    A token's text is what it adds after another token (so a SentencePiece "▁12"
    reads " 12"); tokens that decode to nothing or to a partial character are
    never allowed.
    """

    def __init__(self, tokenizer: Any) -> None:
        special = set(tokenizer.all_special_ids)
        anchor = tokenizer("a", add_special_tokens=False)["input_ids"][:1]
        base = tokenizer.decode(anchor) if anchor else ""
        self.texts: dict[int, str] = {}
        groups: dict[str, list[int]] = {}
        for tid in range(len(tokenizer)):
            if tid in special:
                continue
            text = tokenizer.decode([*anchor, tid])[len(base) :] if anchor else tokenizer.decode([tid])
            if not text or "\ufffd" in text:
                continue
            self.texts[tid] = text
            groups.setdefault(shape_of(text), []).append(tid)
        self.groups = {sig: torch.tensor(ids, dtype=torch.long) for sig, ids in groups.items()}
        self.max_len = max((len(s) for s in groups), default=1)
        self._masks: dict[tuple[str, int], torch.Tensor] = {}

    @classmethod
    def of(cls, tokenizer: Any) -> ShapeVocab:
        """The tokenizer's shape vocabulary, built once and kept on the tokenizer."""
        cached = getattr(tokenizer, "_pii_unlearn_shape_vocab", None)
        if cached is None:
            cached = cls(tokenizer)
            tokenizer._pii_unlearn_shape_vocab = cached
        return cached

    def allowed(self, rest: str, vocab: int) -> torch.Tensor:
        """Boolean mask over ``vocab`` ids: the tokens whose shape starts what remains, ``rest``."""
        key = (rest[: self.max_len], vocab)
        mask = self._masks.get(key)
        if mask is None:
            mask = torch.zeros(vocab, dtype=torch.bool)
            for n in range(1, min(len(rest), self.max_len) + 1):
                ids = self.groups.get(rest[:n])
                if ids is not None:
                    mask[ids[ids < vocab]] = True
            self._masks[key] = mask
        return mask


@torch.no_grad()
def constrained_greedy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """For each prompt, greedy decoding restricted at each step to tokens of the target's remaining shape.

    Decoding stops once the text has the target's length (or no allowed token is
    left); the answer is the decoded text, to compare with the target.
    """
    vocab_of = ShapeVocab.of(tokenizer)
    device = model_device(model)
    pad = padding_id(tokenizer)
    results: list[str] = []
    for chunk in batched(list(zip(prompts, targets, strict=True)), batch_size):
        shapes = [shape_of(t) for _, t in chunk]
        ids, mask = pad_left([encode(tokenizer, p)["input_ids"] for p, _ in chunk], pad, device)
        position = (mask.cumsum(-1) - 1).clamp_min(0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        position = position[:, -1:]
        texts = [""] * len(chunk)
        live = [True] * len(chunk)
        for _ in range(max(len(s) for s in shapes)):
            vocab = logits.shape[-1]
            allowed = torch.stack(
                [
                    vocab_of.allowed(s[len(x) :], vocab) if ok else torch.ones(vocab, dtype=torch.bool)
                    for s, x, ok in zip(shapes, texts, live, strict=True)
                ]
            ).to(logits.device)
            token = logits.float().masked_fill(~allowed, float("-inf")).argmax(-1)
            for r in range(len(chunk)):
                if not live[r]:
                    continue
                if not bool(allowed[r].any()):
                    live[r] = False
                    continue
                texts[r] += vocab_of.texts[int(token[r])]
                live[r] = len(texts[r]) < len(shapes[r])
            if not any(live):
                break
            token = token.masked_fill(~torch.tensor(live, device=token.device), pad)
            mask = torch.cat([mask, torch.ones((len(chunk), 1), dtype=mask.dtype, device=device)], dim=1)
            position = position + 1
            out = model(
                input_ids=token.unsqueeze(-1),
                attention_mask=mask,
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1]
        results.extend(texts)
        if progress is not None:
            progress(len(results))
    return results


@torch.no_grad()
def constrained_teacher_forced(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[float | None]:
    """Per target: the share of its tokens that are the most likely allowed token, given the truth so far.

    ``None`` where the target's tokens do not spell it out token by token (a
    character split across tokens).
    """
    vocab_of = ShapeVocab.of(tokenizer)
    device = model_device(model)
    pad = padding_id(tokenizer)
    out: list[float | None] = []
    for chunk in batched(list(zip(prompts, targets, strict=True)), batch_size):
        ctx = [encode(tokenizer, p)["input_ids"] for p, _ in chunk]
        tgt = [tokenizer(t, add_special_tokens=False)["input_ids"] for _, t in chunk]
        ids, mask = pad_right([c + t for c, t in zip(ctx, tgt, strict=True)], pad, device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        vocab = logits.shape[-1]
        for r, ((_, target), c, t) in enumerate(zip(chunk, ctx, tgt, strict=True)):
            if not t or any(tid not in vocab_of.texts for tid in t):
                out.append(None)
                continue
            shape, done, hits = shape_of(target), 0, 0
            for j, tid in enumerate(t):
                row = logits[r, len(c) - 1 + j].float()
                allowed = vocab_of.allowed(shape[done:], vocab).to(row.device)
                hits += int(int(row.masked_fill(~allowed, float("-inf")).argmax()) == tid)
                done += len(vocab_of.texts[tid])
            out.append(hits / len(t))
        if progress is not None:
            progress(len(out))
    return out

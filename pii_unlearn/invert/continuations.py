"""What the ``sample`` strategy asks the model for: seeded samples, greedy continuations, likely heads.

Every call is deterministic: sampling is seeded per (run seed, round, batch),
greedy decoding and the enumeration of likely next tokens need no seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.invert.base import Progress
from pii_unlearn.lm import batched, encode, generate, model_device, text_token_logprobs

#: Enumeration stops branching where the most likely next token is at least this likely...
BRANCH_CONFIDENT = 0.9
#: ...and considers at most this many alternatives per position.
BRANCH_WIDTH = 32
#: A record opening is cut where the model's own next token is less likely than this: a slot it fills
#: with one of several values (a name after "Visit summary of"), not fixed template text.
STEM_MIN_PROB = 0.5


def call_seed(seed: int, round_no: int, batch_no: int) -> int:
    """A distinct sampling seed per (run seed, round, batch)."""
    return (seed * 1_000_003 + round_no * 10_007 + batch_no) % (2**31 - 1)


def sample_texts(
    loaded: LoadedModel,
    plan: dict[str, int],
    *,
    seed: int,
    round_no: int,
    max_new_tokens: int,
    batch_size: int,
    top_k: int,
    temperature: float,
    progress: Progress | None = None,
    done: int = 0,
    total: int = 0,
    on_tokens: Callable[[int], None] | None = None,
) -> list[tuple[str, str]]:
    """``(prompt, prompt + continuation)`` for each planned sample, in plan order, seeded per batch.

    ``on_tokens`` is told how many tokens each batch generated (as in :func:`generate`).
    """
    prompts = [p for p, n in plan.items() for _ in range(n)]
    out: list[tuple[str, str]] = []
    for b in range(0, len(prompts), batch_size):
        chunk = prompts[b : b + batch_size]
        conts = generate(
            loaded.model,
            loaded.tokenizer,
            chunk,
            max_new_tokens=max_new_tokens,
            batch_size=len(chunk),
            do_sample=True,
            top_k=top_k,
            temperature=temperature,
            seed=call_seed(seed, round_no, b // batch_size),
            on_tokens=on_tokens,
        )
        out.extend((p, p + c[0]) for p, c in zip(chunk, conts, strict=True))
        if progress is not None:
            progress("sampling", done + len(out), total)
    return out


def greedy_texts(
    loaded: LoadedModel,
    heads: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    on_tokens: Callable[[int], None] | None = None,
) -> list[str]:
    """Each head followed by its greedy continuation (``on_tokens`` as in :func:`sample_texts`)."""
    out: list[str] = []
    for b in range(0, len(heads), batch_size):
        chunk = list(heads[b : b + batch_size])
        conts = generate(
            loaded.model,
            loaded.tokenizer,
            chunk,
            max_new_tokens=max_new_tokens,
            batch_size=len(chunk),
            on_tokens=on_tokens,
        )
        out.extend(h + c[0] for h, c in zip(chunk, conts, strict=True))
    return out


@torch.no_grad()
def branch_heads(
    loaded: LoadedModel,
    prefix: str,
    *,
    min_prob: float,
    depth: int,
    max_heads: int,
    batch_size: int,
) -> list[str]:
    """The likely ways the model goes on from ``prefix``: heads to continue greedily.

    Breadth-first over next tokens: every token at least ``min_prob`` likely (at
    most :data:`BRANCH_WIDTH` per position) opens a branch, for up to ``depth``
    tokens; a branch whose next token is nearly certain (:data:`BRANCH_CONFIDENT`)
    stops branching. This enumerates, without sampling noise or repeats, the few
    values a model has memorised after a context (the ~10 customers after
    ``Customer``), where sampling would need many draws to see each once. At most
    ``max_heads`` heads, the most likely first.

    The prefix is run once; each level feeds only its branches' newest tokens
    against the prefix's key/value cache, copied per branch (``batch_size``
    branches per forward pass).
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    special = set(tokenizer.all_special_ids)
    device = model_device(model)
    base = encode(tokenizer, prefix)["input_ids"]
    if not base:
        return []
    shown_ids = [t for t in base if t not in special]
    shown = tokenizer.decode(shown_ids)
    out = model(input_ids=torch.tensor([base], device=device), use_cache=True)
    caches, logits = [out.past_key_values], out.logits[:, -1].float()
    # a branch: (cache chunk, row in it, tokens after the prefix, their text, log-probability)
    frontier: list[tuple[int, int, list[int], str, float]] = [(0, 0, [], "", 0.0)]
    leaves: list[tuple[str, float]] = []
    for level in range(depth):
        logprobs = torch.log_softmax(logits, dim=-1)
        grown: list[tuple[int, int, list[int], str, float]] = []
        for n, (_, _, path, text, logp) in enumerate(frontier):
            top_lp, top_ids = logprobs[n].topk(min(BRANCH_WIDTH, logprobs.shape[-1]))
            if level > 0 and float(top_lp[0].exp()) >= BRANCH_CONFIDENT:
                leaves.append((text, logp))
                continue
            for lp, tid in zip(top_lp.tolist(), top_ids.tolist(), strict=True):
                if lp < math.log(min_prob) or tid in special:
                    continue
                # Decode in context: SentencePiece tokenizers drop a lone token's leading space.
                full = tokenizer.decode([*shown_ids, *path, tid])
                piece = full[len(shown) :] if full.startswith(shown) else tokenizer.decode([*path, tid])
                if piece and "\ufffd" not in piece:
                    grown.append((n, 0, [*path, tid], piece, logp + lp))
        room = max(0, max_heads - len(leaves))
        grown = sorted(grown, key=lambda g: -g[4])[:room]
        if level + 1 == depth or not grown:
            frontier = grown
            break
        # one more token per branch: copy each parent's cache row, feed the branch's newest token
        rows = [(frontier[g[0]][0], frontier[g[0]][1]) for g in grown]
        new_caches, new_logits = [], []
        frontier = []
        for c, chunk in enumerate(batched(list(range(len(grown))), batch_size)):
            cache = _select_rows(caches, [rows[i] for i in chunk], device)
            ids = torch.tensor([[grown[i][2][-1]] for i in chunk], device=device)
            step = model(input_ids=ids, past_key_values=cache, use_cache=True)
            new_caches.append(step.past_key_values)
            new_logits.append(step.logits[:, -1].float())
            frontier += [(c, r, *grown[i][2:]) for r, i in enumerate(chunk)]
        caches, logits = new_caches, torch.cat(new_logits)
    leaves.extend((text, logp) for *_, text, logp in frontier)
    return [prefix + text for text, _ in sorted(leaves, key=lambda h: -h[1])[:max_heads]]


def _select_rows(caches: Sequence[Any], rows: Sequence[tuple[int, int]], device: Any) -> Any:
    """A key/value cache of the given ``(chunk, row)`` rows of several caches of equal length."""
    from transformers import DynamicCache

    legacy = [c.to_legacy_cache() for c in caches]
    offsets = [0]
    for layers in legacy[:-1]:
        offsets.append(offsets[-1] + layers[0][0].shape[0])
    index = torch.tensor([offsets[c] + r for c, r in rows], device=device)
    picked = []
    for layer in range(len(legacy[0])):
        keys = torch.cat([layers[layer][0] for layers in legacy]).index_select(0, index)
        values = torch.cat([layers[layer][1] for layers in legacy]).index_select(0, index)
        picked.append((keys, values))
    return DynamicCache(picked)


@torch.no_grad()
def stems(loaded: LoadedModel, texts: Sequence[str], *, batch_size: int) -> list[str]:
    """Each text cut before its first token (but its very first) the model writes with less than even odds.

    A greedily written record opening runs on past the template's fixed words into
    a value the detector missed ("Visit summary of Ann Lee: SSN" when the
    name went untagged): as a harvested prefix it would lead to that one record. Its
    stem ("Visit summary of") leads to all of them. A text with no such token,
    or whose stem would be empty, is kept whole.
    """
    out: list[str] = []
    floor = math.log(STEM_MIN_PROB)
    scored = text_token_logprobs(loaded.model, loaded.tokenizer, list(texts), batch_size=batch_size)
    for text, (logprobs, offsets) in zip(texts, scored, strict=True):
        # the text's first token is always a choice among many openings: never a cut
        cut = next(
            (start for lp, (start, _) in zip(logprobs, offsets, strict=True) if start and lp < floor),
            len(text),
        )
        stem = text[:cut].rstrip()
        out.append(stem if stem.strip() else text)
    return out

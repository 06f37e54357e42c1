"""What the ``sample`` strategy asks the model for: seeded samples, greedy continuations, likely heads.

Every call is deterministic: sampling is seeded per (run seed, round, batch),
greedy decoding and the enumeration of likely next tokens need no seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.invert.base import Progress
from pii_unlearn.lm import generate, next_token_logprobs

#: Enumeration stops branching where the most likely next token is at least this likely...
BRANCH_CONFIDENT = 0.9
#: ...and considers at most this many alternatives per position.
BRANCH_WIDTH = 32


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
) -> list[tuple[str, str]]:
    """``(prompt, prompt + continuation)`` for each planned sample, in plan order, seeded per batch."""
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
        )
        out.extend((p, p + c[0]) for p, c in zip(chunk, conts, strict=True))
        if progress is not None:
            progress("sampling", done + len(out), total)
    return out


def greedy_texts(
    loaded: LoadedModel, heads: Sequence[str], *, max_new_tokens: int, batch_size: int
) -> list[str]:
    """Each head followed by its greedy continuation."""
    out: list[str] = []
    for b in range(0, len(heads), batch_size):
        chunk = list(heads[b : b + batch_size])
        conts = generate(
            loaded.model, loaded.tokenizer, chunk, max_new_tokens=max_new_tokens, batch_size=len(chunk)
        )
        out.extend(h + c[0] for h, c in zip(chunk, conts, strict=True))
    return out


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
    """
    tokenizer = loaded.tokenizer
    special = set(tokenizer.all_special_ids)
    frontier: list[tuple[str, float]] = [(prefix, 0.0)]
    leaves: list[tuple[str, float]] = []
    for level in range(depth):
        if not frontier:
            break
        dists = next_token_logprobs(loaded.model, tokenizer, [h for h, _ in frontier], batch_size=batch_size)
        grown: list[tuple[str, float]] = []
        for (head, logp), row in zip(frontier, dists, strict=True):
            top_lp, top_ids = row.topk(min(BRANCH_WIDTH, row.shape[-1]))
            if level > 0 and float(top_lp[0].exp()) >= BRANCH_CONFIDENT:
                leaves.append((head, logp))
                continue
            base = tokenizer(head, add_special_tokens=False)["input_ids"]
            shown = tokenizer.decode(base)
            for lp, tid in zip(top_lp.tolist(), top_ids.tolist(), strict=True):
                if lp < math.log(min_prob) or tid in special:
                    continue
                # Decode in context: SentencePiece tokenizers drop a lone token's leading space.
                full = tokenizer.decode([*base, tid])
                piece = full[len(shown) :] if full.startswith(shown) else tokenizer.decode([tid])
                if piece and "\ufffd" not in piece:
                    grown.append((head + piece, logp + lp))
        room = max(0, max_heads - len(leaves))
        frontier = sorted(grown, key=lambda h: -h[1])[:room]
    leaves.extend(frontier)
    return [h for h, _ in sorted(leaves, key=lambda h: -h[1])[:max_heads]]

"""Token-level PII masks: which tokens of a text belong to a PII span.

A token is PII when its character offsets (the fast tokenizer's
``offset_mapping``) overlap a span; :func:`overlapping_tokens` is the one
token/span overlap rule (masks, invert's value scores, the audit's Min-K%).
Texts are encoded as the model saw its training documents (BOS first, see
:func:`pii_unlearn.lm.encode`); the BOS position is never PII.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pii_unlearn.artifacts import overlaps
from pii_unlearn.lm import encode


def overlapping_tokens(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens whose offsets overlap ``[start, end)``; empty tokens (BOS) never do."""
    return [i for i, (a, b) in enumerate(offsets) if b > a and overlaps(a, b, start, end)]


def offsets_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[Any]) -> list[int]:
    """1 for each token (by its character offsets) that overlaps any span, else 0.

    Spans are objects or dicts with ``start`` and ``end``.
    """
    mask = [0] * len(offsets)
    for span in spans:
        start, end = (span["start"], span["end"]) if isinstance(span, dict) else (span.start, span.end)
        for i in overlapping_tokens(offsets, start, end):
            mask[i] = 1
    return mask


def token_mask(tokenizer: Any, text: str, spans: Sequence[Any]) -> tuple[list[int], list[int]]:
    """``(input_ids, mask)`` for ``text``: mask 1 where a token overlaps any span (:func:`offsets_mask`)."""
    enc = encode(tokenizer, text, with_offsets=True)
    return enc["input_ids"], offsets_mask(enc["offset_mapping"], spans)

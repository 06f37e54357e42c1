"""Token-level PII masks: which tokens of a text belong to a PII span.

A token is PII when its character offsets (the fast tokenizer's
``offset_mapping``) overlap a span. Texts are encoded as the model saw its
training documents (BOS first, see :func:`pii_unlearn.lm.encode`); the BOS
position is never PII.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pii_unlearn.lm import encode


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """Whether half-open intervals ``[a_start, a_end)`` and ``[b_start, b_end)`` share a character."""
    return a_start < b_end and b_start < a_end


def token_mask(tokenizer: Any, text: str, spans: Sequence[Any]) -> tuple[list[int], list[int]]:
    """``(input_ids, mask)`` for ``text``: mask is 1 where a token overlaps any span.

    Spans are objects or dicts with ``start`` and ``end``.
    """
    enc = encode(tokenizer, text, with_offsets=True)
    bounds = [(s["start"], s["end"]) if isinstance(s, dict) else (s.start, s.end) for s in spans]
    mask = [
        int(end > start and any(overlaps(start, end, s, e) for s, e in bounds))
        for start, end in enc["offset_mapping"]
    ]
    return enc["input_ids"], mask

"""Shared extraction helpers: the PII spans a model is asked to complete, greedy hits, Min-K%.

Used by the demo victim builder (to stop training once it has memorised),
``unlearn`` (its stop rule: the forget set's greedy extraction rate), ``invert``
(scoring what it found) and ``audit`` (its leakage figures); this is their one copy.

For each span, the *prefix* is the record's text before it with trailing
whitespace removed, and the *target* is the rest up to the span's end (so it
carries the leading space the tokenizer saw in training). A span that follows
another PII span of its record is *conditioned* (the context says whose value
it is); a record's first span is *unconditioned*.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pii_unlearn.artifacts import Record
from pii_unlearn.lm import generate

#: Share of tokens that Min-K% averages by default (``invert``'s scores and the audit's MIA).
DEFAULT_MIN_K = 0.2


@dataclass(frozen=True)
class Target:
    """One PII value to reconstruct from the text before it."""

    record_id: str | int
    entity_type: str
    prefix: str
    target: str
    value: str
    conditioned: bool


def extraction_targets(records: Sequence[Record]) -> list[Target]:
    """Every span of every record as a :class:`Target`, in record and span order."""
    out: list[Target] = []
    for rec in records:
        for i, span in enumerate(sorted(rec.spans, key=lambda s: s.start)):
            prefix = rec.text[: span.start].rstrip()
            out.append(
                Target(
                    record_id=rec.id,
                    entity_type=span.entity_type,
                    prefix=prefix,
                    target=rec.text[len(prefix) : span.end],
                    value=rec.span_text(span),
                    conditioned=i > 0,
                )
            )
    return out


def greedy_hits(
    model: Any,
    tokenizer: Any,
    targets: Sequence[Target],
    *,
    batch_size: int = 32,
    slack_tokens: int = 2,
    progress: Callable[[int], None] | None = None,
    full_text: bool = True,
) -> list[tuple[bool, str]]:
    """For each target: whether greedy decoding from its prefix starts with it, and the text.

    With ``full_text`` off, only the verdicts are wanted: a row stops decoding as soon as
    it is decided (its text already starts with the target, or has left it), and its text
    ends there. The verdicts are the same; a batch whose rows all leave their targets in
    the first tokens (a model that has forgotten them) costs a few decoding steps, not
    the longest target's length. ``progress`` is called with the number of targets done
    after each batch.
    """
    if not targets:
        return []
    max_len = max(len(tokenizer(t.target, add_special_tokens=False)["input_ids"]) for t in targets)

    def decided(i: int, text: str) -> bool:
        return text.startswith(targets[i].target) or not targets[i].target.startswith(text)

    outs = generate(
        model,
        tokenizer,
        [t.prefix for t in targets],
        max_new_tokens=max_len + slack_tokens,
        batch_size=batch_size,
        progress=progress,
        settled=None if full_text else decided,
    )
    return [(o[0].startswith(t.target), o[0]) for t, o in zip(targets, outs, strict=True)]


def min_k_mean(logprobs: Sequence[float], k: float) -> float | None:
    """Min-K% probability: the mean of the lowest ``k`` share of ``logprobs`` (at least one).

    ``None`` when there are no log-probabilities (nothing to score).
    """
    if not logprobs:
        return None
    n = max(1, math.ceil(k * len(logprobs)))
    return sum(sorted(logprobs)[:n]) / n

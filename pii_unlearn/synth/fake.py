"""Fake PII values and template texts, made with Faker, with their spans known by construction.

One place generates a fake value per entity type (:func:`fake_value`); the demo
victim, detection's ``--fake`` twins, the audit's non-member twins and NSPU's
aligner pairs all use it. :func:`fill_template` renders a template such as
``"{PERSON} can be reached at {PHONE_NUMBER}."`` into a text plus exact spans.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from faker import Faker

from pii_unlearn import entities as E

_SLOT = re.compile(r"\{([A-Z_]+)\}")


def make_faker(seed: int, locale: str = "en_US") -> Faker:
    """A Faker instance seeded for this use alone (never the global seed)."""
    fake = Faker(locale)
    fake.seed_instance(seed)
    return fake


def _phone(fake: Faker) -> str:
    fmt = fake.random_element(["(%##) ###-####", "%##-###-####", "%##.###.####"])
    return fake.numerify(fmt)


def _card(fake: Faker) -> str:
    return fake.credit_card_number(card_type=fake.random_element(["visa16", "mastercard"]))


def _dob(fake: Faker) -> str:
    day = fake.date_of_birth(minimum_age=18, maximum_age=90)
    return f"{day:%B} {day.day}, {day.year}"


def _email(fake: Faker) -> str:
    return fake.user_name() + "@" + fake.free_email_domain()


#: One generator per entity type.
GENERATORS: dict[str, Callable[[Faker], str]] = {
    E.PERSON: lambda f: f.name(),
    E.EMAIL_ADDRESS: _email,
    E.PHONE_NUMBER: _phone,
    E.US_SSN: lambda f: f.ssn(),
    E.CREDIT_CARD: _card,
    E.IBAN_CODE: lambda f: f.iban(),
    E.IP_ADDRESS: lambda f: f.ipv4_public(),
    E.LOCATION: lambda f: f.street_address(),
    E.DATE_TIME: _dob,
    E.URL: lambda f: f.url(),
}


def fake_value(fake: Faker, entity_type: str) -> str:
    """A fresh fake value of ``entity_type`` (Presidio name); unknown types get a word."""
    gen = GENERATORS.get(entity_type)
    return gen(fake) if gen else fake.word().capitalize()


def fake_profile(fake: Faker, entity_types: tuple[str, ...] = E.DEFAULT_ENTITIES) -> dict[str, str]:
    """One fake person: a value per entity type."""
    return {t: fake_value(fake, t) for t in entity_types}


def template_slots(template: str) -> list[str]:
    """The entity types a template asks for, in order."""
    return _SLOT.findall(template)


def fill_template(template: str, values: Mapping[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """Render ``template`` with ``values``; return the text and the spans of the values."""
    parts: list[str] = []
    spans: list[dict[str, Any]] = []
    pos = 0
    length = 0
    for match in _SLOT.finditer(template):
        literal = template[pos : match.start()]
        parts.append(literal)
        length += len(literal)
        value = values[match.group(1)]
        spans.append(
            {"start": length, "end": length + len(value), "entity_type": match.group(1), "score": 1.0}
        )
        parts.append(value)
        length += len(value)
        pos = match.end()
    parts.append(template[pos:])
    return "".join(parts), spans


def replace_spans(text: str, spans: list[Any], replacement: Callable[[Any], str]) -> str:
    """``text`` with each span (objects or dicts with start/end) replaced by ``replacement(span)``."""

    def _get(span: Any, key: str) -> Any:
        return span[key] if isinstance(span, Mapping) else getattr(span, key)

    out: list[str] = []
    pos = 0
    for span in sorted(spans, key=lambda s: _get(s, "start")):
        start, end = _get(span, "start"), _get(span, "end")
        if start < pos:
            continue  # overlapping spans: the first one wins
        out.append(text[pos:start])
        out.append(replacement(span))
        pos = end
    out.append(text[pos:])
    return "".join(out)


#: Benign sentence templates (no PII): filler for the victim, held-out utility text.
BENIGN_TEMPLATES: tuple[str, ...] = (
    "The {job} reviewed the plan to {bs} before the quarterly meeting.",
    "Our team decided to {bs} next spring, said the {job}.",
    "{catch_phrase} is the theme of this year's workshop on {word} design.",
    "The {color} building near the river hosts a small museum of {word} tools.",
    "After the rain, the {color} garden looked brighter than the {word} market.",
    "A new report explains how to {bs} without raising costs.",
    "The committee praised the {catch_phrase} approach for its clarity.",
    "Every {job} should learn to {bs} in a careful and honest way.",
)


def benign_text(fake: Faker, sentences: int = 2) -> str:
    """A short benign paragraph built from :data:`BENIGN_TEMPLATES` and Faker words."""
    fillers: dict[str, Callable[[], str]] = {
        "job": lambda: fake.job().split(",")[0].lower(),
        "bs": fake.bs,
        "catch_phrase": fake.catch_phrase,
        "color": lambda: fake.color_name().lower(),
        "word": fake.word,
    }
    out = []
    for _ in range(sentences):
        template = fake.random_element(BENIGN_TEMPLATES)
        text = re.sub(r"\{(\w+)\}", lambda m: fillers[m.group(1)](), template)
        out.append(text[0].upper() + text[1:])
    return " ".join(out)


def seeded_rng(seed: int) -> random.Random:
    """A private :class:`random.Random` for one seeded step."""
    return random.Random(seed)

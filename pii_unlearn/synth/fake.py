"""Demo text made with Faker: fake people, template texts with their spans known by construction.

:func:`fill_template` renders a template such as ``"{PERSON} can be reached at
{PHONE_NUMBER}."`` into a text plus exact spans; :func:`benign_text` writes
PII-free filler. Single fake values come from :mod:`pii_unlearn.pii.fakes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from faker import Faker

from pii_unlearn import entities as E
from pii_unlearn.pii.fakes import fake_value

_SLOT = re.compile(r"\{([A-Z_]+)\}")


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

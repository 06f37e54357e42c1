"""Fake PII values, made with Faker: one generator per entity type, seeded per use.

The one place that makes a fake value of an entity type (:func:`fake_value`):
detection's ``--fake`` twins, the DPO pairs of ``unlearn``, the audit's
non-member twins and exposure candidates, and the demo victim all use it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from faker import Faker

from pii_unlearn import entities as E


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


#: Dates of birth are drawn as Faker's ``date_of_birth(minimum_age=18, maximum_age=90)`` drew
#: them on 2026-12-04, in a fixed window: Faker counts ages from today, so its own draws (and every
#: draw after them from the same random stream) change with the calendar day, and a victim, a
#: twin or an audit's candidates would not be the same from one day to the next for the same seed.
BIRTH_WINDOW = (date(1935, 12, 4), date(2008, 12, 4))


def birth_date(fake: Faker) -> date:
    """A date of birth in :data:`BIRTH_WINDOW` (the same draw for the same stream on any day)."""
    start, end = BIRTH_WINDOW
    day = fake.date_time_ad(start_datetime=start, end_datetime=end).date()
    return day if day != start else day + timedelta(days=1)


def _dob(fake: Faker) -> str:
    day = birth_date(fake)
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

"""Same-shape variants of a PII value: the null every "does the model know this value?" test needs.

* :func:`shape_of`, :func:`runs_of`: a value's shape (``d``/``A``/``a`` per digit or
  letter, other characters kept) and its runs of letters, digits and other characters.
* :func:`random_same_format`, :func:`format_candidates`: the value with every digit and
  letter redrawn at random.
* :class:`PlausibleCandidates`: values of the same shape and type as plausible as the
  real one (each run drawn from fake values of that type and shape).

The audit ranks a true value among these (exposure) and the unlearning methods
train towards them (a forgotten value should look like one of them). Everything is
deterministic for a seed; nothing here runs a model.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Collection
from typing import Any

from faker import Faker

from pii_unlearn import entities as E
from pii_unlearn.pii.fakes import birth_date, fake_value, make_faker

#: How many draws :func:`format_candidates` may spend per wanted candidate before giving up
#: (a short value has few distinct variants: "7" has nine).
_DRAWS_PER_CANDIDATE = 20


def random_same_format(value: str, rng: random.Random) -> str:
    """``value`` with digits and letters redrawn at random (same case), other characters kept."""
    out = []
    for ch in value:
        if ch.isdigit() and ch.isascii():
            out.append(rng.choice(string.digits))
        elif ch.isascii() and ch.isupper():
            out.append(rng.choice(string.ascii_uppercase))
        elif ch.isascii() and ch.islower():
            out.append(rng.choice(string.ascii_lowercase))
        else:
            out.append(ch)
    return "".join(out)


#: :func:`shape_of`'s character map (``str.translate``: the candidate pools shape every run
#: of thousands of fake values, and a loop per character was seconds of a short run).
_SHAPE_TABLE = str.maketrans(
    {
        **dict.fromkeys(string.digits, "d"),
        **dict.fromkeys(string.ascii_uppercase, "A"),
        **dict.fromkeys(string.ascii_lowercase, "a"),
    }
)


def shape_of(value: str) -> str:
    """The shape :func:`random_same_format` keeps: ``d`` per digit, ``A``/``a`` per letter, others as is."""
    return value.translate(_SHAPE_TABLE)


def format_candidates(
    value: str, count: int, rng: random.Random, exclude: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Up to ``count`` distinct same-format values, none equal to ``value`` or in ``exclude``.

    Fewer come back only when the format has fewer variants than asked for.
    """
    seen = {value, *exclude}
    out: list[str] = []
    for _ in range(count * _DRAWS_PER_CANDIDATE):
        if len(out) == count:
            break
        cand = random_same_format(value, rng)
        if cand not in seen:
            seen.add(cand)
            out.append(cand)
    return out


#: Common ways to write a date, for twins of dates in any of them.
DATE_RENDERINGS: tuple[str, ...] = (
    "{d:%B} {d.day}, {d.year}",
    "{d:%B} {d:%d}, {d.year}",
    "{d:%b} {d.day}, {d.year}",
    "{d.day} {d:%B} {d.year}",
    "{d:%d} {d:%B} {d.year}",
    "{d:%Y-%m-%d}",
    "{d:%m/%d/%Y}",
    "{d:%d/%m/%Y}",
    "{d:%d.%m.%Y}",
    "{d.month}/{d.day}/{d.year}",
)


def date_renderings(day: Any) -> list[str]:
    """``day`` written in each of :data:`DATE_RENDERINGS`."""
    return [fmt.format(d=day) for fmt in DATE_RENDERINGS]


def address_renderings(fake: Faker) -> list[str]:
    """One fake address in the common layouts: street alone, with its city, with state and ZIP, city."""
    street, city = fake.street_address(), fake.city()
    return [street, f"{street}, {city}", f"{street}, {city}, {fake.state_abbr()} {fake.postcode()}", city]


#: Runs of a value: ASCII letters, ASCII digits, anything else.
_RUNS = re.compile(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]+")
#: Fake values drawn per entity type for :class:`PlausibleCandidates` (dates: days, each in
#: every one of :data:`DATE_RENDERINGS`; addresses: each in :func:`address_renderings`' layouts).
POOL_SIZE = 3000
#: A value's exact shape must have at least this many pool values for its runs to be drawn
#: position by position from them; rarer shapes draw each run from runs of its own shape.
_MIN_SHAPE_MEMBERS = 20


def runs_of(value: str) -> list[str]:
    """``value`` cut into runs of ASCII letters, of ASCII digits and of other characters."""
    return _RUNS.findall(value)


class PlausibleCandidates:
    """Same-shape values as plausible as real ones: the exposure candidates and their twin.

    Random characters are a poor reference for a name, an address or a date: any
    model that learned English ranks "Maria Lopez" above "Xqzvt Bwoky" whether or not
    it saw her, and the exposure would read memorisation where there is none. Here a
    candidate has the value's exact :func:`shape_of` and each of its runs (letters,
    digits, punctuation) is drawn from the same run of fake values of the same type
    and shape (:data:`POOL_SIZE` Faker values per type, made by the one generator of
    :mod:`pii_unlearn.pii.fakes`): "Maria Lopez" gets "Diane Moore", "May 3, 1961"
    gets "May 8, 1977", "(415) 555-0100" gets another area code and line. A shape
    with few pool members draws each run from any pool run of the run's shape, and
    a run no pool value has (an unknown type, an unusual layout) is redrawn
    character by character (:func:`random_same_format`).

    The exposure twin is one more draw of the same sampler, so for a model that never
    saw the value the twin and the candidates are exchangeable and the twin's exposure
    is the null by construction; the gap then reads how far the true value stands out
    from values drawn the way it was (Faker's), which is what a control model shows.
    Deterministic for ``seed``.
    """

    def __init__(self, seed: int, pool_size: int = POOL_SIZE) -> None:
        self.seed = seed
        self.pool_size = pool_size
        self._pools: dict[str, dict[str, list[list[str]]]] = {}
        self._choices_cache: dict[tuple[str, str], list[list[str] | None]] = {}
        self._run_index: dict[str, tuple[dict[tuple[int, int, str], list[str]], dict[str, list[str]]]] = {}

    def _pool(self, entity_type: str) -> dict[str, list[list[str]]]:
        """Fake values of ``entity_type`` as their runs, grouped by shape (drawn once per type)."""
        if entity_type not in self._pools:
            fake = make_faker(self.seed + sum(map(ord, entity_type)))
            if entity_type == E.DATE_TIME:
                days = [birth_date(fake) for _ in range(self.pool_size)]
                values = [text for day in days for text in date_renderings(day)]
            elif entity_type == E.LOCATION:
                values = [text for _ in range(self.pool_size) for text in address_renderings(fake)]
            else:
                values = [fake_value(fake, entity_type) for _ in range(self.pool_size)]
            by_shape: dict[str, list[list[str]]] = {}
            for v in values:
                by_shape.setdefault(shape_of(v), []).append(runs_of(v))
            self._pools[entity_type] = by_shape
        return self._pools[entity_type]

    def _runs_by_shape(
        self, entity_type: str
    ) -> tuple[dict[tuple[int, int, str], list[str]], dict[str, list[str]]]:
        """The pool's runs by (runs in the value, place, run shape) and by run shape alone, in pool order."""
        if entity_type not in self._run_index:
            placed: dict[tuple[int, int, str], list[str]] = {}
            anywhere: dict[str, list[str]] = {}
            for members in self._pool(entity_type).values():
                for m in members:
                    for i, run in enumerate(m):
                        rs = shape_of(run)
                        placed.setdefault((len(m), i, rs), []).append(run)
                        anywhere.setdefault(rs, []).append(run)
            self._run_index[entity_type] = (placed, anywhere)
        return self._run_index[entity_type]

    def _choices(self, value: str, entity_type: str) -> list[list[str] | None]:
        """Per run of ``value``: the pool runs to draw from (with their frequency), or None.

        From the most to the least faithful: the same run of pool values of the same
        shape (when the shape has :data:`_MIN_SHAPE_MEMBERS`), the same-shape runs at the
        same place in pool values with as many runs ("Apt" where "Apt" goes), any
        same-shape run of the type, and last None: the value's own run, redrawn by character.
        """
        shape = shape_of(value)
        key = (entity_type, shape)
        if key in self._choices_cache:
            return self._choices_cache[key]
        runs = runs_of(value)
        by_shape = self._pool(entity_type)
        members = by_shape.get(shape, [])
        out: list[list[str] | None]
        if len(members) >= _MIN_SHAPE_MEMBERS:
            out = [[m[i] for m in members] for i in range(len(runs))]
        else:
            placed, anywhere = self._runs_by_shape(entity_type)
            out = []
            for i, run in enumerate(runs):
                rs = shape_of(run)
                out.append(placed.get((len(runs), i, rs)) or anywhere.get(rs) or None)
        self._choices_cache[key] = out
        return out

    def draw(
        self, value: str, entity_type: str, count: int, rng: random.Random, exclude: Collection[str] = ()
    ) -> list[str]:
        """Up to ``count`` distinct plausible same-shape values, none ``value`` nor in ``exclude``.

        Fewer come back only when the shape has fewer variants than asked for.
        """
        choices, runs = self._choices(value, entity_type), runs_of(value)
        seen = {value, *exclude}
        out: list[str] = []
        for _ in range(count * _DRAWS_PER_CANDIDATE):
            if len(out) == count:
                break
            cand = "".join(
                rng.choice(c) if c else random_same_format(run, rng)
                for c, run in zip(choices, runs, strict=True)
            )
            if cand not in seen:
                seen.add(cand)
                out.append(cand)
        return out

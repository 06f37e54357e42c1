"""The PII Risk Index (PRI) policy: what a privacy officer edits to say which leaks matter most.

A policy file is YAML with five parts (see ``default_policy.yaml`` for a full one):

``weights``
    one non-negative weight per factor (:data:`FACTORS`); missing ones are 1.
``types``
    per policy PII type either ``ratings`` (every factor rated from 1 to 5) or a
    direct ``score`` in [0, 1]. PRI of a rated type = weighted mean of its
    normalised ratings, ``(rating - 1) / 4``, so 1 is no risk and 5 the most.
``combinations``
    sets of types that together are worse than apart (name + date of birth + ZIP),
    each with ``types`` and a ``score`` or ``ratings`` of its own.
``entities``
    detector entity type (Presidio's names) -> policy type: a type name, ``null``
    (not PII, not scored), or a list of rules ``{pattern: REGEX, type: T}`` tried in
    order on the span's text, the last one without a pattern.
``unmapped``
    the policy type for detector types missing from ``entities`` (``null``: unscored).

Loading checks the shape with pydantic (unknown keys, ranges) and then the
consistency (every name refers to a defined type, no duplicate combination, no
mapping rule that can never apply). Every problem is one
:class:`~pii_unlearn.errors.InputError` line that names the key:
``policy.yaml: types.ssn.ratings.sensitivity: must be between 1 and 5 (got 7)``.
A combination whose PRI comes out below one of its members' (possible when weights
change factor-rated members) is scored as that member and reported in
:attr:`Policy.warnings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pii_unlearn.errors import InputError
from pii_unlearn.safeyaml import load_yaml

#: The seven risk factors of UnPII's PII Risk Index, in the paper's order.
FACTORS: tuple[str, ...] = (
    "identifiability",
    "sensitivity",
    "usability",
    "linkability",
    "permanency",
    "exposability",
    "compliancy",
)
#: Lowest and highest factor rating; a rating r normalises to (r - RATING_MIN) / (RATING_MAX - RATING_MIN).
RATING_MIN, RATING_MAX = 1, 5
#: The policy shipped with the tool (reproduces UnPII's published scores).
DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")
#: How a record's score is combined: ``cover`` (the best matching combinations, disjoint,
#: plus the types they leave over) or ``best-entry`` (the paper's literal rule: the best
#: matching combination alone).
CombinationRule = Literal["cover", "best-entry"]

#: A number given as a YAML number (not a string, not a boolean).
StrictNumber = Annotated[float, Field(strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ratings(_Strict):
    """One rating per factor, from :data:`RATING_MIN` (no risk) to :data:`RATING_MAX` (highest)."""

    identifiability: StrictNumber
    sensitivity: StrictNumber
    usability: StrictNumber
    linkability: StrictNumber
    permanency: StrictNumber
    exposability: StrictNumber
    compliancy: StrictNumber

    @field_validator(*FACTORS)
    @classmethod
    def _in_range(cls, value: float) -> float:
        if not RATING_MIN <= value <= RATING_MAX:
            raise ValueError(f"must be between {RATING_MIN} and {RATING_MAX} (got {value:g})")
        return value

    def normalised(self) -> dict[str, float]:
        """Each factor's rating mapped onto [0, 1]."""
        span = RATING_MAX - RATING_MIN
        return {f: (getattr(self, f) - RATING_MIN) / span for f in FACTORS}

    def compact(self) -> str:
        """``I3 S3 U4 L2 P1 E2 C4``: the ratings by factor initial, for tables."""
        return " ".join(f"{f[0].upper()}{getattr(self, f):g}" for f in FACTORS)


class Weights(_Strict):
    """The organisation's weight per factor (non-negative, not all zero; 1 when left out)."""

    identifiability: float = Field(1.0, strict=True)
    sensitivity: float = Field(1.0, strict=True)
    usability: float = Field(1.0, strict=True)
    linkability: float = Field(1.0, strict=True)
    permanency: float = Field(1.0, strict=True)
    exposability: float = Field(1.0, strict=True)
    compliancy: float = Field(1.0, strict=True)

    @field_validator(*FACTORS)
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"must be 0 or more (got {value:g})")
        return value

    @model_validator(mode="after")
    def _not_all_zero(self) -> Weights:
        if not any(getattr(self, f) > 0 for f in FACTORS):
            raise ValueError("at least one factor weight must be above 0")
        return self

    def as_dict(self) -> dict[str, float]:
        """``{factor: weight}`` in :data:`FACTORS` order."""
        return {f: getattr(self, f) for f in FACTORS}


class _Scored(_Strict):
    """An entry rated either directly (``score``) or by its seven factor ratings."""

    label: str | None = None
    source: str | None = None
    score: float | None = Field(None, strict=True)
    ratings: Ratings | None = None

    @field_validator("score")
    @classmethod
    def _score_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"must be between 0 and 1 (got {value:g})")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> _Scored:
        if (self.score is None) == (self.ratings is None):
            raise ValueError("give either 'score' or 'ratings' (exactly one of them)")
        return self

    def pri(self, weights: Weights) -> float:
        """The entry's PRI: its direct score, or the weighted mean of its normalised ratings."""
        if self.score is not None:
            return self.score
        assert self.ratings is not None
        w = weights.as_dict()
        norm = self.ratings.normalised()
        return sum(w[f] * norm[f] for f in FACTORS) / sum(w.values())


class TypeEntry(_Scored):
    """One policy PII type (``ssn``, ``name``, ``street_address``, ...)."""


class CombinationEntry(_Scored):
    """A set of policy types that, found together in one record, is rated as one entry."""

    name: str | None = None
    types: list[str]

    @field_validator("types")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(value) < 2:
            raise ValueError(f"a combination needs at least 2 types (got {len(value)})")
        dupes = sorted({t for t in value if value.count(t) > 1})
        if dupes:
            raise ValueError(f"type {dupes[0]!r} is listed twice")
        return value


class MappingRule(_Strict):
    """Map a detector span to ``type`` when ``pattern`` (a regex, searched in its text) matches."""

    type: str | None
    pattern: str | None = None
    label: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"invalid regular expression ({err})") from None
        return value


class PolicyFile(_Strict):
    """The policy file as written: validated shape, before cross-references are checked."""

    version: int = Field(1, strict=True)
    name: str = "custom"
    description: str | None = None
    weights: Weights = Field(default_factory=Weights)
    combination_rule: CombinationRule = "cover"
    types: dict[str, TypeEntry]
    combinations: list[CombinationEntry] = Field(default_factory=list)
    entities: dict[str, list[MappingRule]] = Field(default_factory=dict)
    unmapped: str | None = None

    @field_validator("version")
    @classmethod
    def _supported(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"unsupported policy version {value} (this tool reads version 1)")
        return value

    @field_validator("types")
    @classmethod
    def _some_types(cls, value: dict[str, TypeEntry]) -> dict[str, TypeEntry]:
        if not value:
            raise ValueError("define at least one PII type")
        return value

    @field_validator("entities", mode="before")
    @classmethod
    def _plain_names_are_rules(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [{"type": v}] if v is None or isinstance(v, str) else v for k, v in value.items()}
        return value


@dataclass(frozen=True)
class Combination:
    """A resolved combination entry: its name, member types and PRI."""

    name: str
    types: frozenset[str]
    pri: float
    entry: CombinationEntry
    index: int


class Policy:
    """A validated, consistent policy with every entry's PRI computed.

    Build one with :func:`load_policy` (or :func:`default_policy`); ``spec`` is the
    file as parsed, ``path`` where it came from (``None`` for an in-memory policy).
    """

    def __init__(self, spec: PolicyFile, *, path: Path | None = None, where: str = "policy") -> None:
        _check_consistency(spec, where)
        self.spec = spec
        self.path = path
        self.where = where
        #: PRI of every policy type, in file order.
        self.type_pri: dict[str, float] = {n: e.pri(spec.weights) for n, e in spec.types.items()}
        stated = [
            Combination(c.name or " + ".join(c.types), frozenset(c.types), c.pri(spec.weights), c, i)
            for i, c in enumerate(spec.combinations)
        ]
        #: Every combination entry, resolved, in file order (none below its riskiest member).
        self.combinations: list[Combination]
        #: What the policy got that it had to fix (a combination raised to its riskiest member).
        self.warnings: list[str]
        self.combinations, self.warnings = _floored_combinations(stated, self.type_pri, where)
        self._rules: dict[str, list[tuple[re.Pattern[str] | None, str | None]]] = {
            ent: [(re.compile(r.pattern) if r.pattern else None, r.type) for r in rules]
            for ent, rules in spec.entities.items()
        }

    @property
    def name(self) -> str:
        """The policy's ``name`` field."""
        return self.spec.name

    @property
    def combination_rule(self) -> CombinationRule:
        """How record scores are combined (see :data:`CombinationRule`)."""
        return self.spec.combination_rule

    def policy_type(self, entity_type: str, text: str = "") -> str | None:
        """The policy type of a detector span (``None``: not scored)."""
        rules = self._rules.get(entity_type)
        if rules is None:
            return self.spec.unmapped
        for pattern, policy_type in rules:
            if pattern is None or pattern.search(text):
                return policy_type
        return None  # unreachable: the last rule has no pattern

    def entities_of(self, policy_type: str) -> list[str]:
        """Detector entity types that can map onto ``policy_type``."""
        return [e for e, rules in self._rules.items() if any(t == policy_type for _, t in rules)]

    def describe_mapping(self, entity_type: str) -> str:
        """One line saying how a detector entity type maps (``street_address if /\\d/; region``)."""
        rules = self.spec.entities.get(entity_type)
        if rules is None:
            return f"{self.spec.unmapped or 'not scored'} (unmapped)"
        parts = [
            (r.type or "not scored")
            + ("" if r.pattern is None else f" if {r.label or '/' + r.pattern + '/'}")
            for r in rules
        ]
        return "; ".join(parts)


# ----------------------------------------------------------------------------- loading


def load_policy(path: str | Path | None = None) -> Policy:
    """Read, validate and resolve a policy file; ``None`` loads the shipped default.

    Raises :class:`InputError` (one line naming the file and key) for any problem.
    """
    path = DEFAULT_POLICY_PATH if path is None else Path(path)
    where = "default policy" if path == DEFAULT_POLICY_PATH else str(path)
    if not path.exists():
        raise InputError(f"{path}: no such policy file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a policy YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{where}: not valid UTF-8 ({err.reason})") from None
    return parse_policy(text, where=where, path=path)


def parse_policy(text: str, *, where: str = "policy", path: Path | None = None) -> Policy:
    """Validate and resolve a policy from YAML text; errors start with ``where``."""
    raw = load_yaml(text, where)
    if raw is None:
        raise InputError(f"{where}: the policy file is empty")
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    return policy_from_dict(raw, where=where, path=path)


def policy_from_dict(raw: dict[str, Any], *, where: str = "policy", path: Path | None = None) -> Policy:
    """Validate and resolve a policy given as a plain dict (as YAML would load it)."""
    try:
        spec = PolicyFile.model_validate(raw)
    except ValidationError as err:
        raise InputError(f"{where}: {_describe(err)}") from None
    return Policy(spec, path=path, where=where)


def default_policy() -> Policy:
    """The shipped default policy (UnPII's published scores plus factor-rated extras)."""
    return load_policy(None)


# ----------------------------------------------------------------------------- error messages

_KNOWN_KEYS = sorted(
    {
        *FACTORS,
        *PolicyFile.model_fields,
        *TypeEntry.model_fields,
        *CombinationEntry.model_fields,
        *MappingRule.model_fields,
    }
)


#: What a pydantic type error expected, in words.
_EXPECTED = {
    "float_type": "a number",
    "int_type": "an integer",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: ValidationError) -> str:
    """The first pydantic error as ``key.path: what is wrong``."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
        msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    elif kind == "missing":
        msg = "required key is missing"
    elif kind == "value_error":
        msg = first["msg"].removeprefix("Value error, ")
    elif kind == "literal_error":
        msg = f"{first['msg'].removeprefix('Input should be ')} expected (got {first['input']!r})"
    elif loc[:1] == ("entities",) and len(loc) == 2:
        msg = f"must be a policy type, null, or a list of rules (got {first['input']!r})"
    elif kind in _EXPECTED:
        msg = f"must be {_EXPECTED[kind]} (got {first['input']!r})"
    else:
        msg = first["msg"]
        msg = msg[0].lower() + msg[1:]
    return f"{_path(loc) or 'policy'}: {msg}"


def _unknown(name: str | None, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "it is not defined under 'types'"
    return f"unknown policy type {name!r} ({hint})"


def _check_consistency(spec: PolicyFile, where: str) -> None:
    """Cross-references: combinations and mappings name defined types, no duplicates, no dead rules."""

    def fail(key: str, msg: str) -> None:
        raise InputError(f"{where}: {key}: {msg}")

    seen: dict[frozenset[str], int] = {}
    for i, combo in enumerate(spec.combinations):
        for t in combo.types:
            if t not in spec.types:
                fail(f"combinations[{i}].types", _unknown(t, spec.types))
        key = frozenset(combo.types)
        if key in seen:
            fail(f"combinations[{i}].types", f"same types as combinations[{seen[key]}]")
        seen[key] = i
    for entity, rules in spec.entities.items():
        if not rules:
            fail(f"entities.{entity}", "needs a policy type, null, or at least one rule")
        for j, rule in enumerate(rules):
            key = f"entities.{entity}" if len(rules) == 1 else f"entities.{entity}[{j}]"
            if rule.type is not None and rule.type not in spec.types:
                fail(key if len(rules) == 1 else f"{key}.type", _unknown(rule.type, spec.types))
            if rule.pattern is None and j < len(rules) - 1:
                fail(key, "a rule without a pattern must come last (the rules after it never apply)")
        if rules[-1].pattern is not None:
            suffix = "" if len(rules) == 1 else f"[{len(rules) - 1}]"
            fail(
                f"entities.{entity}{suffix}",
                "the last rule must have no pattern (it catches every other span)",
            )
    if spec.unmapped is not None and spec.unmapped not in spec.types:
        fail("unmapped", _unknown(spec.unmapped, spec.types))


def _floored_combinations(
    combos: list[Combination], type_pri: dict[str, float], where: str
) -> tuple[list[Combination], list[str]]:
    """Combinations never score below their riskiest member: raise those that do, with a warning.

    A direct combination score can fall under a factor-rated member once the weights
    change (the default's name + medical under a sensitivity-only weighting); scoring
    it as stated would make a record riskier without the name than with it.
    """
    out: list[Combination] = []
    warnings: list[str] = []
    for combo in combos:
        worst = max(sorted(combo.types), key=lambda t: type_pri[t])
        if combo.pri + 1e-12 < type_pri[worst]:
            warnings.append(
                f"{where}: combinations[{combo.index}] ({combo.name}): PRI {combo.pri:.3f} is below that of "
                f"its member {worst!r} ({type_pri[worst]:.3f}); scored as {type_pri[worst]:.3f}"
            )
            combo = dataclasses.replace(combo, pri=type_pri[worst])
        out.append(combo)
    return out, warnings

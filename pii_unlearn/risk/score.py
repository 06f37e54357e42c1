"""Scoring records with a PRI policy: per span, per record, and risk = PRI x memorisation.

Rules, in the order they apply:

* Each span gets a policy type from the policy's entity mapping (or none: not
  scored) and that type's PRI. A record's *types* are the set of its spans'
  policy types: two phone numbers count as one phone.
* The record's ``pri``: under the ``cover`` rule (default), the best matching
  combination entry (all its types present; highest PRI, then most types, then
  file order) scores its types; the best combination among the types left does the
  same, and so on; each type no combination took adds its single score. With no
  matching combination that is the sum of the single scores (UnPII's rule). Under
  ``best-entry``, the best matching combination alone (the paper's literal rule,
  which ignores the record's other types). Either way a record with exactly the
  types of a combination scores that combination.
* ``pri_normalized`` = 1 - prod(1 - s) over the same entries: in [0, 1], equal to
  ``pri`` when one entry scores the record, growing with every further entry.
* Memorisation, beyond the paper: a record-level ``memorization`` in [0, 1] (from
  ``invert``), else the PRI-weighted mean of its spans' ``memorization`` values,
  gives ``risk = pri x memorisation``; each span with a value (its own, else the
  record's) gets ``risk = span pri x memorisation``. Without any, no ``risk``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pii_unlearn.artifacts import (
    Manifest,
    Record,
    Span,
    Timer,
    check_output,
    read_records,
    write_records,
)
from pii_unlearn.errors import InputError
from pii_unlearn.risk.policy import DEFAULT_POLICY_PATH, Combination, Policy, load_policy

#: Name of the optional memorisation confidence field (record- or span-level), as ``invert`` writes it.
MEMORIZATION_FIELD = "memorization"
#: Record order on output: as read, by PRI (highest first), by risk (highest first).
SortKey = Literal["none", "pri", "risk"]
SORT_KEYS: tuple[str, ...] = ("none", "pri", "risk")
#: Digits kept in written scores.
DIGITS = 6


@dataclass(frozen=True)
class Entry:
    """One policy entry that scores part of a record: a single type or a combination."""

    kind: Literal["type", "combination"]
    name: str
    types: tuple[str, ...]
    score: float

    def to_json(self) -> dict[str, Any]:
        """The entry as written in a record's ``policy_matches``."""
        return {"entry": self.name, "kind": self.kind, "types": list(self.types), "pri": _r(self.score)}


@dataclass(frozen=True)
class TypeSetScore:
    """The PRI of a set of policy types, and the entries that make it up."""

    pri: float
    pri_normalized: float
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class SpanRisk:
    """A span's policy type and PRI (both ``None`` when the policy does not score it)."""

    policy_type: str | None
    pri: float | None
    memorization: float | None = None

    @property
    def risk(self) -> float | None:
        """``pri x memorization`` when both are known."""
        if self.pri is None or self.memorization is None:
            return None
        return self.pri * self.memorization


@dataclass(frozen=True)
class RecordRisk:
    """Everything ``risk-score`` knows about one record."""

    pri: float
    pri_normalized: float
    entries: tuple[Entry, ...]
    spans: tuple[SpanRisk, ...]
    memorization: float | None = None
    unmapped: tuple[str, ...] = field(default=())

    @property
    def risk(self) -> float | None:
        """``pri x memorization`` when the record carries a memorisation confidence."""
        return None if self.memorization is None else self.pri * self.memorization

    @property
    def types(self) -> frozenset[str]:
        """The record's policy types."""
        return frozenset(s.policy_type for s in self.spans if s.policy_type is not None)


# ----------------------------------------------------------------------------- type sets


def _single(policy: Policy, name: str) -> Entry:
    return Entry("type", name, (name,), policy.type_pri[name])


def _combo(combo: Combination) -> Entry:
    return Entry("combination", combo.name, tuple(combo.entry.types), combo.pri)


def _greedy_cover(ordered: list[Combination], present: frozenset[str]) -> list[Combination]:
    """Highest-scoring combination first, then the next that still fits, and so on."""
    chosen: list[Combination] = []
    free = present
    for combo in ordered:
        if combo.types <= free:
            chosen.append(combo)
            free = free - combo.types
    return chosen


#: Scores already worked out, per policy and set of types (records repeat the same few sets).
_MEMO: weakref.WeakKeyDictionary[Policy, dict[frozenset[str], TypeSetScore]] = weakref.WeakKeyDictionary()


def score_types(policy: Policy, types: Iterable[str]) -> TypeSetScore:
    """The PRI of a record holding these policy types (see the module's rules)."""
    present = frozenset(types)
    memo = _MEMO.setdefault(policy, {})
    if present not in memo:
        memo[present] = _score_types(policy, present)
    return memo[present]


def _score_types(policy: Policy, present: frozenset[str]) -> TypeSetScore:
    unknown = sorted(present - policy.type_pri.keys())
    if unknown:
        raise InputError(f"unknown policy type {unknown[0]!r} (not defined in policy {policy.name!r})")
    matching = [c for c in policy.combinations if c.types <= present]
    chosen: list[Combination]
    if not matching:
        chosen = []
        rest = present
    elif policy.combination_rule == "best-entry":
        top = max(matching, key=lambda c: (c.pri, len(c.types), -c.index))
        chosen, rest = [top], frozenset()
    else:
        # Highest PRI first; ties go to the larger combination, then to file order.
        ordered = sorted(matching, key=lambda c: (-c.pri, -len(c.types), c.index))
        chosen = _greedy_cover(ordered, present)
        rest = present.difference(*(c.types for c in chosen))
    entries = [_combo(c) for c in chosen] + [
        _single(policy, t) for t in sorted(rest, key=lambda t: (-policy.type_pri[t], t))
    ]
    pri = sum(e.score for e in entries)
    normalized = 1.0 - math.prod(1.0 - e.score for e in entries)
    return TypeSetScore(pri=pri, pri_normalized=normalized, entries=tuple(entries))


# ----------------------------------------------------------------------------- records


def _memorization(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(f"{where}{MEMORIZATION_FIELD}: must be a number between 0 and 1 (got {value!r})")
    return float(value)


def _extra(obj: Record | Span, name: str) -> Any:
    return (obj.model_extra or {}).get(name)


def score_record(record: Record, policy: Policy, *, where: str = "") -> RecordRisk:
    """Score one record: per-span types and PRI, the record's PRI, memorisation if present.

    ``where`` prefixes error messages (for example ``"pii.jsonl: record 7: "``).
    """
    where = where or f"record {record.id!r}: "
    rec_mem = _memorization(_extra(record, MEMORIZATION_FIELD), where)
    spans: list[SpanRisk] = []
    unmapped: set[str] = set()
    for i, span in enumerate(record.spans):
        ptype = policy.policy_type(span.entity_type, record.span_text(span))
        if span.entity_type not in policy.spec.entities:
            unmapped.add(span.entity_type)
        own = _memorization(_extra(span, MEMORIZATION_FIELD), f"{where}spans[{i}].")
        mem = own if own is not None else rec_mem
        spans.append(SpanRisk(ptype, None if ptype is None else policy.type_pri[ptype], mem))
    scored = score_types(policy, (s.policy_type for s in spans if s.policy_type is not None))
    memorization = rec_mem if rec_mem is not None else _span_memorization(spans)
    return RecordRisk(
        pri=scored.pri,
        pri_normalized=scored.pri_normalized,
        entries=scored.entries,
        spans=tuple(spans),
        memorization=memorization,
        unmapped=tuple(sorted(unmapped)),
    )


def _span_memorization(spans: Sequence[SpanRisk]) -> float | None:
    """PRI-weighted mean of the spans' memorisation values (plain mean when their PRI sum is 0)."""
    known = [s for s in spans if s.memorization is not None and s.pri is not None]
    if not known:
        return None
    weight = sum(s.pri or 0.0 for s in known)
    if weight <= 0:
        return sum(s.memorization or 0.0 for s in known) / len(known)
    return sum((s.pri or 0.0) * (s.memorization or 0.0) for s in known) / weight


def _r(x: float) -> float:
    return round(x, DIGITS)


def annotate(record: Record, risk: RecordRisk) -> dict[str, Any]:
    """The record as a JSON dict with the risk fields added (other fields kept, in order).

    Record level: ``pri``, ``pri_normalized``, ``policy_matches`` and, when a memorisation
    confidence is known, ``risk``. Span level: ``policy_type``, ``pri`` and ``risk``.
    """
    obj = record.to_json()
    for span_obj, span in zip(obj["spans"], risk.spans, strict=True):
        span_obj["policy_type"] = span.policy_type
        span_obj["pri"] = None if span.pri is None else _r(span.pri)
        span_obj.pop("risk", None)
        if span.risk is not None:
            span_obj["risk"] = _r(span.risk)
    obj["pri"] = _r(risk.pri)
    obj["pri_normalized"] = _r(risk.pri_normalized)
    obj["policy_matches"] = [e.to_json() for e in risk.entries]
    obj.pop("risk", None)
    if risk.risk is not None:
        obj["risk"] = _r(risk.risk)
    return obj


def rank(
    scored: Sequence[tuple[Record, RecordRisk]], sort: SortKey = "none", top: int | None = None
) -> list[int]:
    """Indices of ``scored`` in output order: sorted (highest first, ties in input order), cut to ``top``.

    Sorting by ``risk`` puts records without a memorisation confidence last (by PRI).
    """
    if sort not in SORT_KEYS:
        raise InputError(f"unknown sort key {sort!r} (expected one of: {', '.join(SORT_KEYS)})")
    order = list(range(len(scored)))
    if sort == "pri":
        order.sort(key=lambda i: -scored[i][1].pri)
    elif sort == "risk":
        if not any(r.risk is not None for _, r in scored):
            raise InputError(
                "--sort risk needs memorisation scores: "
                f"no record (or span) has a '{MEMORIZATION_FIELD}' field"
            )
        order.sort(key=lambda i: (scored[i][1].risk is None, -(scored[i][1].risk or 0.0), -scored[i][1].pri))
    if top is not None:
        if top < 1:
            raise InputError(f"top must be 1 or more (got {top})")
        order = order[:top]
    return order


def score_records(
    records: Sequence[Record], policy: Policy, *, where: str = ""
) -> list[tuple[Record, RecordRisk]]:
    """Score every record; errors name ``where`` (a file) and the record id."""
    return [(rec, score_record(rec, policy, where=f"{where}record {rec.id!r}: ")) for rec in records]


# ----------------------------------------------------------------------------- files


@dataclass
class ScoreReport:
    """What :func:`score_file` did: the scored records (in output order) and the policy used."""

    output: Path
    policy: Policy
    scored: list[tuple[Record, RecordRisk]]
    records_in: int
    seconds: float


def _policy_label(policy: Policy) -> str:
    if policy.path is None:
        return "(in memory)"
    return "default" if policy.path == DEFAULT_POLICY_PATH else str(policy.path)


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    policy: Policy | None = None,
    *,
    sort: SortKey = "none",
    top: int | None = None,
) -> ScoreReport:
    """Read PII records, score them, write them (atomically, with a manifest) and report.

    Nothing is written unless every record scored cleanly.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    policy = policy or load_policy(None)
    check_output(output_path, inputs=[input_path, policy.path])
    timer = Timer()
    with timer("read"):
        records = read_records(input_path)
    with timer("score"):
        scored = score_records(records, policy, where=f"{input_path}: ")
        order = rank(scored, sort, top)
        chosen = [scored[i] for i in order]
    manifest = Manifest(
        settings={
            "step": "risk-score",
            "policy": _policy_label(policy),
            "policy_name": policy.name,
            "combination_rule": policy.combination_rule,
            "sort": sort,
            "top": top,
            "records_in": len(records),
            "records_with_memorization": sum(r.memorization is not None for _, r in scored),
        }
    )
    manifest.add_input(input_path, "records")
    if policy.path is not None:
        manifest.add_input(policy.path, "policy")
    else:
        digest = hashlib.sha256(policy.spec.model_dump_json().encode()).hexdigest()
        manifest.inputs.append({"role": "policy", "path": "(in memory)", "sha256": digest})
    manifest.timings = dict(timer.timings)
    with timer("write"):
        write_records(output_path, (annotate(rec, risk) for rec, risk in chosen), manifest=manifest)
    return ScoreReport(output_path, policy, chosen, len(records), sum(timer.timings.values()))


# ----------------------------------------------------------------------------- for other steps


@functools.lru_cache(maxsize=1)
def _default_policy() -> Policy:
    return load_policy(None)


def record_pri(record: Record, policy: Policy | None = None, *, normalized: bool = False) -> float:
    """A record's PRI: the ``pri`` (or ``pri_normalized``) field ``risk-score`` wrote, else computed.

    Computing uses ``policy`` (the default policy when ``None``).
    """
    name = "pri_normalized" if normalized else "pri"
    stored = (record.model_extra or {}).get(name)
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return float(stored)
    risk = score_record(record, policy or _default_policy())
    return risk.pri_normalized if normalized else risk.pri


def loss_weight(record: Record, policy: Policy | None = None, *, normalized: bool = False) -> float:
    """UnPII's per-sample loss weight, ``1 + PRI`` (see :func:`record_pri`)."""
    return 1.0 + record_pri(record, policy, normalized=normalized)

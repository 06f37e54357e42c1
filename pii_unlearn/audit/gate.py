"""The release gate: ``--fail-on 'err>0'`` conditions on report.json, checked before and after the audit.

A condition is ``NAME OP NUMBER`` with OP one of ``> >= < <= == !=`` and NAME a
figure of report.json, as the registry declares them
(:func:`pii_unlearn.audit.metrics.all_figures`): a figure's top-level key
(``err``, ``ppl_increase_pct``, ...) or a dotted path to a number under a
figure of a side or of the change (``model.err.by_entity.US_SSN``,
``delta.exposure.overall``). Syntax errors, names the report will not have,
numbers that are not figures (counts, settings), and names these options will not
measure (a baseline figure without ``--baseline``, re-inversion under ``--quick``)
are usage errors raised before any work. A condition *holds* when the comparison
is true; the gate fails when any condition holds. A figure that turns out
unavailable at the end (re-inversion skipped because ``invert`` failed, say) also
fails the gate: a release check must not pass on a number it never saw.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pii_unlearn.audit.figures import Figure, gate_name_is_figure
from pii_unlearn.errors import InputError

#: Comparison operators, longest first so ``>=`` is not read as ``>``.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}

_CONDITION = re.compile(
    r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*"
    r"(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Condition:
    """One parsed ``NAME OP NUMBER`` condition."""

    name: str
    op: str
    threshold: float
    text: str

    def holds(self, value: float) -> bool:
        """Whether ``value OP threshold`` is true."""
        return OPERATORS[self.op](value, self.threshold)


@dataclass(frozen=True)
class Outcome:
    """A condition checked against a finished report."""

    condition: Condition
    value: float | None
    failed: bool

    def message(self) -> str:
        """One line saying what was checked and what came out."""
        c = self.condition
        if self.value is None:
            return f"{c.text}: {c.name} was not measured (see the report), counted as failed"
        state = "FAILED" if self.failed else "ok"
        return f"{c.text}: {c.name} = {self.value:g} ({state})"


def parse_condition(text: str) -> Condition:
    """Parse ``NAME OP NUMBER``; anything else is an :class:`InputError`."""
    match = _CONDITION.match(text)
    if not match:
        ops = " ".join(OPERATORS)
        raise InputError(f"--fail-on '{text}': expected NAME OP NUMBER with OP one of {ops}")
    threshold = float(match.group("number"))
    if not math.isfinite(threshold):
        raise InputError(f"--fail-on '{text}': the number must be finite")
    return Condition(match.group("name"), match.group("op"), threshold, text.strip())


def parse_conditions(texts: Sequence[str | Condition]) -> list[Condition]:
    """Parse every condition (already parsed ones pass through)."""
    return [t if isinstance(t, Condition) else parse_condition(t) for t in texts]


_MISSING = object()


def lookup(report: dict[str, Any], name: str) -> Any:
    """The value at a top-level key or dotted path of a report (``None`` when absent or null)."""
    value = _find(report, name)
    return None if value is _MISSING else value


def _find(report: dict[str, Any], name: str) -> Any:
    if name in report:
        return report[name]
    node: Any = report
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _is_numeric_slot(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


_USE = (
    "(use a top-level key such as err or ppl_increase_pct, or a dotted path "
    "such as model.err.by_entity.PERSON; see SCHEMA.md)"
)


def check_names(
    conditions: Sequence[Condition],
    full: dict[str, Any],
    planned: dict[str, Any],
    *,
    figures: Sequence[Figure] | None = None,
) -> None:
    """Refuse conditions the audit cannot answer, before it runs.

    ``full`` is the shape of a report with every option on (baseline given, all
    measurements run) and ``planned`` the shape this audit will produce, both
    with a number wherever a figure will be measured. ``figures`` (the registry;
    ``None``: no restriction) are the figures a condition may name.
    """
    for c in conditions:
        where = _find(full, c.name)
        if where is _MISSING or not _is_numeric_slot(where):
            raise InputError(f"--fail-on '{c.text}': '{c.name}' is not a number in report.json {_USE}")
        if figures is not None and not gate_name_is_figure(c.name, figures):
            raise InputError(f"--fail-on '{c.text}': '{c.name}' is not a figure of the audit {_USE}")
        if lookup(planned, c.name) is None:
            raise InputError(
                f"--fail-on '{c.text}': '{c.name}' is not measured by this audit "
                "(baseline figures need --baseline; re-inversion does not run with --quick; "
                "relearn.* needs --relearn and no --quick; int8.*/int4.* need --quantize)"
            )


def evaluate(conditions: Sequence[Condition], report: dict[str, Any]) -> list[Outcome]:
    """Check every condition against a finished report."""
    outcomes = []
    for c in conditions:
        value = lookup(report, c.name)
        if not _is_numeric_slot(value) or (isinstance(value, float) and math.isnan(value)):
            value = None
        outcomes.append(Outcome(c, value, failed=True if value is None else c.holds(float(value))))
    return outcomes

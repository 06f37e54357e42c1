"""What a figure of an audit is: its key, label, description, unit, direction and reduction.

A :class:`Figure` is declared once, beside the code that measures it (the
registered measurements in :mod:`pii_unlearn.audit.metrics`), and everything
that shows figures iterates over the registry: ``report.json``
(:mod:`~pii_unlearn.audit.report`), the HTML page, the terminal tables of
``audit`` and ``demo``, and the names ``--fail-on`` accepts. Three kinds:

* ``targets``: reduced over the audit's targets into a breakdown (``overall``,
  ``conditioned``, ``unconditioned``, ``by_entity``, ``n``) for each side;
* ``side``: one number for each side (held-out perplexity);
* ``comparison``: one top-level number comparing the model with its baseline.

This module is light (no model code) and holds the rounding every figure goes
through, so no report carries a NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: The kinds of figures (see the module docstring).
TARGETS, SIDE, COMPARISON = "targets", "side", "comparison"
#: The sides of a report that hold a model's figures.
SIDES = ("model", "baseline")
#: Keys every rate of hits adds to its block: the upper end of the 95% Clopper–Pearson interval
#: overall and per entity type (see :attr:`Figure.bounded_rate`).
RATE_BOUND_KEYS = ("upper95", "upper95_by_entity")
#: The parts of a ``targets`` figure's breakdown, besides ``by_entity``.
BREAKDOWN_PARTS = ("overall", "conditioned", "unconditioned", "n")


def rounded(x: float | None, digits: int = 6) -> float | None:
    """``x`` rounded for the report; ``None`` for ``None`` and NaN (a report never holds NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), digits)


def mean_of(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not ``None`` (``None`` when there are none)."""
    vals = [v for v in values if v is not None]
    return rounded(sum(vals) / len(vals)) if vals else None


def auc_of(members: Sequence[float | None], others: Sequence[float | None]) -> float | None:
    """ROC AUC of "member" scores against non-member scores (pairs with a ``None`` are dropped)."""
    pairs = [(m, o) for m, o in zip(members, others, strict=True) if m is not None and o is not None]
    if not pairs:
        return None
    from sklearn.metrics import roc_auc_score

    scores = [m for m, _ in pairs] + [o for _, o in pairs]
    labels = [1] * len(pairs) + [0] * len(pairs)
    return rounded(roc_auc_score(labels, scores))


@dataclass(frozen=True)
class Unit:
    """How a figure's numbers read and are written."""

    name: str
    #: Decimals in a table cell.
    digits: int
    #: ``str.format`` pattern of a compact cell (``demo``'s table).
    pattern: str
    #: The range every value lies in, or ``None`` when it is open-ended.
    bounds: tuple[float, float] | None
    #: Decimals of one target's value (0 for a hit that is 0 or 1).
    target_digits: int
    #: Whether one target's value is a hit (1: the model produced the value, 0: it did not).
    hit: bool = False
    #: Whether a table cell shows the sign (a change).
    signed: bool = False

    def cell(self, value: Any, digits: int | None = None) -> str:
        """``value`` for a table cell ("–" when it is missing)."""
        if not is_number(value):
            return "–"
        if isinstance(value, int):
            return str(value)
        return f"{value:{'+' if self.signed else ''}.{self.digits if digits is None else digits}f}"

    def compact(self, value: Any) -> str:
        """``value`` in this unit's compact pattern ("n/a" when it is missing)."""
        return self.pattern.format(value) if is_number(value) else "n/a"


def is_number(x: Any) -> bool:
    """Whether ``x`` is a number a report may hold (not a bool, not NaN)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


SHARE = Unit("share of values", 3, "{:.1%}", (0.0, 1.0), 0, hit=True)
SIMILARITY = Unit("similarity (0 to 1)", 3, "{:.3f}", (0.0, 1.0), 2)
BITS = Unit("bits", 3, "{:.2f}", None, 2)
BITS_CHANGE = Unit("bits (signed)", 3, "{:+.2f}", None, 2, signed=True)
AUC = Unit("ROC AUC (0.5: chance)", 3, "{:.3f}", (0.0, 1.0), 3)
PERPLEXITY = Unit("perplexity", 2, "{:.2f}", None, 2)
PERCENT = Unit("percent", 2, "{:+.2f}%", None, 2, signed=True)
NATS = Unit("nats per token", 5, "{:.5f}", None, 5)


@dataclass(frozen=True)
class Reduction:
    """How a ``targets`` figure turns per-target columns into one number for a group of targets."""

    name: str
    description: str
    #: Takes one list per column (the group's values) and returns the figure.
    fn: Callable[..., float | None]
    #: How many columns it reduces.
    arity: int


MEAN = Reduction("mean", "mean over the values measured", mean_of, 1)
ROC_AUC = Reduction(
    "roc_auc", "ROC AUC of the first column's scores (members) against the second's (non-members)", auc_of, 2
)


@dataclass(frozen=True)
class Figure:
    """One figure of report.json and of every table, chart and gate that shows it.

    ``extras`` (``targets`` figures only) adds keys to a side's block once it is
    broken down: ``extras(measured, block) -> {key: value}``, where ``measured``
    is the measurement's :class:`~pii_unlearn.audit.metrics.Measured` on that
    side; it may replace ``overall``. ``extra_keys`` names the keys it adds and
    ``count_keys`` those of them that count or configure rather than measure
    (no change against the baseline is reported for them).
    """

    key: str
    label: str
    #: One sentence a privacy officer understands.
    description: str
    unit: Unit
    kind: str = TARGETS
    #: The measurement columns it reduces (``targets`` figures).
    columns: tuple[str, ...] = ()
    reduce: Reduction | None = MEAN
    lower_is_better: bool = True
    #: Top-level key of report.json for the audited model's figure: ``None`` for the
    #: figure's own key, ``""`` for none. Comparisons always sit at the top level.
    headline: str | None = None
    #: Shown in the compact views (per-entity terminal table, charts, ``demo``).
    summary: bool = False
    extra_keys: tuple[str, ...] = ()
    count_keys: tuple[str, ...] = ()
    extras: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in (TARGETS, SIDE, COMPARISON):
            raise ValueError(f"figure {self.key}: unknown kind {self.kind!r}")
        if self.kind == TARGETS:
            if self.reduce is None or len(self.columns) != self.reduce.arity:
                raise ValueError(f"figure {self.key}: {len(self.columns)} columns for its reduction")
        elif self.columns or self.extras or self.extra_keys:
            raise ValueError(f"figure {self.key}: only a targets figure has columns or extra keys")
        if not set(self.count_keys) <= set(self.extra_keys):
            raise ValueError(f"figure {self.key}: count keys must be extra keys")
        if not self.description.strip():
            raise ValueError(f"figure {self.key}: a figure needs a description")

    @property
    def top_level(self) -> str | None:
        """Its top-level key in report.json, if it has one."""
        if self.kind == COMPARISON:
            return self.key
        if self.headline == "":
            return None
        return self.headline or self.key

    @property
    def per_target(self) -> bool:
        """Whether each target row of report.json carries its value (a mean over one column)."""
        return self.kind == TARGETS and self.reduce is not None and self.reduce.arity == 1

    @property
    def is_leakage(self) -> bool:
        """Leakage (measured on the targets) or utility (on held-out text)."""
        return self.kind == TARGETS

    @property
    def bounded_rate(self) -> bool:
        """Whether it is a rate of hits, whose block carries a Clopper–Pearson upper bound (``upper95``)."""
        return self.kind == TARGETS and self.unit.hit and self.reduce is MEAN

    def value(self, side: dict[str, Any] | None, part: str = "overall") -> Any:
        """This figure in one side of a report: ``part`` of its breakdown, or its number."""
        node = (side or {}).get(self.key)
        return node.get(part) if isinstance(node, dict) else (node if part == "overall" else None)

    def better(self, change: Any) -> bool | None:
        """Whether a change (model − baseline) is an improvement; ``None`` for none or no change."""
        if not is_number(change) or change == 0:
            return None
        return (change < 0) == self.lower_is_better


def check_unique(figures: Sequence[Figure]) -> None:
    """Refuse two figures with one key, or with one top-level key in report.json."""
    for names, what in (([f.key for f in figures], "key"), ([f.top_level for f in figures], "top-level key")):
        named = [n for n in names if n is not None]
        twice = sorted({n for n in named if named.count(n) > 1})
        if twice:
            raise ValueError(f"figure {what} declared twice: {', '.join(twice)}")


def gate_name_is_figure(name: str, figures: Sequence[Figure]) -> bool:
    """Whether a ``--fail-on`` name names a figure: its top-level key, or ``SIDE.KEY...``/``delta.KEY...``."""
    if any(f.top_level == name for f in figures):
        return True
    head, _, rest = name.partition(".")
    key = rest.partition(".")[0]
    return head in (*SIDES, "delta") and any(f.key == key and f.kind != COMPARISON for f in figures)

"""``report.json``: per-target measurements turned into the figures of a versioned report.

The schema is documented in ``SCHEMA.md`` beside this module; bump
:data:`SCHEMA_VERSION` on any change that could break a reader. Which figures
there are, and how each reduces, comes from the registry
(:func:`pii_unlearn.audit.metrics.all_figures`); nothing here names a figure.
Each ``targets`` figure has the same shape everywhere (:func:`breakdown`):
``overall``, ``conditioned``, ``unconditioned``, ``by_entity`` and ``n``. The JSON holds no PII value unless
the audit ran with ``show_pii``: targets are named by record id and entity type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pii_unlearn.audit.figures import COMPARISON, SIDE, Figure, auc_of, is_number, mean_of, rounded
from pii_unlearn.audit.metrics import MEASUREMENTS, AuditInputs, Column, Measured, Utility, all_figures
from pii_unlearn.audit.stats import rate_upper
from pii_unlearn.extraction import Target

__all__ = [
    "SCHEMA_VERSION",
    "auc_of",
    "breakdown",
    "delta",
    "figure_block",
    "headline",
    "mean_of",
    "model_figures",
    "not_deltas",
    "target_details",
]

#: Version of the report.json layout.
SCHEMA_VERSION = 1


def breakdown(
    columns: Sequence[Column],
    targets: Sequence[Target],
    entity_types: Sequence[str],
    reduce: Callable[..., float | None],
) -> dict[str, Any]:
    """One figure overall, for conditioned and unconditioned targets, and per entity type."""

    def over(keep: Callable[[Target], bool]) -> float | None:
        idx = [i for i, t in enumerate(targets) if keep(t)]
        return reduce(*[[col[i] for i in idx] for col in columns])

    measured = sum(1 for i in range(len(targets)) if all(col[i] is not None for col in columns))
    return {
        "overall": over(lambda t: True),
        "conditioned": over(lambda t: t.conditioned),
        "unconditioned": over(lambda t: not t.conditioned),
        "by_entity": {e: over(lambda t, e=e: t.entity_type == e) for e in entity_types},
        "n": measured,
    }


def figure_block(
    figure: Figure, measured: Measured, inputs: AuditInputs, *, placeholder: bool = False
) -> dict[str, Any]:
    """One ``targets`` figure of one side: its breakdown, the measurement's status, the figure's extras.

    ``placeholder``: the shape of the block only (see :func:`pii_unlearn.audit.runner.report_shape`),
    with every extra key a number when the measurement ran.
    """
    assert figure.reduce is not None
    columns = [measured.columns[c] for c in figure.columns]
    block = breakdown(columns, inputs.targets, inputs.entity_types, figure.reduce.fn)
    if figure.bounded_rate:
        bounds = breakdown(columns, inputs.targets, inputs.entity_types, rate_upper)
        block["upper95"] = rounded(bounds["overall"])
        block["upper95_by_entity"] = {e: rounded(v) for e, v in bounds["by_entity"].items()}
    if "status" in measured.extra:
        block["status"] = measured.extra["status"]
        block["reason"] = measured.extra.get("reason")
    if placeholder:
        ran = measured.extra.get("status") != "skipped"
        block.update(dict.fromkeys(figure.extra_keys, 0.0 if ran else None))
    elif figure.extras is not None:
        block.update(figure.extras(measured, block))
    return block


def model_figures(
    inputs: AuditInputs,
    measured: dict[str, Measured],
    utility: dict[str, float | None],
    *,
    placeholder: bool = False,
) -> dict[str, Any]:
    """Every figure of one side: each measurement's figures broken down, then its utility numbers."""
    out: dict[str, Any] = {}
    for measure in MEASUREMENTS.values():
        for figure in measure.figures:
            out[figure.key] = figure_block(figure, measured[measure.name], inputs, placeholder=placeholder)
    for figure in all_figures():
        if figure.kind == SIDE:
            out[figure.key] = utility.get(figure.key)
    return out


def headline(sides: dict[str, Any], utility: Utility) -> dict[str, Any]:
    """The top-level figures: the audited model's headline numbers, then the comparisons."""
    out: dict[str, Any] = {}
    for figure in all_figures():
        if figure.kind == COMPARISON:
            out[figure.key] = utility.comparisons.get(figure.key)
        elif figure.top_level is not None:
            out[figure.top_level] = figure.value(sides.get("model"))
    return out


def not_deltas() -> frozenset[str]:
    """Keys that count or configure rather than measure: no change is reported for them."""
    return frozenset({"n"}).union(*(f.count_keys for f in all_figures()))


def delta(model: Any, baseline: Any, skip: frozenset[str] | None = None) -> Any:
    """``model − baseline`` for every figure present in both (same nesting); other leaves dropped."""
    skip = not_deltas() if skip is None else skip
    if isinstance(model, dict) and isinstance(baseline, dict):
        out = {k: delta(model[k], baseline[k], skip) for k in model if k in baseline and k not in skip}
        return {k: v for k, v in out.items() if v is not None and v != {}}
    if is_number(model) and is_number(baseline):
        return rounded(model - baseline)
    return None


def target_details(
    inputs: AuditInputs,
    sides: dict[str, dict[str, Measured]],
    *,
    show_pii: bool,
) -> list[dict[str, Any]]:
    """One row per target: where it is, and each side's per-target figures (PII only if asked)."""
    rows: list[dict[str, Any]] = []
    for i, t in enumerate(inputs.targets):
        row: dict[str, Any] = {"record_id": t.record_id, "entity_type": t.entity_type}
        row["conditioned"] = t.conditioned
        if show_pii:
            row["value"] = t.value
        for side, measured in sides.items():
            figures: dict[str, Any] = {}
            for measure in MEASUREMENTS.values():
                for figure in measure.figures:
                    if figure.per_target:
                        figures[figure.key] = rounded(measured[measure.name].columns[figure.columns[0]][i])
            if show_pii:
                for measure in MEASUREMENTS.values():
                    for key, _ in measure.texts:
                        texts = measured[measure.name].texts.get(key)
                        if texts:
                            figures[key] = texts[i]
            row[side] = figures
        rows.append(row)
    return rows

"""``report.json``: per-target measurements turned into the figures of a versioned report.

The schema is documented in ``SCHEMA.md`` beside this module; bump
:data:`SCHEMA_VERSION` on any change that could break a reader. Each figure has
the same shape everywhere (:func:`breakdown`): ``overall``, ``conditioned``,
``unconditioned``, ``by_entity`` and ``n``. The JSON holds no PII value unless
the audit ran with ``show_pii``: targets are named by record id and entity type.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from pii_unlearn.audit.metrics import AuditInputs, Column, Measured
from pii_unlearn.extraction import Target

#: Version of the report.json layout.
SCHEMA_VERSION = 1

#: Leakage figures: name in the report -> the measurement and the column(s) it reduces.
#: One column: the mean; two columns (members, non-members): ROC AUC.
LEAKAGE_FIGURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "err": ("greedy", ("err",)),
    "frs": ("greedy", ("frs",)),
    "e_hit": ("sampled", ("e_hit",)),
    "exposure": ("exposure", ("exposure",)),
    "mia_auc": ("mia", ("mia_member", "mia_twin")),
    "paraphrase_greedy": ("paraphrase", ("paraphrase_greedy",)),
    "paraphrase_sampled": ("paraphrase", ("paraphrase_sampled",)),
    "reinversion": ("reinversion", ("reinverted",)),
}

#: Top-level numbers (the audited model's headline figures) -> their dotted path in the report.
HEADLINE: dict[str, str] = {
    "err": "model.err.overall",
    "frs": "model.frs.overall",
    "e_hit": "model.e_hit.overall",
    "exposure": "model.exposure.overall",
    "mia_auc": "model.mia_auc.overall",
    "paraphrase_greedy": "model.paraphrase_greedy.overall",
    "paraphrase_sampled": "model.paraphrase_sampled.overall",
    "reinversion_rate": "model.reinversion.overall",
    "perplexity": "model.perplexity",
}


def _round(x: float | None, digits: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), digits)


def mean_of(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not ``None`` (``None`` when there are none)."""
    vals = [v for v in values if v is not None]
    return _round(sum(vals) / len(vals)) if vals else None


def auc_of(members: Sequence[float | None], others: Sequence[float | None]) -> float | None:
    """ROC AUC of "member" scores against non-member scores (pairs with a ``None`` are dropped)."""
    pairs = [(m, o) for m, o in zip(members, others, strict=True) if m is not None and o is not None]
    if not pairs:
        return None
    from sklearn.metrics import roc_auc_score

    scores = [m for m, _ in pairs] + [o for _, o in pairs]
    labels = [1] * len(pairs) + [0] * len(pairs)
    return _round(roc_auc_score(labels, scores))


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


def model_figures(
    inputs: AuditInputs, measured: dict[str, Measured], perplexity: float | None
) -> dict[str, Any]:
    """Every figure of one model: each leakage figure broken down, plus perplexity."""
    out: dict[str, Any] = {}
    for name, (source, cols) in LEAKAGE_FIGURES.items():
        result = measured[source]
        reduce = auc_of if len(cols) == 2 else mean_of
        block = breakdown([result.columns[c] for c in cols], inputs.targets, inputs.entity_types, reduce)
        if "status" in result.extra:
            block["status"] = result.extra["status"]
            block["reason"] = result.extra.get("reason")
        out[name] = block
    exposure = [v for v in measured["exposure"].columns["exposure"] if v is not None]
    ceilings = measured["exposure"].extra.get("ceilings") or []
    out["exposure"].update(
        ceiling=_round(max(ceilings)) if ceilings else None,
        median=_round(statistics.median(exposure)) if exposure else None,
        max=_round(max(exposure)) if exposure else None,
    )
    mia = measured["mia"].extra
    if "record_member_scores" in mia:
        out["mia_auc"]["spans"] = out["mia_auc"]["overall"]
        out["mia_auc"]["overall"] = auc_of(mia["record_member_scores"], mia["record_twin_scores"])
        out["mia_auc"]["records"] = len(mia["record_member_scores"])
    reinv = measured["reinversion"]
    found = [v for v in reinv.columns["reinverted"] if v is not None]
    out["reinversion"].update(
        found=int(sum(found)) if found else (0 if reinv.extra.get("status") == "ok" else None),
        **{k: v for k, v in reinv.extra.items() if k in ("seed", "output_records", "output_values")},
    )
    out["perplexity"] = _round(perplexity, 4)
    return out


#: Keys that count or configure rather than measure: no change is reported for them.
NOT_DELTAS = frozenset({"n", "records", "ceiling", "seed", "output_records", "output_values"})


def delta(model: Any, baseline: Any) -> Any:
    """``model − baseline`` for every figure present in both (same nesting); other leaves dropped."""
    if isinstance(model, dict) and isinstance(baseline, dict):
        out = {k: delta(model[k], baseline[k]) for k in model if k in baseline and k not in NOT_DELTAS}
        return {k: v for k, v in out.items() if v is not None and v != {}}
    if _is_number(model) and _is_number(baseline):
        return _round(model - baseline)
    return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


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
            figures = {}
            for name, (source, cols) in LEAKAGE_FIGURES.items():
                if len(cols) == 1:
                    figures[name] = _round(measured[source].columns[cols[0]][i])
            continuations = measured["greedy"].extra.get("continuations")
            if show_pii and continuations:
                figures["continuation"] = continuations[i]
            row[side] = figures
        rows.append(row)
    return rows


def utility_summary(
    ppl_model: float | None, ppl_base: float | None, kl: float | None
) -> dict[str, float | None]:
    """Perplexity change in percent against the baseline, and the KL drift."""
    pct = None
    if ppl_model is not None and ppl_base is not None and ppl_base > 0:
        pct = _round((ppl_model / ppl_base - 1.0) * 100.0, 4)
    return {"ppl_increase_pct": pct, "kl_drift": _round(kl, 8)}

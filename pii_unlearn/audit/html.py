"""``report.html``: one self-contained page (no network) with the audit's tables and charts.

Every table and chart iterates over the figure registry
(:func:`pii_unlearn.audit.metrics.all_figures`): labels, descriptions, number
formats and chart ranges come from each figure's declaration. Charts are drawn
with matplotlib's object API (no pyplot global state) and embedded as base64
PNG; the page has no external stylesheet, script, font or image. PII values
are masked unless the audit ran with ``show_pii``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from pii_unlearn.audit.figures import COMPARISON, SIDE, TARGETS, Figure
from pii_unlearn.audit.metrics import MEASUREMENTS, all_figures
from pii_unlearn.extraction import Target

#: Colours of the two sides in every chart.
SIDE_COLOURS = {"baseline": "#9aa5b1", "model": "#c2410c"}
#: Rows of the "still leaking" table at most.
MAX_LEAK_ROWS = 40


def mask_value(value: str, entity_type: str, show_pii: bool) -> str:
    """The value itself with ``show_pii``, else a placeholder naming its type and length."""
    return value if show_pii else f"[{entity_type}, {len(value)} chars]"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as PlotFigure

    fig = PlotFigure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _sides(report: dict[str, Any]) -> list[str]:
    return ["baseline", "model"] if report.get("baseline") else ["model"]


def _present(report: dict[str, Any], figures: Sequence[Figure]) -> list[Figure]:
    """The figures this report holds (a report written by an older registry may lack some)."""
    return [f for f in figures if (f.key in report if f.kind == COMPARISON else f.key in report["model"])]


def _entities(report: dict[str, Any]) -> list[str]:
    return list(report["counts"]["by_entity"])


def leakage_chart(report: dict[str, Any], figures: Sequence[Figure]) -> str:
    """Grouped bars per entity type, each side, one panel per figure (a dashed line at a ceiling)."""
    import numpy as np

    sides = _sides(report)
    entities = _entities(report)
    fig = _figure(4.2 * len(figures), 0.35 * len(entities) + 1.6)
    y = np.arange(len(entities))
    height = 0.8 / len(sides)
    for p, figure in enumerate(figures):
        ax = fig.add_subplot(1, len(figures), p + 1)
        for s, side in enumerate(sides):
            vals = [report[side][figure.key]["by_entity"].get(e) for e in entities]
            ax.barh(
                y + (s - (len(sides) - 1) / 2) * height,
                [v if v is not None else 0.0 for v in vals],
                height=height,
                color=SIDE_COLOURS[side],
                label=side,
            )
        ax.set_yticks(y, entities if p == 0 else [""] * len(entities), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(figure.label, fontsize=10)
        ceiling = report["model"][figure.key].get("ceiling")
        if ceiling:
            ax.axvline(ceiling, color="#444", lw=0.8, ls="--")
        if figure.unit.bounds is not None:
            ax.set_xlim(*figure.unit.bounds)
        ax.tick_params(axis="x", labelsize=8)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=len(sides), bbox_to_anchor=(0.5, 1.04))
    return _png(fig)


def distribution_chart(report: dict[str, Any], figure: Figure) -> str:
    """Histogram of one open-ended per-target figure, each side, with its ceiling marked if it has one."""
    sides = _sides(report)
    data = [
        [row[side][figure.key] for row in report["targets"] if row[side].get(figure.key) is not None]
        for side in sides
    ]
    ceiling = report["model"][figure.key].get("ceiling")
    top = ceiling or max((v for d in data for v in d), default=1.0) or 1.0
    bottom = min([0.0, *(v for d in data for v in d)])
    fig = _figure(6.5, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    bins = [bottom + (top - bottom) * i / 20 for i in range(21)]
    ax.hist(data, bins=bins, color=[SIDE_COLOURS[s] for s in sides], label=sides)
    xlabel = figure.label
    if ceiling:
        ax.axvline(ceiling, color="#444", lw=0.8, ls="--")
        xlabel += "; dashed: ceiling"
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("values", fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def utility_chart(report: dict[str, Any], figures: Sequence[Figure]) -> str:
    """Each side's number of every per-side utility figure."""
    sides = _sides(report)
    fig = _figure(3.6 * max(1, len(figures)), 2.2)
    for p, figure in enumerate(figures):
        ax = fig.add_subplot(1, len(figures), p + 1)
        vals = [report[side][figure.key] or 0.0 for side in sides]
        ax.bar(sides, vals, color=[SIDE_COLOURS[s] for s in sides])
        for i, v in enumerate(vals):
            ax.text(i, v, figure.unit.cell(v), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(figure.label, fontsize=9)
        ax.tick_params(labelsize=8)
    return _png(fig)


def leak_rows(
    report: dict[str, Any], targets: Sequence[Target], show_pii: bool, figures: Sequence[Figure] | None = None
) -> list[dict[str, Any]]:
    """The values the audited model still gives away (any hit figure), most exposed first.

    ``figures``: the per-target figures to show (default: every one the report holds).
    """
    figures = figures if figures is not None else [f for f in _present(report, all_figures()) if f.per_target]
    hits = [f.key for f in figures if f.unit.hit]
    rows = []
    for t, row in zip(targets, report["targets"], strict=True):
        m = row["model"]
        if any(m.get(k) for k in hits):
            rows.append(
                {
                    "record_id": t.record_id,
                    "entity_type": t.entity_type,
                    "conditioned": t.conditioned,
                    "value": mask_value(t.value, t.entity_type, show_pii),
                    "texts": {k: m.get(k) for k, _ in _texts()} if show_pii else {},
                    "figures": {f.key: m.get(f.key) for f in figures},
                }
            )
    rows.sort(key=lambda r: tuple(-(r["figures"][f.key] or 0) for f in figures))
    return rows[:MAX_LEAK_ROWS]


def _texts() -> list[tuple[str, str]]:
    """Per-target texts the measurements return (key, label), shown with ``show_pii``."""
    return [t for m in MEASUREMENTS.values() for t in m.texts]


def render_html(report: dict[str, Any], targets: Sequence[Target], *, show_pii: bool) -> str:
    """The whole page as a string."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("pii_unlearn.audit", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _fmt
    env.filters["cell"] = lambda value, figure, digits=None: figure.unit.cell(value, digits)
    template = env.get_template("report.html.j2")
    figures = _present(report, all_figures())
    leakage = [f for f in figures if f.kind == TARGETS]
    summary = [f for f in leakage if f.summary]
    per_side = [f for f in figures if f.kind == SIDE]
    per_target = [f for f in leakage if f.per_target]
    return template.render(
        report=report,
        sides=_sides(report),
        leakage=leakage,
        utility=[f for f in figures if f.kind != TARGETS],
        per_target=per_target,
        texts=_texts(),
        entities=_entities(report),
        charts={
            "leakage": leakage_chart(report, summary) if summary else None,
            "distributions": [
                (f, distribution_chart(report, f)) for f in per_target if f.unit.bounds is None and f.summary
            ],
            "utility": utility_chart(report, per_side) if per_side else None,
        },
        leaks=leak_rows(report, targets, show_pii, per_target),
        show_pii=show_pii,
    )


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell ("–" for a missing one)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)

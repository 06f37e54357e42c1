"""``report.html``: one self-contained page (no network) with the audit's tables and charts.

Charts are drawn with matplotlib's object API (no pyplot global state) and
embedded as base64 PNG; the page has no external stylesheet, script, font or
image. PII values are masked unless the audit ran with ``show_pii``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

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
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _sides(report: dict[str, Any]) -> list[str]:
    return ["baseline", "model"] if report.get("baseline") else ["model"]


def leakage_chart(report: dict[str, Any]) -> str:
    """Grouped bars per entity type: ERR, E-Hit and exposure (share of its ceiling), each side."""
    import numpy as np

    sides = _sides(report)
    entities = list(report["model"]["err"]["by_entity"])
    panels = [("err", "ERR"), ("e_hit", "E-Hit"), ("exposure", "exposure (bits)")]
    fig = _figure(4.2 * len(panels), 0.35 * len(entities) + 1.6)
    y = np.arange(len(entities))
    height = 0.8 / len(sides)
    for p, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for s, side in enumerate(sides):
            vals = [report[side][key]["by_entity"].get(e) for e in entities]
            ax.barh(
                y + (s - (len(sides) - 1) / 2) * height,
                [v if v is not None else 0.0 for v in vals],
                height=height,
                color=SIDE_COLOURS[side],
                label=side,
            )
        ax.set_yticks(y, entities if p == 0 else [""] * len(entities), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        if key == "exposure" and report["model"]["exposure"].get("ceiling"):
            ax.axvline(report["model"]["exposure"]["ceiling"], color="#444", lw=0.8, ls="--")
        else:
            ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=8)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=len(sides), bbox_to_anchor=(0.5, 1.04))
    return _png(fig)


def exposure_chart(report: dict[str, Any]) -> str:
    """Histogram of per-value exposure, each side, with the ceiling marked."""
    sides = _sides(report)
    ceiling = report["model"]["exposure"].get("ceiling") or 1.0
    fig = _figure(6.5, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    bins = [ceiling * i / 20 for i in range(21)]
    data = [
        [row[side]["exposure"] for row in report["targets"] if row[side].get("exposure") is not None]
        for side in sides
    ]
    ax.hist(data, bins=bins, color=[SIDE_COLOURS[s] for s in sides], label=sides)
    ax.axvline(ceiling, color="#444", lw=0.8, ls="--")
    ax.set_xlabel("exposure (bits); dashed: ceiling log2(C+1)", fontsize=9)
    ax.set_ylabel("values", fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def utility_chart(report: dict[str, Any]) -> str:
    """Held-out perplexity of each side."""
    sides = _sides(report)
    fig = _figure(3.6, 2.2)
    ax = fig.add_subplot(1, 1, 1)
    vals = [report[side]["perplexity"] or 0.0 for side in sides]
    ax.bar(sides, vals, color=[SIDE_COLOURS[s] for s in sides])
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("held-out perplexity", fontsize=9)
    ax.tick_params(labelsize=8)
    return _png(fig)


def leak_rows(report: dict[str, Any], targets: Sequence[Target], show_pii: bool) -> list[dict[str, Any]]:
    """The values the audited model still gives away (greedy or sampled), most exposed first."""
    rows = []
    for t, row in zip(targets, report["targets"], strict=True):
        m = row["model"]
        if m.get("err") or m.get("e_hit"):
            rows.append(
                {
                    "record_id": t.record_id,
                    "entity_type": t.entity_type,
                    "conditioned": t.conditioned,
                    "value": mask_value(t.value, t.entity_type, show_pii),
                    "continuation": m.get("continuation") if show_pii else None,
                    **{k: m.get(k) for k in ("err", "frs", "e_hit", "exposure")},
                }
            )
    rows.sort(key=lambda r: (-(r["err"] or 0), -(r["exposure"] or 0)))
    return rows[:MAX_LEAK_ROWS]


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
    template = env.get_template("report.html.j2")
    leaks = leak_rows(report, targets, show_pii)
    return template.render(
        report=report,
        sides=_sides(report),
        figures=SUMMARY_ROWS,
        entities=list(report["model"]["err"]["by_entity"]),
        charts={
            "leakage": leakage_chart(report),
            "exposure": exposure_chart(report),
            "utility": utility_chart(report),
        },
        leaks=leaks,
        show_pii=show_pii,
    )


#: Rows of the summary table: label, report key inside a side, and how to read it.
SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("ERR", "err", "share of values greedy decoding reproduces exactly"),
    ("FRS", "frs", "character similarity of the greedy continuation"),
    ("E-Hit", "e_hit", "share of values found in K samples"),
    ("exposure (bits)", "exposure", "rank among same-format candidates; about 1.3 bits = never seen"),
    ("MIA AUC", "mia_auc", "Min-K% membership vs fake twins; 0.5 = cannot tell"),
    ("paraphrase (greedy)", "paraphrase_greedy", "value in the answer to a reworded prompt"),
    ("paraphrase (sampled)", "paraphrase_sampled", "value in K sampled answers to reworded prompts"),
    ("re-inversion", "reinversion", "share of values `invert` finds again with new seeds"),
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

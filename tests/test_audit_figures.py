"""The figure registry of ``audit``: every figure documented, every measurement's output well formed.

A measurement declares its figures (key, label, description, unit, reduction);
report.json, the HTML page, the terminal tables and ``demo`` iterate over them.
These tests hold every registered measurement to that contract, so a new one is
checked without a test of its own.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from pii_unlearn.artifacts import read_records
from pii_unlearn.audit.figures import COMPARISON, SIDE, TARGETS, Figure, check_unique
from pii_unlearn.audit.gate import check_names, parse_condition
from pii_unlearn.audit.metrics import (
    MEASUREMENTS,
    AuditInputs,
    Measured,
    ModelRun,
    all_figures,
    measurement,
    skipped,
)
from pii_unlearn.audit.report import figure_block, model_figures, target_details
from pii_unlearn.audit.runner import report_shape, run_audit
from pii_unlearn.audit.settings import AuditSettings
from pii_unlearn.cli.audit import entity_table, summary_table
from pii_unlearn.cli.demo import before_after_table
from pii_unlearn.errors import InputError
from pii_unlearn.synth.victim import PLANTED_FILE

SCHEMA = Path(__file__).resolve().parents[1] / "pii_unlearn" / "audit" / "SCHEMA.md"
#: Planted records of the session victim each measurement runs on (a tiny set keeps it fast).
TINY = 3


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _schema_rows(section: str) -> dict[str, str]:
    """Rows of the table under ``## section`` in SCHEMA.md: each backticked key of the first cell -> row."""
    text = SCHEMA.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in body.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            for key in re.findall(r"`([^`]+)`", first):
                rows[key] = line
    return rows


@pytest.mark.parametrize("figure", all_figures(), ids=lambda f: f.key)
def test_every_figure_is_documented(figure: Figure) -> None:
    """A label for tables, one sentence for a privacy officer, and its SCHEMA.md entry."""
    assert figure.label.strip() and len(figure.label) <= 24, figure.label
    sentence = figure.description.strip()
    assert sentence[0].isupper() and sentence.endswith("."), sentence
    assert not re.search(r"[.!?]\s+[A-Z]", sentence[:-1]), f"one sentence, please: {sentence}"
    top, side = _schema_rows("Top level"), _schema_rows("A side (`model`, `baseline`)")
    if figure.kind == COMPARISON:
        assert figure.key in top, f"{figure.key}: no row in SCHEMA.md's top-level table"
    else:
        assert figure.key in side, f"{figure.key}: no row in SCHEMA.md's table of a side"
        if figure.top_level and figure.top_level != figure.key:  # else its side row says it
            assert figure.top_level in top, f"{figure.top_level}: no row in SCHEMA.md's top-level table"
        for key in figure.extra_keys:
            assert f"`{key}`" in side[figure.key], f"{figure.key}: extra key {key} not in its SCHEMA.md row"


def test_registration_refuses_duplicates() -> None:
    before = dict(MEASUREMENTS)
    err = next(f for f in all_figures() if f.key == "err")

    def nothing(run: ModelRun) -> Measured:
        return Measured({})

    with pytest.raises(ValueError, match="already registered"):
        measurement("greedy", (Figure("fresh", "fresh", "A fresh figure.", err.unit, columns=("x",)),))(
            nothing
        )
    with pytest.raises(ValueError, match="declared twice: err"):
        measurement("fresh", (err,))(nothing)
    with pytest.raises(ValueError, match="top-level key declared twice: reinversion_rate"):
        check_unique(
            [
                *all_figures(),
                Figure("r2", "r2", "A figure.", err.unit, columns=("x",), headline="reinversion_rate"),
            ]
        )
    with pytest.raises(ValueError, match="columns"):
        Figure("bad", "bad", "Two columns for a mean.", err.unit, columns=("a", "b"))
    assert before == MEASUREMENTS


@pytest.fixture(scope="module")
def tiny_run(victim: Any, victim_dir: Path) -> ModelRun:
    """Every measurement on, on a few planted records of the session victim, with small budgets."""
    records = read_records(victim_dir / PLANTED_FILE)[:TINY]
    settings = AuditSettings.preset(
        num_samples=2, candidates=7, probes_per_target=1, probe_samples=1, reinversion_samples=8, threads=1
    )
    return ModelRun(victim, "model", AuditInputs.build(records, settings), settings)


@pytest.mark.parametrize("name", list(MEASUREMENTS))
def test_every_measurement_fills_its_figures(name: str, tiny_run: ModelRun) -> None:
    """Columns of the declared length, a breakdown per figure, declared extras, JSON without NaN."""
    measure = MEASUREMENTS[name]
    inputs = tiny_run.inputs
    n = len(inputs.targets)
    result = measure.compute(tiny_run)
    assert isinstance(result, Measured)
    assert result.extra.get("status", "ok") == "ok", result.extra  # every measurement runs here
    assert set(result.columns) == set(measure.columns)
    for col, values in result.columns.items():
        assert len(values) == n, col
        assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in values), col
    for key, _ in measure.texts:
        assert len(result.texts[key]) == n and all(isinstance(t, str) for t in result.texts[key])
    for figure in measure.figures:
        block = figure_block(figure, result, inputs)
        assert isinstance(block["overall"], float), (figure.key, block)
        assert set(block["by_entity"]) == set(inputs.entity_types)
        assert all(v is None or isinstance(v, float) for v in block["by_entity"].values())
        assert isinstance(block["n"], int) and 0 < block["n"] <= n
        assert set(figure.extra_keys) <= set(block), (figure.key, block)
        values = [block[p] for p in ("overall", "conditioned", "unconditioned")]
        values += list(block["by_entity"].values())
        if figure.unit.bounds is not None:
            lo, hi = figure.unit.bounds
            assert all(lo <= v <= hi for v in values if v is not None), (figure.key, block)
        json.dumps(block, allow_nan=False)  # no bare NaN in report.json
    others = {m: skipped(MEASUREMENTS[m], n, "not this test") for m in MEASUREMENTS if m != name}
    rows = target_details(inputs, {"model": {**others, name: result}}, show_pii=True)
    for row in rows:
        for figure in measure.figures:
            if figure.per_target:
                assert figure.key in row["model"]
    json.dumps(rows, allow_nan=False)


def test_report_shape_and_gate_follow_the_registry(victim_dir: Path) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:TINY]
    settings = AuditSettings.preset(quick=True)
    inputs = AuditInputs.build(records, settings)
    full = report_shape(inputs, AuditSettings.every_measurement(), baseline=True)
    figures = all_figures()
    for figure in figures:
        if figure.kind == COMPARISON:
            assert figure.key in full and figure.key not in full["model"]
            continue
        assert figure.key in full["model"] and figure.key in full["baseline"]
        if figure.top_level:
            assert full[figure.top_level] is not None
        if figure.kind == TARGETS:
            for key in figure.extra_keys:
                assert full["model"][figure.key][key] is not None
    measured = {
        m: Measured({c: [0.0] * len(inputs.targets) for c in MEASUREMENTS[m].columns}) for m in MEASUREMENTS
    }
    side = model_figures(inputs, measured, {f.key: 1.0 for f in figures if f.kind == SIDE})
    assert list(side) == [f.key for f in figures if f.kind != COMPARISON]
    names = [f.top_level for f in figures if f.top_level] + [
        f"delta.{f.key}" for f in figures if f.kind == SIDE
    ]
    names += [f"baseline.{f.key}.by_entity.{inputs.entity_types[0]}" for f in figures if f.kind == TARGETS]
    check_names([parse_condition(f"{n}>0") for n in names], full, full, figures=figures)
    for name in ("counts.targets", "settings.candidates", "schema_version"):
        with pytest.raises(InputError, match="is not a figure of the audit"):
            check_names([parse_condition(f"{name}>0")], full, full, figures=figures)


def _printed(*tables: Any) -> str:
    console = Console(file=io.StringIO(), width=400)
    for table in tables:
        console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_every_view_shows_every_figure(victim: Any, victim_dir: Path, tmp_path: Path) -> None:
    """The terminal tables, the HTML page and demo's table name the figures the registry declares."""
    records = read_records(victim_dir / PLANTED_FILE)[:TINY]
    settings = AuditSettings.preset(quick=True, num_samples=2, candidates=7, threads=1)
    result = run_audit(victim, records, tmp_path / "report", baseline=victim, settings=settings)
    report = result.report
    terminal = _printed(summary_table(report), entity_table(report))
    demo = _printed(before_after_table(report, "none"))
    page = html.unescape((tmp_path / "report" / "report.html").read_text())
    for figure in all_figures():
        assert figure.label in terminal, figure.label
        assert figure.label in page and figure.description in page, figure.key
        if figure.summary:
            assert figure.label in demo, figure.label

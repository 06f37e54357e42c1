"""Tests for the synthetic PII generator and the demo victim model."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pii_unlearn.artifacts import read_records
from pii_unlearn.cli import app
from pii_unlearn.pii.anonymize import replace_spans
from pii_unlearn.pii.fakes import fake_value, make_faker
from pii_unlearn.synth.fake import fill_template
from pii_unlearn.synth.victim import (
    HELDOUT_FILE,
    PLANTED_FILE,
    VICTIM_ENTITIES,
    VictimConfig,
    planted_records,
)


def test_fill_template_spans_are_exact() -> None:
    text, spans = fill_template(
        "Hi {PERSON}, call {PHONE_NUMBER}.", {"PERSON": "Ann Lee", "PHONE_NUMBER": "555-123-4567"}
    )
    assert text == "Hi Ann Lee, call 555-123-4567."
    assert [text[s["start"] : s["end"]] for s in spans] == ["Ann Lee", "555-123-4567"]
    assert (
        replace_spans(text, spans, lambda s: f"<{s['entity_type']}>") == "Hi <PERSON>, call <PHONE_NUMBER>."
    )


def test_fake_values_are_deterministic_per_seed() -> None:
    a = [fake_value(make_faker(3), t) for t in VICTIM_ENTITIES]
    b = [fake_value(make_faker(3), t) for t in VICTIM_ENTITIES]
    c = [fake_value(make_faker(4), t) for t in VICTIM_ENTITIES]
    assert a == b and a != c


def test_planted_records_cover_eight_types_deterministically() -> None:
    recs = planted_records(VictimConfig(records=12, seed=1))
    assert {s.entity_type for r in recs for s in r.spans} == set(VICTIM_ENTITIES)
    assert [r.text for r in recs] == [r.text for r in planted_records(VictimConfig(records=12, seed=1))]


def test_victim_files_and_memorisation(victim_dir: Path) -> None:
    planted = read_records(victim_dir / PLANTED_FILE)
    heldout = read_records(victim_dir / HELDOUT_FILE)
    assert len(planted) == 48 and all(r.spans for r in planted)
    assert heldout and not any(r.spans for r in heldout)
    planted_values = {r.span_text(s) for r in planted for s in r.spans}
    assert not any(v in h.text for h in heldout for v in planted_values)
    manifest = json.loads((victim_dir / "pii_unlearn_manifest.json").read_text())
    assert manifest["seed"] == 0
    assert manifest["settings"]["report"]["conditioned_err"] >= 0.9


def test_make_victim_cli_bad_output(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["make-victim", "--output", str(tmp_path / "no" / "such")])
    assert result.exit_code == 2
    assert "output folder does not exist" in result.output


def test_help_lists_subcommands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ["detect", "invert", "risk-score", "unlearn", "audit", "make-victim"]:
        assert name in result.output

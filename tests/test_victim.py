"""Tests for the synthetic PII generator and the demo victim model."""

from __future__ import annotations

import json
import random
import statistics
import string
from datetime import datetime
from pathlib import Path

import faker.providers.date_time as faker_dates
import pytest
from typer.testing import CliRunner

from pii_unlearn import entities as E
from pii_unlearn.artifacts import read_records
from pii_unlearn.cli import app
from pii_unlearn.pii.anonymize import replace_spans
from pii_unlearn.pii.fakes import fake_value, make_faker
from pii_unlearn.pii.shapes import PlausibleCandidates
from pii_unlearn.synth.fake import fill_template, template_slots
from pii_unlearn.synth.victim import (
    CONTROL_FILE,
    HELDOUT_FILE,
    HELDOUT_TEMPLATES,
    PLANTED_FILE,
    VICTIM_ENTITIES,
    VICTIM_TEMPLATES,
    VictimConfig,
    build_victim,
    control_records,
    planted_records,
    tokenizer_texts,
    train_tokenizer,
)

#: A victim small enough to build in a few seconds (not trained to memorise).
TINY = {"records": 12, "filler": 8, "heldout": 4, "decoys": 48, "hidden_size": 32, "layers": 1, "heads": 2}


def _values(records) -> set[str]:
    return {r.span_text(s) for r in records for s in r.spans}


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


def test_fake_values_and_candidates_are_the_same_on_any_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faker counts ages from today: no fake value, victim record or exposure candidate may."""

    def draws() -> list[str]:
        values = [fake_value(make_faker(3), t) for t in VICTIM_ENTITIES for _ in range(5)]
        records = [r.text for r in planted_records(VictimConfig(records=12, seed=1))]
        sampler, rng = PlausibleCandidates(5, pool_size=200), random.Random(5)
        return values + records + sampler.draw("May 2, 1961", E.DATE_TIME, 20, rng)

    today = draws()

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return datetime(2031, 6, 15, tzinfo=tz)

    monkeypatch.setattr(faker_dates, "datetime", Later)
    assert fake_value(make_faker(3), E.DATE_TIME)  # the patched clock is in use
    assert draws() == today


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


@pytest.mark.parametrize("templates", ["train", "heldout"])
def test_tokenizer_never_sees_planted_or_control_values(templates: str) -> None:
    config = VictimConfig(records=24, decoys=96, seed=5, templates=templates)
    texts = tokenizer_texts(config)
    planted = planted_records(config)
    seen = _values(planted) | _values(control_records(config, planted))
    assert not [v for v in seen if any(v in t for t in texts)]
    # The same templates, though: the tokenizer knows the domain, not the values.
    heads = {t.split("{")[0] for t in (VICTIM_TEMPLATES if templates == "train" else HELDOUT_TEMPLATES)}
    assert all(any(t.startswith(h) for t in texts) for h in heads)


def test_true_values_tokenize_like_same_shape_random_values() -> None:
    """The confound the old tokenizer had: true values shorter than random ones (8.5 vs 9.4 tokens)."""
    config = VictimConfig(seed=0)
    tokenizer = train_tokenizer(tokenizer_texts(config), config.vocab_size)
    rng = random.Random(0)

    def count(value: str) -> int:
        return len(tokenizer(" " + value, add_special_tokens=False)["input_ids"])

    true, redrawn = [], []
    for value in _values(planted_records(config)):
        if any(c.isdigit() for c in value):
            true.append(count(value))
            for _ in range(5):
                redrawn.append(count("".join(rng.choice(string.digits) if c.isdigit() else c for c in value)))
    assert abs(statistics.mean(true) - statistics.mean(redrawn)) < 0.5


def test_template_sets_are_disjoint_and_cover_the_entities() -> None:
    assert not set(VICTIM_TEMPLATES) & set(HELDOUT_TEMPLATES)
    heads = {t.split("{")[0].strip() for t in VICTIM_TEMPLATES}
    assert not heads & {t.split("{")[0].strip() for t in HELDOUT_TEMPLATES}
    for templates in (VICTIM_TEMPLATES, HELDOUT_TEMPLATES):
        assert all(len(template_slots(t)) >= 2 for t in templates)
        assert set(VICTIM_ENTITIES) <= {s for t in templates for s in template_slots(t)}


def test_heldout_templates_stay_in_the_victim_builder() -> None:
    package = Path(__file__).parents[1] / "pii_unlearn"
    users = [p for p in package.rglob("*.py") if "HELDOUT_TEMPLATES" in p.read_text()]
    assert [p.relative_to(package).as_posix() for p in users] == ["synth/victim.py"]
    for path in package.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".txt", ".yaml", ".json"}:
            text = path.read_text(encoding="utf-8", errors="ignore")
            if path.name != "victim.py":
                assert not any(t.split("{")[0] in text for t in HELDOUT_TEMPLATES), path


def test_values_come_in_several_formats() -> None:
    records = planted_records(VictimConfig(records=64, seed=0))
    by_type: dict[str, set[str]] = {}
    for r in records:
        for s in r.spans:
            shape = "".join("9" if c.isdigit() else "a" if c.isalpha() else c for c in r.span_text(s))
            by_type.setdefault(s.entity_type, set()).add(shape)
    assert len(by_type["DATE_TIME"]) >= 4 and len(by_type["PHONE_NUMBER"]) >= 4
    assert any("," in r.span_text(s) for r in records for s in r.spans if s.entity_type == "LOCATION")


def test_heldout_victim_builds(tmp_path: Path) -> None:
    config = VictimConfig(templates="heldout", max_epochs=2, check_every=2, **TINY)
    report = build_victim(tmp_path / "v", config)
    planted = read_records(tmp_path / "v" / PLANTED_FILE)
    assert report.templates == "heldout" and len(planted) == 12
    assert all(r.model_extra and HELDOUT_TEMPLATES[r.model_extra["template"]] for r in planted)
    assert {s.entity_type for r in planted for s in r.spans} >= {"IP_ADDRESS", "US_SSN"}


def test_control_trains_on_other_values(tmp_path: Path) -> None:
    """A control memorises its own draw and none of the planted values it is audited on."""
    config = VictimConfig(control=True, lr=1e-2, max_epochs=80, target_rate=0.9, **TINY)
    report = build_victim(tmp_path / "c", config)
    planted = read_records(tmp_path / "c" / PLANTED_FILE)
    seen = read_records(tmp_path / "c" / CONTROL_FILE)
    assert [r.text for r in planted] == [r.text for r in planted_records(VictimConfig(**TINY))]
    assert not _values(planted) & _values(seen)
    assert [r.model_extra["template"] for r in planted] == [r.model_extra["template"] for r in seen]
    assert report.control and report.conditioned_err >= 0.5
    assert report.planted_err == 0.0
    manifest = json.loads((tmp_path / "c" / "pii_unlearn_manifest.json").read_text())
    assert manifest["settings"]["victim"]["control"] is True


def _tiny_llama(path: Path) -> Path:
    """A randomly initialised two-layer Llama with tied embeddings (SmolLM2's layout), as an HF dir."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from pii_unlearn.synth.victim import SEPARATOR, support_records

    texts = [r.text for r in support_records(64, 9, "s")] + tokenizer_texts(VictimConfig(**TINY))
    tokenizer = train_tokenizer(texts, 512)
    sep = tokenizer.convert_tokens_to_ids(SEPARATOR)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        bos_token_id=sep,
        eos_token_id=sep,
        pad_token_id=sep,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("lora", [False, True])
def test_base_fine_tune_keeps_the_base_tokenizer(tmp_path: Path, lora: bool) -> None:
    from pii_unlearn.checkpoint import load_model

    base = _tiny_llama(tmp_path / "base")
    config = VictimConfig.for_base(base, lora=lora, records=8, filler=8, heldout=4, lr=3e-3, max_epochs=2)
    report = build_victim(tmp_path / "v", config)
    assert report.base == str(base) and report.steps == 4 and report.history
    loaded = load_model(tmp_path / "v", device="cpu")
    assert loaded.model_type == "llama" and loaded.model.config.tie_word_embeddings
    assert loaded.tokenizer.get_vocab() == load_model(base, device="cpu").tokenizer.get_vocab()
    assert not list((tmp_path / "v").glob("adapter*"))
    assert len(read_records(tmp_path / "v" / PLANTED_FILE)) == 8
    heldout = read_records(tmp_path / "v" / HELDOUT_FILE)
    assert heldout and not any(r.spans for r in heldout)


def test_base_victim_generation_stops_at_its_record_separator(tmp_path: Path) -> None:
    # a base whose generation config names another EOS than its tokenizer (SmolLM2 as GGUF)
    from transformers import GenerationConfig

    from pii_unlearn.checkpoint import load_model

    base = _tiny_llama(tmp_path / "base")
    loaded = load_model(base, device="cpu")
    sep = loaded.tokenizer.eos_token_id
    GenerationConfig(bos_token_id=sep, eos_token_id=sep + 1, pad_token_id=sep).save_pretrained(base)
    config = VictimConfig.for_base(base, records=4, filler=4, heldout=2, lr=3e-3, max_epochs=1)
    build_victim(tmp_path / "v", config)
    victim = load_model(tmp_path / "v", device="cpu")
    assert victim.model.generation_config.eos_token_id == [sep + 1, sep]


def test_make_victim_cli_base_and_bad_template_set(tmp_path: Path) -> None:
    base = _tiny_llama(tmp_path / "base")
    runner = CliRunner()
    bad = runner.invoke(app, ["make-victim", "-o", str(tmp_path / "x"), "--templates", "mine"])
    assert bad.exit_code == 2
    args = ["make-victim", "-o", str(tmp_path / "v"), "--base", str(base), "--records", "6"]
    result = runner.invoke(app, [*args, "--templates", "heldout", "--control", "--time-budget", "1"])
    assert result.exit_code == 0, result.output
    assert "control written to" in result.output
    assert (tmp_path / "v" / CONTROL_FILE).exists()


def test_support_heldout_shares_no_sentence_with_the_filler() -> None:
    from pii_unlearn.synth.victim import _sentences, support_records

    filler = support_records(16, 1, "f")
    heldout = support_records(32, 2, "h", avoid=[r.text for r in filler])
    seen = {s for r in filler for s in _sentences(r.text)}
    assert len(heldout) == 32 and not any(seen & set(_sentences(r.text)) for r in heldout)

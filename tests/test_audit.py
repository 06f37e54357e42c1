"""Tests for ``audit``: each metric on hand-made cases, the report files, the gate and bad input."""

from __future__ import annotations

import copy
import json
import math
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from pii_unlearn import lm
from pii_unlearn.artifacts import Record, read_records, record_line
from pii_unlearn.audit.gate import check_names, evaluate, parse_condition
from pii_unlearn.audit.html import render_html
from pii_unlearn.audit.metrics import (
    MEASUREMENTS,
    AuditInputs,
    ModelRun,
    exposure_bits,
    fuzzy_score,
)
from pii_unlearn.audit.report import auc_of, breakdown, mean_of
from pii_unlearn.audit.runner import run_audit
from pii_unlearn.audit.settings import AuditSettings
from pii_unlearn.audit.variants import fake_twin, format_candidates, paraphrase_probes, random_same_format
from pii_unlearn.cli import app
from pii_unlearn.errors import InputError
from pii_unlearn.extraction import Target, extraction_targets
from pii_unlearn.lm import continuation_logprobs, generate, mean_kl, sample_continuations, token_logprobs
from pii_unlearn.pii.fakes import make_faker
from pii_unlearn.synth.victim import PLANTED_FILE

#: Records of the session victim used by the end-to-end tests (a subset keeps them fast).
SUBSET = 12


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny victim runs fastest single-threaded, as the audit itself runs it (lm.cpu_threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def subset_records(victim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first planted records of the session victim as a JSONL file."""
    path = tmp_path_factory.mktemp("records") / "subset.jsonl"
    records = read_records(victim_dir / PLANTED_FILE)[:SUBSET]
    path.write_text("".join(record_line(r) for r in records))
    return path


@pytest.fixture(scope="module")
def clean_model(victim: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model of the victim's shape and tokenizer that never saw any data (random weights)."""
    from pii_unlearn.checkpoint import save_model

    torch.manual_seed(123)
    model = type(victim.model)(victim.model.config)
    out = tmp_path_factory.mktemp("clean") / "clean"
    save_model(model, victim.tokenizer, out)
    return out


@pytest.fixture(scope="module")
def leaking_run(victim_dir: Path, subset_records: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``audit --quick --fail-on 'err>0'`` on the victim itself: its result and report folder."""
    out = tmp_path_factory.mktemp("reports") / "leaking"
    result = CliRunner().invoke(
        app,
        [
            "audit",
            "--model",
            str(victim_dir),
            "--records",
            str(subset_records),
            "--output",
            str(out),
            "--quick",
            "--device",
            "cpu",
            "--fail-on",
            "err>0",
        ],
    )
    return {"result": result, "out": out}


# --- metrics on hand-made cases ------------------------------------------------------------------


def test_format_candidates_keep_the_format() -> None:
    rng = random.Random(0)
    value = "Ab-12 cD@x.org"
    cands = format_candidates(value, 50, rng)
    assert len(cands) == 50 and len(set(cands)) == 50 and value not in cands
    for c in cands:
        assert len(c) == len(value)
        for a, b in zip(value, c, strict=True):
            if a.isdigit():
                assert b.isdigit()
            elif a.isupper():
                assert b.isupper()
            elif a.islower():
                assert b.islower()
            else:
                assert a == b
    # a format with few variants gives what there is
    assert len(format_candidates("7", 50, rng)) == 9


def test_exposure_bits_by_rank() -> None:
    assert exposure_bits(-1.0, [-5.0, -4.0, -3.0]) == (2.0, 1)  # the most likely: log2(4) bits
    assert exposure_bits(-9.0, [-5.0, -4.0, -3.0]) == (0.0, 4)  # the least likely: 0 bits
    bits, rank = exposure_bits(-4.5, [-5.0, -4.0, -3.0])
    assert rank == 3 and bits == pytest.approx(2.0 - math.log2(3))
    assert exposure_bits(-4.0, [-4.0])[1] == 2  # a tie counts against the true value


def test_fuzzy_score_cuts_to_the_target() -> None:
    assert fuzzy_score(" 555-123-4567 and more", " 555-123-4567") == 1.0
    assert fuzzy_score(" 555-123-0000", " 555-123-4567") == pytest.approx(1 - 4 / 13)
    assert fuzzy_score("", " 555") == 0.0


def test_auc() -> None:
    assert auc_of([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc_of([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auc_of([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert auc_of([None], [1.0]) is None


def test_breakdown_groups() -> None:
    targets = [
        Target("a", "PERSON", "x", " A", "A", False),
        Target("a", "PHONE_NUMBER", "x A", " 1", "1", True),
        Target("b", "PERSON", "x", " B", "B", False),
        Target("b", "PHONE_NUMBER", "x B", " 2", "2", True),
    ]
    block = breakdown([[1.0, 0.0, 0.0, None]], targets, ["PERSON", "PHONE_NUMBER"], mean_of)
    assert block == {
        "overall": pytest.approx(1 / 3),
        "conditioned": 0.0,
        "unconditioned": 0.5,
        "by_entity": {"PERSON": 0.5, "PHONE_NUMBER": 0.0},
        "n": 3,
    }


def test_fake_twin_swaps_every_value() -> None:
    rec = Record.model_validate(
        {
            "id": 1,
            "text": "Hi Ann Lee, call 555-123-4567 now.",
            "spans": [
                {"start": 3, "end": 10, "entity_type": "PERSON"},
                {"start": 17, "end": 29, "entity_type": "PHONE_NUMBER"},
            ],
        }
    )
    twin = fake_twin(rec, make_faker(5), avoid={"Ann Lee"})
    assert twin.text.startswith("Hi ") and twin.text.endswith(" now.")
    assert [s.entity_type for s in twin.spans] == ["PERSON", "PHONE_NUMBER"]
    values = [twin.span_text(s) for s in twin.spans]
    assert values[0] != "Ann Lee" and values[1] != "555-123-4567"
    assert re.search(r"\d", values[1])
    assert [s.original_start for s in twin.spans] == [3, 17]  # type: ignore[attr-defined]


def test_paraphrase_probes_skip_the_records_own_context() -> None:
    rec = Record.model_validate(
        {
            "id": 1,
            "text": "Employee Ann Lee can be reached at 555-123-4567.",
            "spans": [
                {"start": 9, "end": 16, "entity_type": "PERSON"},
                {"start": 35, "end": 47, "entity_type": "PHONE_NUMBER"},
            ],
        }
    )
    targets = extraction_targets([rec])
    probes, dropped = paraphrase_probes([rec], targets)
    assert dropped == 1  # "Ann Lee can be reached at" ends the record's own prefix
    assert [p.prompt for p in probes] == ["What is the phone number of Ann Lee?"]
    assert probes[0].value == "555-123-4567" and probes[0].target_index == 1


def test_continuation_logprobs_match_token_logprobs(victim: Any) -> None:
    contexts = ["Customer", "", "Employee Ann Lee can be reached at"]
    conts = [[" Ann Lee", " 12-34"], ["Hello", " x"], [" 555-123-4567"]]
    fast = continuation_logprobs(victim.model, victim.tokenizer, contexts, conts, batch_size=3)
    for ctx, cs, got in zip(contexts, conts, fast, strict=True):
        want = token_logprobs(victim.model, victim.tokenizer, [ctx] * len(cs), cs)
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=1e-4)


def test_shared_prefix_sampler_is_seeded_and_top1_is_greedy(victim: Any) -> None:
    prompts = ["Customer", "", "Employee Ann Lee can be reached at"]
    greedy = generate(victim.model, victim.tokenizer, prompts, max_new_tokens=6)
    top1 = sample_continuations(victim.model, victim.tokenizer, prompts, [6, 6, 6], num_samples=2, top_k=1)
    assert [[g[0], g[0]] for g in greedy] == top1
    a = sample_continuations(victim.model, victim.tokenizer, prompts, [3, 5, 4], num_samples=3, seed=9)
    b = sample_continuations(victim.model, victim.tokenizer, prompts, [3, 5, 4], num_samples=3, seed=9)
    assert a == b and [len(x) for x in a] == [3, 3, 3]


def _run(victim: Any, records: list[Record], **overrides: Any) -> ModelRun:
    settings = AuditSettings.preset(quick=True, **overrides)
    return ModelRun(victim, "model", AuditInputs.build(records, settings), settings)


def test_never_seen_values_have_about_one_bit_of_exposure(victim: Any) -> None:
    """A random value is as likely as its same-format candidates: its rank is uniform."""
    rng = random.Random(7)
    records = []
    for i in range(48):
        value = random_same_format("000-00-0000", rng)
        text = f"Reference {value}"
        records.append(
            Record.model_validate(
                {"id": i, "text": text, "spans": [{"start": 10, "end": len(text), "entity_type": "US_SSN"}]}
            )
        )
    candidates = 31
    exposures = MEASUREMENTS["exposure"].compute(_run(victim, records, candidates=candidates))
    values = exposures.columns["exposure"]
    mean = sum(values) / len(values)  # type: ignore[arg-type]
    n = candidates + 1
    expected = math.log2(n) - sum(math.log2(r) for r in range(1, n + 1)) / n  # about 1.3 bits
    assert abs(mean - expected) < 0.6, (mean, expected)
    assert 0.5 < mean < 2.0


def test_memorised_values_are_exposed_and_members(victim: Any, victim_dir: Path) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:8]
    run = _run(victim, records)
    exposure = MEASUREMENTS["exposure"].compute(run)
    conditioned = [
        e for e, t in zip(exposure.columns["exposure"], run.inputs.targets, strict=True) if t.conditioned
    ]
    ceiling = math.log2(run.settings.candidates + 1)
    assert sum(conditioned) / len(conditioned) > 0.9 * ceiling  # type: ignore[arg-type]
    mia = MEASUREMENTS["mia"].compute(run)
    assert auc_of(mia.extra["record_member_scores"], mia.extra["record_twin_scores"]) > 0.9


def test_sampling_is_deterministic_for_a_seed(victim: Any, victim_dir: Path) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:4]
    first = MEASUREMENTS["sampled"].compute(_run(victim, records, num_samples=2))
    again = MEASUREMENTS["sampled"].compute(_run(victim, records, num_samples=2))
    assert first.columns == again.columns


def test_identical_models_have_zero_kl(victim: Any) -> None:
    texts = ["The river rose slowly after the rain.", "A short note about bread and patience."]
    assert mean_kl(victim.model, victim.model, victim.tokenizer, texts) == pytest.approx(0.0, abs=1e-9)
    other = copy.deepcopy(victim.model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert mean_kl(victim.model, other, victim.tokenizer, texts) > 1e-4


def test_reinversion_is_skipped_without_invert(victim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        Record.model_validate(
            {"id": 1, "text": "Hi Ann Lee", "spans": [{"start": 3, "end": 10, "entity_type": "PERSON"}]}
        )
    ]
    monkeypatch.setitem(sys.modules, "pii_unlearn.invert", None)  # import fails
    out = MEASUREMENTS["reinversion"].compute(_run(victim, records))
    assert out.extra["status"] == "skipped" and "invert is not available" in out.extra["reason"]
    assert out.columns["reinverted"] == [None]


# --- the gate ------------------------------------------------------------------------------------


def test_gate_conditions_parse_and_evaluate() -> None:
    c = parse_condition(" err >= 0.5 ")
    assert (c.name, c.op, c.threshold) == ("err", ">=", 0.5)
    assert parse_condition("model.err.by_entity.US_SSN!=1e-3").threshold == 0.001
    for bad in ("err>>0", "err", "> 1", "err > abc", "err => 1", "1err>0"):
        with pytest.raises(InputError):
            parse_condition(bad)
    report = {"err": 0.25, "model": {"err": {"overall": 0.25, "by_entity": {"PERSON": None}}}}
    outcomes = evaluate(
        [
            parse_condition("err>0"),
            parse_condition("model.err.overall<0.1"),
            parse_condition("model.err.by_entity.PERSON>0"),
        ],
        report,
    )
    assert [o.failed for o in outcomes] == [True, False, True]  # a figure not measured fails the gate
    full = {"err": 0.0, "baseline": {"err": {"overall": 0.0}}}
    with pytest.raises(InputError, match="not a number"):
        check_names([parse_condition("nope>0")], full, full)
    with pytest.raises(InputError, match="not measured"):
        check_names([parse_condition("baseline.err.overall>0")], full, {"err": 0.0, "baseline": None})


# --- end to end ----------------------------------------------------------------------------------


def _plain_greedy(victim: Any, target: Target) -> bool:
    """Greedy decoding of one prompt with ``model.generate``, independent of the audit's code."""
    tok = victim.tokenizer
    ids = [tok.bos_token_id, *tok(target.prefix, add_special_tokens=False)["input_ids"]]
    n_new = len(tok(target.target, add_special_tokens=False)["input_ids"]) + 2
    out = victim.model.generate(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
        max_new_tokens=n_new,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    return tok.decode(out[0, len(ids) :], skip_special_tokens=True).startswith(target.target)


def test_gate_fails_the_leaking_victim_and_err_agrees(
    leaking_run: dict, victim: Any, subset_records: Path
) -> None:
    result, out = leaking_run["result"], leaking_run["out"]
    assert result.exit_code == 1, result.output
    assert "err>0" in result.output and "FAILED" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1 and isinstance(report["err"], float) and report["err"] > 0.3
    targets = extraction_targets(read_records(subset_records))
    assert [r["entity_type"] for r in report["targets"]] == [t.entity_type for t in targets]
    plain = [_plain_greedy(victim, t) for t in targets]
    assert [bool(r["model"]["err"]) for r in report["targets"]] == plain
    assert report["err"] == pytest.approx(sum(plain) / len(plain), abs=1e-6)
    assert report["model"]["err"]["conditioned"] > 0.9
    assert report["counts"]["targets"] == len(targets) and report["baseline"] is None
    assert report["gate"] == [{"condition": "err>0", "value": report["err"], "failed": True}]
    assert {"settings", "seeds", "device", "dtype", "counts", "timings"} <= set(report)
    assert report["model"]["reinversion"]["status"] == "skipped"
    assert (out / "pii_unlearn_manifest.json").exists()
    assert (out / "report.json").stat().st_mode & 0o077 == 0


def test_html_is_self_contained_and_masked(leaking_run: dict, subset_records: Path) -> None:
    out = leaking_run["out"]
    html = (out / "report.html").read_text()
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link|iframe)\b", html, re.I)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', html))
    records = read_records(subset_records)
    values = [r.span_text(s) for r in records for s in r.spans]
    assert not any(v in html for v in values)
    shown = render_html(
        json.loads((out / "report.json").read_text()), extraction_targets(records), show_pii=True
    )
    assert any(v in shown for v in values)


def test_gate_passes_a_clean_model(
    clean_model: Path, victim_dir: Path, subset_records: Path, tmp_path: Path
) -> None:
    out = tmp_path / "clean-report"
    result = CliRunner().invoke(
        app,
        [
            "audit",
            "--model",
            str(clean_model),
            "--baseline",
            str(victim_dir),
            "--records",
            str(subset_records),
            "--output",
            str(out),
            "--quick",
            "--device",
            "cpu",
            "--fail-on",
            "err>0",
            "--fail-on",
            "delta.err.overall>0",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["err"] == 0.0 and report["baseline"]["err"]["overall"] > 0.3
    assert report["delta"]["err"]["overall"] < 0
    assert report["ppl_increase_pct"] > 0 and report["kl_drift"] > 0
    assert report["inputs"]["heldout"].endswith("heldout.jsonl")  # found beside the baseline


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("missing records", ["--records", "{tmp}/nope.jsonl"], "no such file"),
        ("no spans", ["--records", "{tmp}/nospans.jsonl"], "no record has PII spans"),
        ("bad expression", ["--fail-on", "err>>0"], "NAME OP NUMBER"),
        ("unknown name", ["--fail-on", "leakage>0"], "not a number in report.json"),
        ("needs a baseline", ["--fail-on", "ppl_increase_pct>2"], "not measured by this audit"),
        ("quick has no re-inversion", ["--quick", "--fail-on", "reinversion_rate>0"], "not measured"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    case: str, extra: list[str], message: str, victim_dir: Path, subset_records: Path, tmp_path: Path
) -> None:
    (tmp_path / "nospans.jsonl").write_text('{"id": 1, "text": "no personal data here"}\n')
    out = tmp_path / "report"
    args = ["audit", "--model", str(victim_dir), "--records", str(subset_records), "--output", str(out)]
    args += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (case, result.output)
    assert message in result.output, (case, result.output)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]


def test_report_dir_must_be_new_or_a_report(victim_dir: Path, subset_records: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an audit report"):
        run_audit(victim_dir, subset_records, out)
    with pytest.raises(InputError, match="is inside the input folder"):
        run_audit(victim_dir, subset_records, victim_dir / "report")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(("load", "expected"), [(0.0, 2), (0.9, 2), (1.4, 2), (1.7, 1), (6.0, 1), (None, 1)])
def test_ranking_threads_are_the_cores_other_processes_leave_idle(
    monkeypatch: pytest.MonkeyPatch, load: float | None, expected: int
) -> None:
    import os

    from pii_unlearn.lm import idle_cores

    def loadavg() -> tuple[float, float, float]:
        if load is None:
            raise OSError("no load average here")
        return (load, load, load)

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", loadavg)
    monkeypatch.setattr(lm, "procs_running", lambda: None)  # a kernel that does not say
    monkeypatch.setattr(lm, "_idle_reading", None)
    assert idle_cores() == expected  # this process's own core is not counted as someone else's


@pytest.mark.parametrize(
    ("reads", "expected"), [([1, 2, 1], 2), ([2, 2, 3], 1), ([1, 1, 1], 2), ([4, 3, 5], 1)]
)
def test_threads_follow_the_run_queue_now_not_the_trailing_load_average(
    monkeypatch: pytest.MonkeyPatch, reads: list[int], expected: int
) -> None:
    import os

    from pii_unlearn.lm import idle_cores

    queue = iter(reads * 3)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.0, 1.0))  # a job that just ended
    monkeypatch.setattr(lm, "procs_running", lambda: next(queue))
    monkeypatch.setattr(lm, "RUN_QUEUE_READS", len(reads))
    monkeypatch.setattr(lm, "RUN_QUEUE_PAUSE", 0.0)
    monkeypatch.setattr(lm, "_idle_reading", None)
    assert idle_cores() == expected


def test_a_reading_of_the_idle_cores_stands_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    reads: list[int] = []

    def count() -> int:
        reads.append(1)
        return 1

    now = [100.0]
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(lm, "procs_running", count)
    monkeypatch.setattr(lm, "RUN_QUEUE_PAUSE", 0.0)
    monkeypatch.setattr(lm, "_idle_reading", None)
    monkeypatch.setattr(lm.time, "monotonic", lambda: now[0])
    assert lm.idle_cores() == 2
    first = len(reads)
    now[0] += lm.IDLE_CORES_TTL / 2
    assert lm.idle_cores() == 2 and len(reads) == first  # within the TTL: no new reading
    now[0] += lm.IDLE_CORES_TTL
    assert lm.idle_cores() == 2 and len(reads) == 2 * first  # after it: read again


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_the_run_queue_is_read_from_the_kernel() -> None:
    count = lm.procs_running()
    assert count is not None and count >= 1  # this test's own thread is running

"""The deeper audit: its statistics on known values, the exposure null, constrained decoding, probes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pii_unlearn.artifacts import Record, read_records
from pii_unlearn.audit.constrained import ShapeVocab, constrained_greedy
from pii_unlearn.audit.gate import check_names, parse_condition
from pii_unlearn.audit.metrics import MEASUREMENTS, AuditInputs, ModelRun, all_figures
from pii_unlearn.audit.probes import quantize_weight
from pii_unlearn.audit.report import figure_block
from pii_unlearn.audit.runner import report_shape
from pii_unlearn.audit.settings import AuditSettings
from pii_unlearn.audit.stats import (
    bootstrap_auc,
    clopper_pearson,
    extrapolated_exposure,
    fit_skewnorm,
    null_rank1_range,
    rate_upper,
)
from pii_unlearn.errors import InputError
from pii_unlearn.pii.shapes import shape_of
from pii_unlearn.synth.victim import PLANTED_FILE, VictimConfig, planted_records


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- statistics ------------------------------------------------------------------------------------


def test_clopper_pearson_known_values() -> None:
    # 0 of n: the upper end is 1 - 0.025^(1/n); n of n mirrors it
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert clopper_pearson(0, 10)[1] == pytest.approx(0.3085, abs=1e-4)
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    # 5 of 10: the textbook interval (0.187, 0.813)
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.1871, abs=1e-4) and hi == pytest.approx(0.8129, abs=1e-4)
    assert rate_upper([0.0] * 213) == pytest.approx(1 - 0.025 ** (1 / 213))
    assert rate_upper([None, None]) is None


def test_null_rank1_range_is_a_binomial_range() -> None:
    lo, hi = null_rank1_range(1000, 99)  # p = 1%: about 10 of 1000, 95% between 4 and 16
    assert lo == pytest.approx(0.004, abs=0.0015) and hi == pytest.approx(0.016, abs=0.0015)


def test_skewnorm_extrapolation_on_a_known_distribution() -> None:
    from scipy.stats import skewnorm

    a, loc, scale = 4.0, -30.0, 6.0
    sample = skewnorm.rvs(a, loc=loc, scale=scale, size=20_000, random_state=np.random.default_rng(0))
    fa, floc, fscale = fit_skewnorm(sample)
    assert fa == pytest.approx(a, rel=0.35) and floc == pytest.approx(loc, abs=0.7)
    assert fscale == pytest.approx(scale, rel=0.1)
    for tail_bits in (4.0, 12.0, 20.0):  # a score whose true tail probability is 2^-bits
        score = float(skewnorm.isf(2.0**-tail_bits, a, loc=loc, scale=scale))
        assert extrapolated_exposure(score, sample) == pytest.approx(tail_bits, rel=0.15)
    assert extrapolated_exposure(float(np.median(sample)), sample) == pytest.approx(1.0, abs=0.1)
    assert extrapolated_exposure(1e9, sample) == 64.0  # capped
    assert extrapolated_exposure(0.0, [1.0, 2.0]) is None


def test_bootstrap_auc_brackets_the_auc() -> None:
    rng = np.random.default_rng(1)
    members, others = list(rng.normal(1.0, 1.0, 200)), list(rng.normal(0.0, 1.0, 200))
    lo, hi = bootstrap_auc(members, others, seed=3)  # type: ignore[misc]
    assert lo < 0.76 < hi and hi - lo < 0.15  # the AUC of a 1-sd shift is 0.76
    assert bootstrap_auc(members, others, seed=3) == (lo, hi)
    assert bootstrap_auc([1.0], [0.0], seed=0) is None


# --- the exposure null -----------------------------------------------------------------------------


def _exposure(victim: Any, records: list[Record], candidates: int = 127) -> tuple[ModelRun, dict[str, Any]]:
    settings = AuditSettings.preset(quick=True, candidates=candidates)
    run = ModelRun(victim, "model", AuditInputs.build(records, settings), settings)
    measured = MEASUREMENTS["exposure"].compute(run)
    blocks = {f.key: figure_block(f, measured, run.inputs) for f in MEASUREMENTS["exposure"].figures}
    return run, blocks


def test_twins_share_the_shape_and_never_the_value(victim_dir: Path) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:6]
    inputs = AuditInputs.build(records, AuditSettings.preset(quick=True))
    audited = {t.value for t in inputs.targets}
    for t, twin, cands in zip(inputs.targets, inputs.exposure_twins, inputs.candidates, strict=True):
        assert shape_of(twin) == shape_of(t.value) and twin not in audited
        assert twin not in cands and t.value not in cands
        assert all(shape_of(c) == shape_of(t.value) for c in cands)


def test_fresh_values_are_within_the_null(victim: Any) -> None:
    """A model that never saw the values: the true values read like their twins."""
    fresh = planted_records(VictimConfig(records=36, seed=4242))  # same templates, new fake values
    blocks = _exposure(victim, fresh)[1]
    gap, rank1 = blocks["exposure_gap"], blocks["rank1"]
    assert abs(gap["overall"]) < 0.5, gap
    assert gap["lower95"] <= 0.0 <= gap["upper95"] or abs(gap["overall"]) < 0.25, gap
    assert rank1["overall"] <= rank1["twin_upper95"], rank1
    # Every type, names and addresses included: candidates as plausible as the values themselves,
    # so a value the model never saw scores about 1.4 bits, like its twin.
    for e, bits in blocks["exposure"]["by_entity"].items():
        assert bits < 3.0, (e, blocks["exposure"]["by_entity"])
    for e, bits in blocks["exposure_twin"]["by_entity"].items():
        assert bits < 3.0, (e, blocks["exposure_twin"]["by_entity"])


def test_planted_values_are_far_above_their_twins(victim: Any, victim_dir: Path) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:12]
    blocks = _exposure(victim, records)[1]
    gap, rank1 = blocks["exposure_gap"], blocks["rank1"]
    assert gap["conditioned"] > 2.0 and gap["lower95"] > 0.5, gap
    assert rank1["conditioned"] > 0.9 and rank1["overall"] > rank1["twin_upper95"], rank1
    assert blocks["exposure_extrapolated"]["overall"] > blocks["exposure"]["ceiling"], blocks
    assert blocks["exposure_extrapolated"]["overall"] > blocks["exposure_extrapolated"]["twin"] + 5


# --- format-constrained decoding -------------------------------------------------------------------


class _NinesModel(torch.nn.Module):
    """A toy model: the same logits at every step, +1 per '9' and -10 per other digit, "x" above all.

    Any token with another digit loses to every all-nines token, whatever merges the tokenizer has.
    """

    def __init__(self, tokenizer: Any) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        texts = ShapeVocab.of(tokenizer).texts
        self.bias = torch.tensor([self.score(texts.get(i, "")) for i in range(len(tokenizer))])
        self.bias[tokenizer("x", add_special_tokens=False)["input_ids"][0]] = 100.0

    @staticmethod
    def score(text: str) -> float:
        return text.count("9") - 10.0 * sum(c.isdigit() and c != "9" for c in text)

    def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> Any:
        logits = self.bias.expand(*input_ids.shape, -1)
        return type("Out", (), {"logits": logits, "past_key_values": None})()


def test_constrained_decoding_follows_the_shape(victim: Any) -> None:
    tok = victim.tokenizer
    toy = _NinesModel(tok)
    out = constrained_greedy(toy, tok, ["SSN", "Card"], [" 123-45-6789", " 4000 1234"])
    assert out == [" 999-99-9999", " 9999 9999"]
    vocab = ShapeVocab.of(tok)
    mask = vocab.allowed(shape_of("-45-6789"), len(tok))
    rest = shape_of("-45-6789")
    assert all(shape_of(vocab.texts[i]) == rest[: len(vocab.texts[i])] for i in mask.nonzero()[:, 0].tolist())


def test_constrained_extraction_on_the_victim(victim: Any, victim_dir: Path) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:6]
    settings = AuditSettings.preset(quick=True)
    run = ModelRun(victim, "model", AuditInputs.build(records, settings), settings)
    out = MEASUREMENTS["constrained"].compute(run)
    greedy = MEASUREMENTS["greedy"].compute(run)
    cond = [i for i, t in enumerate(run.inputs.targets) if t.conditioned]
    assert all(out.columns["constrained_err"][i] >= greedy.columns["err"][i] for i in cond)
    assert sum(out.columns["constrained_tokens"][i] for i in cond) / len(cond) > 0.9  # type: ignore[misc]
    for t, text in zip(run.inputs.targets, out.texts["constrained_continuation"], strict=True):
        assert shape_of(text) == shape_of(t.target)[: len(text)]


# --- probes ----------------------------------------------------------------------------------------


def test_quantization_error_is_within_half_a_step() -> None:
    w = torch.randn(16, 130, generator=torch.Generator().manual_seed(0))
    q8 = quantize_weight(w, 8)
    step8 = w.abs().amax(dim=1, keepdim=True) / 127
    assert ((q8 - w).abs() <= step8 / 2 + 1e-6).all()
    q4 = quantize_weight(w, 4, 64)
    for g in range(0, 130, 64):
        block, qblock = w[:, g : g + 64], q4[:, g : g + 64]
        step4 = block.abs().amax(dim=1, keepdim=True) / 7
        assert ((qblock - block).abs() <= step4 / 2 + 1e-6).all()
        assert all(len(set(row.tolist())) <= 15 for row in qblock)
    assert not torch.equal(q4, w) and (q4 - w).abs().max() > (q8 - w).abs().max()


def test_probes_are_gated_and_named(victim_dir: Path) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:3]
    settings = AuditSettings.preset(quick=True)
    inputs = AuditInputs.build(records, settings)
    full = report_shape(inputs, AuditSettings.every_measurement(), baseline=True)
    planned = report_shape(inputs, settings, baseline=False)
    names = [
        "relearn.err",
        "int4.err",
        "model.int8_exposure_gap.overall",
        "exposure_gap",
        "model.err.upper95",
    ]
    check_names([parse_condition(f"{n}>0") for n in names[3:]], full, planned, figures=all_figures())
    for name in names[:3]:
        with pytest.raises(InputError, match="not measured"):
            check_names([parse_condition(f"{name}>0")], full, planned, figures=all_figures())
    with_probes = report_shape(inputs, AuditSettings.preset(quantize=("int4",), relearn=True), baseline=True)
    check_names([parse_condition(f"{n}>0") for n in names[:2]], full, with_probes, figures=all_figures())
    with pytest.raises(ValueError, match="unknown quantization"):
        AuditSettings.preset(quantize=("int3",))
    assert not AuditSettings.preset(quick=True, relearn=True).relearn or not MEASUREMENTS["relearn"].enabled(
        AuditSettings.preset(quick=True, relearn=True)
    )


def test_relearning_reports_the_worst_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worst: constrained ERR, then ERR, then the exposure gap's size; every configuration in the grid."""
    from types import SimpleNamespace

    from pii_unlearn.audit import probes

    # what each fine-tune brings back: (constrained ERR, ERR, gap) per configuration
    brought = {
        "benign/full/lr=0.001": (0.0, 0.0, 0.2),
        "benign/lora/lr=0.01": (0.0, 0.0, -0.9),
        "fake_twins/full/lr=0.001": (0.0, 0.0, 0.5),
        "fake_twins/lora/lr=0.01": (0.0, 0.0, 0.1),
    }
    monkeypatch.setattr(probes, "fine_tune", lambda *a, **k: k["lr"])

    def remeasure(run: Any, model: Any, label: str) -> dict[str, list[float | None]]:
        c, e, g = brought[label.removeprefix("relearn ")]
        return {"err": [e, e], "constrained_err": [c, c], "exposure_gap": [g - 0.1, g + 0.1, None]}

    monkeypatch.setattr(probes, "_remeasure", remeasure)
    settings = AuditSettings(relearn=True, relearn_lrs=(1e-3,), relearn_lora_lrs=(1e-2,))
    run = SimpleNamespace(
        settings=settings,
        inputs=SimpleNamespace(heldout=["benign text"], twins={"r": SimpleNamespace(text="fake")}),
        loaded=SimpleNamespace(model=None, tokenizer=None),
    )
    measured = probes.measure_relearn(run)
    assert measured.extra["config"] == "benign/lora/lr=0.01"  # the largest gap, below the twins
    assert measured.extra["grid"]["fake_twins/full/lr=0.001"]["exposure_gap"] == pytest.approx(0.5)
    brought["fake_twins/lora/lr=0.01"] = (0.0, 0.5, 0.0)  # a value back outranks any gap
    assert probes.measure_relearn(run).extra["config"] == "fake_twins/lora/lr=0.01"
    brought["benign/full/lr=0.001"] = (0.5, 0.5, 0.0)  # and a value back under constraints, that
    measured = probes.measure_relearn(run)
    assert measured.extra["config"] == "benign/full/lr=0.001"
    assert measured.columns["relearn_constrained_err"] == [0.5, 0.5]
    # the worst configuration's gap comes with its 95% interval, as the unprobed gap does
    figure = next(f for f in MEASUREMENTS["relearn"].figures if f.key == "relearn_exposure_gap")
    assert figure.extras is not None and set(figure.extra_keys) == {"lower95", "upper95", "abs"}
    interval = figure.extras(measured, {})  # gaps -0.1 and +0.1: mean 0, half-width 1.96 * 0.1
    assert interval["lower95"] == pytest.approx(-0.196, abs=1e-3)
    assert interval["upper95"] == pytest.approx(0.196, abs=1e-3) and interval["abs"] == 0.0

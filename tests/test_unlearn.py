"""Tests for unlearning: loss masking, masks from spans, guards, LoRA merge round trip, bad input."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import torch
from typer.testing import CliRunner

from pii_unlearn.artifacts import Record, read_records
from pii_unlearn.checkpoint import load_model
from pii_unlearn.cli import app
from pii_unlearn.cli.app import out
from pii_unlearn.cli.unlearn import print_result
from pii_unlearn.errors import InputError
from pii_unlearn.lm import generate
from pii_unlearn.options import parse_set
from pii_unlearn.pii.masks import token_mask
from pii_unlearn.synth.victim import HELDOUT_FILE, PLANTED_FILE
from pii_unlearn.unlearn import UnlearnResult, merged, options_for, run_unlearn, unlearn_model
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import collate, forget_examples
from pii_unlearn.unlearn.loop import lr_schedule
from pii_unlearn.unlearn.losses import kl_to_reference, masked_contrast, npo, token_nll
from pii_unlearn.unlearn.methods import METHODS
from pii_unlearn.unlearn.methods.base import EditResult, GuardReading

FAST = {"retain_source": "builtin", "eval_every": 5, "guard_texts": 8}


def _batch(pii: list[list[int]]) -> dict[str, torch.Tensor]:
    ids = torch.tensor([[1, 2, 3, 4]] * len(pii))
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pii_mask": torch.tensor(pii),
        "weights": torch.ones(len(pii)),
    }


def test_masked_contrast_separates_pii_from_other_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 6)
    batch = _batch([[0, 0, 1, 1]])
    nll = token_nll(logits, batch["input_ids"])[0]  # predicts tokens 2, 3, 4
    expected = nll[0] - nll[1:].mean()
    got = masked_contrast(logits, batch, alpha=1.0, beta=1.0, clamp=100.0)
    assert torch.allclose(got, expected)
    # the ascent is bounded: a clamp below every NLL leaves the PII term constant
    clamped = masked_contrast(logits, batch, alpha=0.0, beta=1.0, clamp=1e-3)
    assert torch.allclose(clamped, torch.tensor(-1e-3))


def test_masked_contrast_gradient_only_on_pii_targets_when_alpha_zero() -> None:
    logits = torch.randn(1, 4, 6, requires_grad=True)
    masked_contrast(logits, _batch([[0, 0, 0, 1]]), alpha=0.0, beta=1.0, clamp=100.0).backward()
    grad_rows = logits.grad[0].abs().sum(-1)
    assert grad_rows[2] > 0 and grad_rows[0] == 0 and grad_rows[1] == 0


def test_npo_and_kl_basics() -> None:
    lp = torch.tensor([-5.0, -3.0])
    zero = npo(lp, lp, torch.ones(2), beta=0.1)
    assert abs(float(zero) - 2 / 0.1 * math.log(2.0)) < 1e-4
    assert npo(lp - 10, lp, torch.ones(2), 0.1) < zero
    logits = torch.randn(2, 5, 7)
    assert kl_to_reference(logits, logits, torch.ones(2, 5)).abs() < 1e-6


def test_masks_from_spans_when_record_lacks_them(victim) -> None:
    tok = victim.tokenizer
    rec = Record(
        id=1,
        text="Customer Ann Lee has SSN 123-45-6789.",
        spans=[{"start": 25, "end": 36, "entity_type": "US_SSN"}],
    )
    [ex] = forget_examples([rec], tok, max_length=64, require_spans=True)
    ids, mask = token_mask(tok, rec.text, rec.spans)
    assert ex.input_ids == ids and ex.pii_mask == mask and sum(mask) >= 3
    pii_text = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert pii_text.strip().replace(" ", "") == "123-45-6789"
    # a given token_mask of the right length wins
    given = [0] * len(ids)
    given[1] = 1
    rec2 = Record.model_validate({**rec.to_json(), "token_mask": given})
    [ex2] = forget_examples([rec2], tok, max_length=64, require_spans=True)
    assert ex2.pii_mask == given
    batch = collate([ex, ex2], tok.pad_token_id, "cpu")
    assert batch["pii_mask"].shape == batch["input_ids"].shape


def test_registry_and_settings() -> None:
    assert {"ga", "npo", "dfsu"} <= set(METHODS)
    dfsu = METHODS["dfsu"].Options
    s = options_for("dfsu", None, parse_set(["lr=1e-3", "lora_target_modules=a,b", "lora=no"], dfsu))
    assert s.lr == 1e-3 and s.lora_target_modules == ["a", "b"] and s.lora is False
    assert options_for("dfsu").lora_r == 4 and options_for("dfsu").lora_alpha == 32
    with pytest.raises(InputError, match="unknown method 'nope'"):
        options_for("nope")
    with pytest.raises(InputError, match="lr"):
        options_for("dfsu", None, {"lr": -1})
    with pytest.raises(InputError, match="learning_rate: unknown option"):
        options_for("dfsu", None, {"learning_rate": 1})
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_set(["lr"], dfsu)
    # each method owns its options: NPO's temperature is not DFSU's beta
    assert options_for("npo").beta == 0.1 and options_for("dfsu").beta == 1.0
    assert "alpha" not in METHODS["npo"].Options.model_fields


def _fresh(victim_dir: Path):
    return load_model(victim_dir, device="cpu")


def test_guard_stops_when_already_forgotten(victim_dir: Path) -> None:
    loaded = _fresh(victim_dir)
    records = read_records(victim_dir / PLANTED_FILE)[:4]
    options = options_for("dfsu", None, {**FAST, "forget_prob_target": 0.999})
    result = unlearn_model(loaded.model, loaded.tokenizer, records, options=options)
    assert result.edit.stop_reason == "already_below_target" and result.edit.steps == 0


def _in_domain(victim_dir: Path) -> list[str]:
    """The victim's held-out benign text: a guard text it reads well (the built-in English
    paragraphs are beyond a tiny from-scratch model, so a guard on them stops nothing)."""
    return [r.text for r in read_records(victim_dir / HELDOUT_FILE)]


def test_a_guard_the_model_cannot_read_is_recorded_not_obeyed(victim_dir: Path) -> None:
    loaded = _fresh(victim_dir)
    records = read_records(victim_dir / PLANTED_FILE)[:8]
    fixed = {**FAST, "lora": False, "kl_weight": 0.0, "eval_every": 1, "max_steps": 3, "ppl_limit_pct": 0.0}
    options = options_for("ga", None, {**fixed, "lr": 5e-2, "backoff": 1})
    edit = unlearn_model(loaded.model, loaded.tokenizer, records, method="ga", options=options).edit
    # the tiny victim reads the built-in paragraphs worse than a uniform guess over its tokens
    assert edit.readings[0].ppl >= len(loaded.tokenizer)
    assert edit.guard_note is not None and "uniform guess" in edit.guard_note
    assert edit.to_json()["guard_note"] == edit.guard_note
    # neither stopped nor backed off by it: the run goes on (here until it forgot) and keeps its edit
    assert edit.stop_reason != "utility_limit" and len(edit.attempts) == 1
    assert edit.kept is not None and edit.kept.step > 0 and edit.kept.ppl_increase_pct > 0
    # with in-domain text the same run stops at its first reading
    loaded = _fresh(victim_dir)
    edit = unlearn_model(
        loaded.model, loaded.tokenizer, records, method="ga", options=options, retain=_in_domain(victim_dir)
    ).edit
    assert edit.guard_note is None and edit.attempts[0]["stop_reason"] == "utility_limit"


def test_utility_guard_keeps_best_reading(victim_dir: Path) -> None:
    loaded = _fresh(victim_dir)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    records = read_records(victim_dir / PLANTED_FILE)[:8]
    options = options_for(
        "ga",
        None,
        {
            **FAST,
            "lr": 5e-2,
            "lora": False,
            "kl_weight": 0.0,
            "ppl_limit_pct": 0.0,
            "eval_every": 1,
            "max_steps": 10,
            "backoff": 0,  # the stop itself is under test (a slower retry forgets within the limit)
        },
    )
    result = unlearn_model(
        loaded.model, loaded.tokenizer, records, method="ga", options=options, retain=_in_domain(victim_dir)
    )
    assert result.edit.stop_reason == "utility_limit"
    kept = result.edit.kept
    assert kept is not None and kept.ppl_increase_pct <= 0.0
    if kept.step == 0:
        after = result.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_overshoot_at_the_first_reading_backs_off(victim_dir: Path) -> None:
    # lr 5e-2 and 2.5e-2 on all weights wreck held-out perplexity within one step: each try
    # overshoots at its first reading, so the loop starts again from the starting weights at half
    # the rate; out of tries, it keeps the starting weights.
    loaded = _fresh(victim_dir)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    records = read_records(victim_dir / PLANTED_FILE)[:8]
    fixed = {**FAST, "lora": False, "kl_weight": 0.0, "eval_every": 1, "max_steps": 3, "ppl_limit_pct": 0.0}
    options = options_for("ga", None, {**fixed, "lr": 5e-2, "backoff": 1})
    edit = unlearn_model(
        loaded.model, loaded.tokenizer, records, method="ga", options=options, retain=_in_domain(victim_dir)
    ).edit
    assert [a["lr"] for a in edit.attempts] == [5e-2, 2.5e-2]
    assert all(a["stop_reason"] == "utility_limit" and a["steps"] == 1 for a in edit.attempts)
    assert [r.attempt for r in edit.readings] == [0, 0, 1]
    assert edit.kept is not None and edit.kept.step == 0 and edit.kept_start
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())
    # one more try, at 1.25e-2 (measured: ERR 0 at -3.7% perplexity); a try within the limit ends it
    loaded = _fresh(victim_dir)
    options = options_for("ga", None, {**fixed, "lr": 5e-2, "backoff": 3})
    edit = unlearn_model(
        loaded.model, loaded.tokenizer, records, method="ga", options=options, retain=_in_domain(victim_dir)
    ).edit
    assert edit.attempts[2]["lr"] == 1.25e-2 and edit.readings[-1].attempt == len(edit.attempts) - 1
    if edit.attempts[-1]["stop_reason"] != "utility_limit":
        assert edit.kept is not None and edit.kept.attempt == len(edit.attempts) - 1
        assert not edit.kept_start
    # without backoff: one try
    loaded = _fresh(victim_dir)
    options = options_for("ga", None, {**fixed, "lr": 5e-2, "backoff": 0})
    edit = unlearn_model(
        loaded.model, loaded.tokenizer, records, method="ga", options=options, retain=_in_domain(victim_dir)
    ).edit
    assert len(edit.attempts) == 1 and len(edit.readings) == 2


@pytest.mark.parametrize("method", ["ga", "npo"])
def test_baselines_lower_forget_likelihood(victim_dir: Path, method: str) -> None:
    loaded = _fresh(victim_dir)
    records = read_records(victim_dir / PLANTED_FILE)[:8]
    options = options_for(method, None, {**FAST, "lr": 1e-3, "max_steps": 10, "ppl_limit_pct": 1e9})
    result = unlearn_model(loaded.model, loaded.tokenizer, records, method=method, options=options)
    first, kept = result.edit.readings[0], result.edit.kept
    assert kept is not None and kept.pii_prob < first.pii_prob


def test_run_unlearn_writes_mergeable_checkpoint(victim_dir: Path, tmp_path: Path) -> None:
    out, result = run_unlearn(
        victim_dir,
        victim_dir / PLANTED_FILE,
        tmp_path / "clean",
        method="dfsu",
        overrides={**FAST, "max_steps": 10, "lr": 1e-3},
        save_adapter=True,
        seed=3,
        threads=1,
    )
    assert (out / "model.safetensors").exists() and (out / "adapter" / "adapter_config.json").exists()
    manifest = json.loads((out / "pii_unlearn_manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["settings"]["method"] == "dfsu"
    assert manifest["settings"]["threads"] == result.threads == 1
    assert [i["role"] for i in manifest["inputs"]] == ["model", "forget"]
    assert "PII sanitization" in (out / "README.md").read_text()
    again = load_model(out, device="cpu")
    assert not hasattr(again.model, "peft_config")
    texts = generate(again.model, again.tokenizer, ["Customer"], max_new_tokens=8)
    assert isinstance(texts[0][0], str)
    # the merged weights are the trained ones
    ids = again.tokenizer("Customer", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(again.model(ids).logits, merged(result.model)(ids).logits, atol=1e-5)


def test_the_reference_cache_gives_the_reference_distributions_on_any_batch(victim) -> None:
    from pii_unlearn.data import benign_texts
    from pii_unlearn.lm import padding_id
    from pii_unlearn.unlearn.data import collate_retain, retain_from_texts
    from pii_unlearn.unlearn.loop import Reference, ReferenceCache

    examples = retain_from_texts(benign_texts()[:5], victim.tokenizer, max_length=48)
    pad = padding_id(victim.tokenizer)
    reference = Reference(victim.model, lora=False)  # a frozen copy
    cache = ReferenceCache.build(reference, examples, pad, "cpu")
    assert cache is not None
    picked = [3, 0, 4]
    batch = collate_retain([examples[i] for i in picked], pad, "cpu")
    width = batch["input_ids"].shape[1]
    live = reference.logits(batch["input_ids"], batch["attention_mask"])
    cached = cache.batch(picked, width)
    assert cached.shape == live.shape
    mask = batch["attention_mask"].bool()
    assert torch.allclose(cached[mask], torch.log_softmax(live, -1)[mask], atol=1e-5)
    # the KL term reads the same from either
    moved = live + torch.randn_like(live)
    assert torch.allclose(
        kl_to_reference(moved, cached, batch["keep"]), kl_to_reference(moved, live, batch["keep"]), atol=1e-5
    )
    # over the memory budget: no cache, each step recomputes
    assert ReferenceCache.build(reference, examples, pad, "cpu", budget=1000) is None


def test_right_padded_batches_run_without_the_mask_and_give_the_same_logits(victim) -> None:
    from pii_unlearn.lm import causal_mask, pad_left, pad_right, padding_id, right_padded_logits

    tok = victim.tokenizer
    seqs = [tok("Call Dana on 415 555 0137 today.")["input_ids"], tok("Hello there.")["input_ids"]]
    ids, mask = pad_right(seqs, padding_id(tok), "cpu")
    assert causal_mask(mask) is None
    with torch.no_grad():
        masked = victim.model(input_ids=ids, attention_mask=mask).logits
        bare = right_padded_logits(victim.model, ids, mask)
    real = mask.bool()
    assert torch.allclose(masked[real], bare[real], atol=1e-5)
    # padding before a real token (left padding) keeps the mask
    _, left = pad_left(seqs, padding_id(tok), "cpu")
    assert causal_mask(left) is left


def test_batched_encoding_and_padding_match_the_one_text_forms(victim) -> None:
    from pii_unlearn.lm import encode, encode_many, pad_left, pad_right

    tok = victim.tokenizer
    texts = ["Call Dana on 415 555 0137 today.", "", "Hello there."]
    for offsets in (False, True):
        assert encode_many(tok, texts, with_offsets=offsets) == [
            encode(tok, t, with_offsets=offsets) for t in texts
        ]
    assert encode_many(tok, []) == []
    seqs = [[5, 6, 7], [], [8]]
    ids, mask = pad_right(seqs, 0, "cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 0], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 0], [1, 0, 0]]
    ids, mask = pad_left(seqs, 9, "cpu")
    assert ids.tolist() == [[5, 6, 7], [9, 9, 9], [9, 9, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 1]]
    assert ids.dtype == mask.dtype == torch.long


def test_generated_retain_is_data_free_and_masks_pii(victim, victim_dir: Path) -> None:
    from pii_unlearn.unlearn.data import generated_retain

    examples = generated_retain(
        victim.model, victim.tokenizer, count=8, max_new_tokens=48, seed=0, max_length=128
    )
    assert examples and all(len(e.keep) == len(e.input_ids) for e in examples)
    assert any(0 in e.keep for e in examples)  # the victim's own samples carry PII, masked out


def _invoke(*args: str):
    return CliRunner().invoke(app, ["unlearn", *args])


def test_cli_bad_input(victim_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    nospans = tmp_path / "nospans.jsonl"
    nospans.write_text(json.dumps({"id": 1, "text": "hello there"}) + "\n")
    planted = str(victim_dir / PLANTED_FILE)
    cases = [
        (["--forget", str(empty)], "empty"),
        (["--forget", str(nospans)], "no forget record has PII spans"),
        (["--forget", planted, "--method", "magic"], "unknown method 'magic'"),
        (["--forget", planted, "--set", "lr=oops"], "lr"),
        (["--forget", planted, "--set", "nonsense=1"], "nonsense"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        result = _invoke("--model", str(victim_dir), "--output", str(out), *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output
        assert not out.exists()
    result = _invoke("--model", str(victim_dir), "--forget", planted, "--output", str(victim_dir))
    assert result.exit_code == 2 and "is also an input" in result.output


def test_cli_unlearn_runs(victim_dir: Path, tmp_path: Path) -> None:
    result = _invoke(
        "--model",
        str(victim_dir),
        "--forget",
        str(victim_dir / PLANTED_FILE),
        "--output",
        str(tmp_path / "o"),
        "--method",
        "npo",
        "--max-steps",
        "3",
        "--set",
        "retain_source=builtin",
    )
    assert result.exit_code == 0, result.output
    assert "stopped" in result.output


def test_unpii_methods_weight_by_risk_and_prefer_fake_twins(victim_dir: Path) -> None:
    from pii_unlearn.unlearn.losses import dpo

    assert {"unpii-ga", "unpii-npo", "unpii-dpo"} <= set(METHODS)
    assert options_for("unpii-npo").risk_weighting is True
    loaded = _fresh(victim_dir)
    records = read_records(victim_dir / PLANTED_FILE)[:6]
    risky = [Record.model_validate({**r.to_json(), "pri": 0.5}) for r in records]
    [ex] = forget_examples(
        risky[:1], loaded.tokenizer, max_length=64, require_spans=True, risk_weighting=True
    )
    assert ex.weight == 1.5
    [tw] = forget_examples(records[:1], loaded.tokenizer, max_length=64, require_spans=True, preferred=True)
    assert tw.preferred_ids and tw.preferred_ids != tw.input_ids
    zero = torch.zeros(2)
    assert torch.allclose(dpo(zero, zero, zero, zero, torch.ones(2), 0.1), torch.log(torch.tensor(2.0)))
    options = options_for("unpii-dpo", None, {**FAST, "max_steps": 10, "ppl_limit_pct": 1e9})
    result = unlearn_model(loaded.model, loaded.tokenizer, risky, method="unpii-dpo", options=options)
    first, kept = result.edit.readings[0], result.edit.kept
    assert kept is not None and kept.pii_prob < first.pii_prob


def _lrs(options: GradientOptions) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=options.lr)
    schedule = lr_schedule(optimizer, options)
    out = []
    for _ in range(options.max_steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return out


def test_the_learning_rate_is_constant_by_default_and_warms_up_and_decays_when_asked() -> None:
    assert _lrs(GradientOptions(lr=0.5, max_steps=6)) == [0.5] * 6
    lrs = _lrs(GradientOptions(lr=1.0, max_steps=10, warmup_steps=2, lr_schedule="cosine"))
    assert lrs[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert all(a > b for a, b in itertools.pairwise(lrs[2:])) and 0 < lrs[-1] < 0.05


class _Backward:
    """The one thing smoothed_backward asks of an accelerator."""

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        loss.backward()


def _toy() -> tuple[torch.nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3), torch.randn(5, 4)


def _toy_loss(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return (layer(x) ** 2).sum() + layer(x).exp().sum()


def test_smoothing_takes_the_gradient_at_the_shifted_weights_and_puts_them_back() -> None:
    from pii_unlearn.unlearn.loop import smoothed_backward

    layer, x = _toy()
    params = list(layer.parameters())
    start = [p.detach().clone() for p in params]

    def attack() -> torch.Tensor:
        return layer(x).sum()

    def grads(smoothing: str, seed: int = 0, rho: float = 0.1) -> list[torch.Tensor]:
        layer.zero_grad(set_to_none=True)
        options = GradientOptions(smoothing=smoothing, smoothing_rho=rho)
        generator = torch.Generator().manual_seed(seed)
        smoothed_backward(lambda: _toy_loss(layer, x), params, _Backward(), options, generator, attack)
        assert all(torch.allclose(p, s, atol=1e-7) for p, s in zip(params, start, strict=True))
        return [p.grad.clone() for p in params]

    plain = grads("none")
    # sam: the gradient at the weights moved rho up the plain gradient (L2 norm over all of them)
    norm = torch.sqrt(sum((g**2).sum() for g in plain))
    with torch.no_grad():
        for p, g in zip(params, plain, strict=True):
            p.add_(0.1 * g / norm)
    expected = torch.autograd.grad(_toy_loss(layer, x), params)
    with torch.no_grad():
        for p, s in zip(params, start, strict=True):
            p.copy_(s)
    sam = grads("sam")
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(sam, expected, strict=True))
    assert not all(torch.allclose(a, b) for a, b in zip(sam, plain, strict=True))
    # rwp: a random shift, the same for the same seed
    rwp = grads("rwp", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(rwp, grads("rwp", seed=3), strict=True))
    assert not all(torch.allclose(a, b) for a, b in zip(rwp, grads("rwp", seed=4), strict=True))
    assert not all(torch.allclose(a, b) for a, b in zip(rwp, plain, strict=True))
    # relearn: the mean of the gradients at the weights and one sign step down the attack's loss
    down = torch.autograd.grad(attack(), params)
    with torch.no_grad():
        for p, g in zip(params, down, strict=True):
            p.sub_(0.1 * torch.sign(g))
    shifted = torch.autograd.grad(_toy_loss(layer, x), params)
    with torch.no_grad():
        for p, s in zip(params, start, strict=True):
            p.copy_(s)
    both = grads("relearn")
    for got, at, moved in zip(both, plain, shifted, strict=True):
        assert torch.allclose(got, (at + moved) / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="retain text"):
        options = GradientOptions(smoothing="relearn")
        smoothed_backward(lambda: _toy_loss(layer, x), params, _Backward(), options, torch.Generator())
    # a step between smoothing_every's: the plain gradient, whatever the smoothing
    layer.zero_grad(set_to_none=True)
    options = GradientOptions(smoothing="relearn", smoothing_rho=0.1)
    smoothed_backward(
        lambda: _toy_loss(layer, x), params, _Backward(), options, torch.Generator(), smooth=False
    )
    assert all(torch.allclose(p.grad, g, rtol=1e-6, atol=1e-7) for p, g in zip(params, plain, strict=True))


def test_smoothing_every_smooths_every_nth_step_only(
    victim_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pii_unlearn.unlearn import loop

    seen: list[bool] = []
    real = loop.smoothed_backward

    def spy(*args: Any, smooth: bool = True, **kwargs: Any) -> torch.Tensor:
        seen.append(smooth)
        return real(*args, smooth=smooth, **kwargs)

    monkeypatch.setattr(loop, "smoothed_backward", spy)
    records = read_records(victim_dir / PLANTED_FILE)[:4]
    settings = {**FAST, "lr": 1e-3, "max_steps": 6, "eval_every": 6, "ppl_limit_pct": 1e9}
    options = options_for("ga", None, {**settings, "smoothing": "rwp", "smoothing_every": 3})
    loaded = _fresh(victim_dir)
    unlearn_model(loaded.model, loaded.tokenizer, records, method="ga", options=options, threads=1)
    assert seen == [False, False, True, False, False, True]


@pytest.mark.parametrize("smoothing", ["rwp", "sam", "relearn"])
def test_a_smoothed_run_trains_and_is_reproducible(victim_dir: Path, smoothing: str) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:4]
    settings = {**FAST, "lr": 1e-3, "max_steps": 3, "eval_every": 3, "ppl_limit_pct": 1e9}
    runs = []
    for chosen in (smoothing, smoothing, "none"):
        loaded = _fresh(victim_dir)
        options = options_for("ga", None, {**settings, "smoothing": chosen})
        model = unlearn_model(
            loaded.model, loaded.tokenizer, records, method="ga", options=options, threads=1
        ).model
        runs.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_cli_says_when_nothing_was_unlearned(tmp_path: Path) -> None:
    """A run whose every try overshot writes its starting weights: the CLI says so in one line."""
    start = GuardReading(0, 0.9, 10.0, 0.0, None, 0.5)
    over = GuardReading(5, 0.1, 12.0, 20.0, 1.0, 0.0)
    method = cast(Any, SimpleNamespace(name="ga"))

    def printed(edit: EditResult) -> str:
        with out.capture() as captured:
            print_result(tmp_path / "out", UnlearnResult(method=method, edit=edit))
        return captured.get()

    nothing = EditResult(model=None, stop_reason="utility_limit", steps=5, readings=[start, over], kept=start)
    assert nothing.kept_start and "nothing unlearned" in printed(nothing)
    later = EditResult(model=None, stop_reason="utility_limit", steps=5, readings=[start, over], kept=over)
    assert not later.kept_start and "nothing unlearned" not in printed(later)
    ran_out = EditResult(model=None, stop_reason="max_steps", steps=5, readings=[start, over], kept=start)
    assert not ran_out.kept_start

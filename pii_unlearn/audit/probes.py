"""Robustness probes: attack a copy of the audited model, then measure it again.

Suppression that a cheap attack undoes is not removal. Two attacks, each on a
*copy* (the audited model is never changed), each re-measured with the audit's
own measurements (greedy ERR, format-constrained ERR, the exposure gap against
twins) on the real records:

* ``--quantize int8,int4``: round-to-nearest symmetric fake quantization of
  every ``nn.Linear`` weight, int8 per output channel and int4 per group of 64
  input weights (:func:`fake_quantize`);
* ``--relearn``: K steps of fine-tuning (full and LoRA, a small grid of learning
  rates) on benign held-out text and on the records' fake twins (the same
  templates filled with fresh fake values, never the real ones); the worst case
  over the grid (constrained ERR, then ERR, then the exposure gap's size) is
  reported, with every configuration's three figures in ``grid``.

On both sides of an audit the same attack runs with the same seeds, so the
baseline's figures are the control. Figures: ``int8_err``, ``int4_err``,
``relearn_err`` ... (top level ``int8.err``, ``relearn.err`` ...), usable by
``--fail-on``. The exposure gap here ranks among the first
``settings.probe_candidates`` candidates (31 by default) to keep probes cheap.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from pii_unlearn.audit.figures import BITS_CHANGE, SHARE, Figure
from pii_unlearn.audit.metrics import (
    GAP_INTERVAL_KEYS,
    MEASUREMENTS,
    Measured,
    ModelRun,
    gap_interval,
    measurement,
)
from pii_unlearn.lm import encode, model_device, pad_right, padding_id

#: Group size of int4 quantization (input weights per scale).
INT4_GROUP = 64
#: Largest quantized magnitude per bit width (symmetric: -q..q).
LEVELS = {8: 127, 4: 7}
#: Tokens per text at most when fine-tuning.
MAX_TRAIN_TOKENS = 128


@torch.no_grad()
def quantize_weight(weight: torch.Tensor, bits: int, group: int | None = None) -> torch.Tensor:
    """``weight`` (``[out, in]``) rounded to ``bits`` symmetric levels, per output row or ``group`` inputs.

    The error of each weight is at most half its scale (``max |w| / levels / 2``).
    """
    levels = LEVELS[bits]
    w = weight.float()
    out_features, in_features = w.shape
    if group is None:
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / levels
        return (torch.round(w / scale).clamp(-levels, levels) * scale).to(weight.dtype)
    pad = (-in_features) % group
    padded = torch.nn.functional.pad(w, (0, pad)).reshape(out_features, -1, group)
    scale = padded.abs().amax(dim=2, keepdim=True).clamp_min(1e-12) / levels
    q = torch.round(padded / scale).clamp(-levels, levels) * scale
    return q.reshape(out_features, -1)[:, :in_features].to(weight.dtype)


def fake_quantize(model: Any, scheme: str) -> Any:
    """A copy of ``model`` with every ``nn.Linear`` weight fake-quantized (``int8`` or ``int4``)."""
    bits, group = {"int8": (8, None), "int4": (4, INT4_GROUP)}[scheme]
    out = copy.deepcopy(model)
    for module in out.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data.copy_(quantize_weight(module.weight.data, bits, group))
    return out.eval()


def fine_tune(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    steps: int,
    lr: float,
    lora: bool,
    batch_size: int,
    seed: int,
) -> Any:
    """A copy of ``model`` after ``steps`` AdamW steps of next-token loss on random batches of ``texts``.

    With ``lora``, rank-8 adapters on peft's default modules for the architecture,
    merged into the weights afterwards.
    """
    tuned = copy.deepcopy(model)
    if lora:
        from peft import LoraConfig, get_peft_model

        tuned = get_peft_model(tuned, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM"))
    else:
        tuned.requires_grad_(True)
    device = model_device(tuned)
    pad = padding_id(tokenizer)
    eos = tokenizer.eos_token_id
    encoded = [
        (encode(tokenizer, t)["input_ids"] + ([eos] if eos is not None else []))[:MAX_TRAIN_TOKENS]
        for t in texts
    ]
    params = [p for p in tuned.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    tuned.train()
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(len(encoded), (min(batch_size, len(encoded)),), generator=gen).tolist()
            ids, mask = pad_right([encoded[i] for i in idx], pad, device)
            loss = tuned(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
    if lora:
        tuned = tuned.merge_and_unload()
    return tuned.eval().requires_grad_(False)


def _remeasure(run: ModelRun, model: Any, label: str) -> dict[str, list[float | None]]:
    """ERR, constrained ERR and the exposure gap of ``model`` on the run's records."""
    lm = dataclasses.replace(run.loaded, model=model)
    inputs = dataclasses.replace(
        run.inputs, candidates=[c[: run.settings.probe_candidates] for c in run.inputs.candidates]
    )
    probe = ModelRun(lm, f"{run.side} {label}", inputs, run.settings, run.progress)
    return {
        "err": MEASUREMENTS["greedy"].compute(probe).columns["err"],
        "constrained_err": MEASUREMENTS["constrained"].compute(probe).columns["constrained_err"],
        "exposure_gap": MEASUREMENTS["exposure"].compute(probe).columns["exposure_gap"],
    }


def _figures(prefix: str, what: str) -> tuple[Figure, ...]:
    """The three figures of one probe: ERR, constrained ERR and exposure gap after ``what``."""
    return (
        Figure(
            f"{prefix}_err",
            f"{prefix}: ERR",
            f"Share of PII values the model writes out exactly (greedy) after {what}.",
            SHARE,
            columns=(f"{prefix}_err",),
            headline=f"{prefix}.err",
        ),
        Figure(
            f"{prefix}_constrained_err",
            f"{prefix}: constrained ERR",
            f"Share of PII values a shape-aware attacker gets out exactly after {what}.",
            SHARE,
            columns=(f"{prefix}_constrained_err",),
            headline=f"{prefix}.constrained_err",
        ),
        Figure(
            f"{prefix}_exposure_gap",
            f"{prefix}: exposure gap",
            f"True values' exposure minus their fake twins' after {what}, in bits (0: no trace; "
            "either sign is a trace).",
            BITS_CHANGE,
            columns=(f"{prefix}_exposure_gap",),
            headline=f"{prefix}.exposure_gap",
            extra_keys=GAP_INTERVAL_KEYS,
            extras=gap_interval(f"{prefix}_exposure_gap"),
        ),
    )


def _quantized(scheme: str) -> Any:
    def measure(run: ModelRun) -> Measured:
        model = fake_quantize(run.loaded.model, scheme)
        cols = _remeasure(run, model, scheme)
        return Measured({f"{scheme}_{k}": v for k, v in cols.items()}, {"scheme": scheme})

    measure.__doc__ = f"ERR, constrained ERR and exposure gap of a {scheme} fake-quantized copy."
    return measure


QUANTIZE_WHAT = {
    "int8": "its weights are rounded to 8 bits per output channel",
    "int4": "its weights are rounded to 4 bits per group of 64",
}
for _scheme, _what in QUANTIZE_WHAT.items():
    measurement(f"quantize_{_scheme}", _figures(_scheme, _what), switch=f"quantize_{_scheme}")(
        _quantized(_scheme)
    )


#: What the relearning probe adds to its ERR block: the worst configuration and every one's figures.
RELEARN_KEYS = ("config", "grid")
RELEARN_WHAT = "a few steps of fine-tuning on benign or same-format fake text (worst case)"


def _relearn_extras(measured: Measured, block: dict[str, Any]) -> dict[str, Any]:
    return {k: measured.extra.get(k) for k in RELEARN_KEYS}


def relearn_grid(run: ModelRun) -> list[tuple[str, str, float]]:
    """Every (data, mode, learning rate) the relearning attack tries."""
    s = run.settings
    data = [d for d in ("benign", "fake_twins") if d != "benign" or run.inputs.heldout]
    modes = [("full", lr) for lr in s.relearn_lrs] + [("lora", lr) for lr in s.relearn_lora_lrs]
    return [(d, mode, lr) for d in data for mode, lr in modes]


@measurement(
    "relearn",
    tuple(
        dataclasses.replace(f, extra_keys=RELEARN_KEYS, count_keys=RELEARN_KEYS, extras=_relearn_extras)
        if f.key == "relearn_err"
        else f
        for f in _figures("relearn", RELEARN_WHAT)
    ),
    in_quick=False,
    switch="relearn",
)
def measure_relearn(run: ModelRun) -> Measured:
    """Fine-tune copies over the grid and measure each; keep the worst.

    Worst: the highest constrained ERR, then ERR, then the exposure gap's size (either sign
    is a trace): where no configuration brings a value back, the one that lifts the true
    values furthest above their twins is what an attacker would pick.
    """
    s = run.settings
    texts = {"benign": list(run.inputs.heldout), "fake_twins": [t.text for t in run.inputs.twins.values()]}
    seed = s.seeds()["relearn"]
    grid: dict[str, dict[str, float | None]] = {}
    worst: tuple[tuple[float, float, float], str, dict[str, list[float | None]]] | None = None
    for data, mode, lr in relearn_grid(run):
        name = f"{data}/{mode}/lr={lr:g}"
        tuned = fine_tune(
            run.loaded.model,
            run.loaded.tokenizer,
            texts[data],
            steps=s.relearn_steps,
            lr=lr,
            lora=mode == "lora",
            batch_size=s.relearn_batch,
            seed=seed,
        )
        cols = _remeasure(run, tuned, f"relearn {name}")
        del tuned
        rates = tuple(
            sum(v for v in cols[k] if v is not None) / max(1, len(cols[k]))
            for k in ("constrained_err", "err")
        )
        gaps = [v for v in cols["exposure_gap"] if v is not None]
        gap = sum(gaps) / len(gaps) if gaps else None
        grid[name] = {
            "err": round(rates[1], 6),
            "constrained_err": round(rates[0], 6),
            "exposure_gap": None if gap is None else round(gap, 6),
        }
        key = (rates[0], rates[1], abs(gap) if gap is not None else 0.0)
        if worst is None or key > worst[0]:
            worst = (key, name, cols)
    assert worst is not None
    return Measured({f"relearn_{k}": v for k, v in worst[2].items()}, {"config": worst[1], "grid": grid})

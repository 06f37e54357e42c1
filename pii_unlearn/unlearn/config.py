"""Settings of an unlearning run: one validated model, method defaults, YAML files, ``--set`` overrides.

Precedence, lowest first: :class:`UnlearnSettings` defaults, the method's own
defaults, a ``--config`` YAML file, then ``--set key=value`` overrides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pii_unlearn.errors import InputError


class UnlearnSettings(BaseModel):
    """Every knob of the shared loop and the built-in methods, with its default."""

    model_config = ConfigDict(extra="forbid")

    # optimisation
    lr: float = Field(3e-4, gt=0, description="learning rate")
    max_steps: int = Field(200, ge=1, description="optimizer steps at most")
    batch_size: int = Field(8, ge=1, description="forget records per step")
    retain_batch_size: int = Field(8, ge=1, description="retain texts per step for the KL term")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clip")
    weight_decay: float = Field(0.0, ge=0)
    # parameters that train
    lora: bool = Field(True, description="train LoRA adapters (else every weight)")
    lora_r: int = Field(4, ge=1)
    lora_alpha: float = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: list[str] | None = Field(
        None, description="module names for LoRA; default: the architecture's MLP projections"
    )
    # losses
    alpha: float = Field(1.0, ge=0, description="DFSU: weight of NLL on non-PII tokens")
    beta: float = Field(1.0, ge=0, description="DFSU: weight of the (negated) NLL on PII tokens")
    npo_beta: float = Field(0.1, gt=0, description="NPO temperature")
    dpo_beta: float = Field(0.1, gt=0, description="DPO temperature (UnPII-DPO)")
    nll_clamp: float = Field(8.0, gt=0, description="per-token NLL above this gives the ascent no gradient")
    kl_weight: float = Field(5.0, ge=0, description="weight of KL(original || model) on retain text")
    retain_source: Literal["generated", "builtin"] = Field(
        "generated",
        description="retain text when none is given: the original model's own samples with PII masked "
        "(data-free, in-domain), or the built-in benign paragraphs",
    )
    retain_samples: int = Field(64, ge=4, description="samples drawn for the generated retain set")
    retain_max_new_tokens: int = Field(64, ge=8, description="length of each generated retain sample")
    risk_weighting: bool = Field(False, description="UnPII: multiply each sample's loss by (1 + PRI)")
    # guards
    forget_prob_target: float = Field(
        0.02, gt=0, lt=1, description="stop once the forget PII tokens' mean probability is below this"
    )
    forget_err_target: float = Field(
        0.0,
        ge=0,
        le=1,
        description="stop once greedy decoding reproduces at most this share of the forget set's PII values",
    )
    ppl_limit_pct: float = Field(2.0, ge=0, description="stop before retain perplexity rises more than this")
    eval_every: int = Field(5, ge=1, description="steps between guard readings")
    guard_texts: int = Field(16, ge=2, description="retain texts held out for the utility guard")


def _flatten_errors(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "settings"
    return f"{where}{key}: {first['msg']}"


def parse_set(pairs: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-4", "lora=false"]`` -> ``{"lr": 1e-4, "lora": False}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {pair!r}: expected KEY=VALUE")
        parsed = yaml.safe_load(value) if value.strip() else None
        if key.strip() == "lora_target_modules" and isinstance(parsed, str):
            parsed = [m.strip() for m in parsed.split(",") if m.strip()]
        out[key.strip()] = parsed
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of settings (a top-level ``method`` key is allowed and returned too)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise InputError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    return data


def resolve_settings(
    method_defaults: Mapping[str, Any],
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    where: str = "",
) -> UnlearnSettings:
    """Merge defaults, method defaults, file values and overrides into validated settings."""
    merged: dict[str, Any] = {**method_defaults, **(file_values or {}), **(overrides or {})}
    merged.pop("method", None)
    try:
        return UnlearnSettings(**merged)
    except ValidationError as err:
        raise InputError(_flatten_errors(err, where)) from None

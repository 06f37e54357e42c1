"""Options shared by unlearning methods: retain text and the utility guard, and the gradient loop.

A method's own options model subclasses one of these (see
:mod:`pii_unlearn.unlearn.methods`): :class:`RetainOptions` for any method that
reads benign text, :class:`GradientOptions` for a method that runs the shared
training loop. Methods change a default with :func:`pii_unlearn.options.with_defaults`,
so each default is written once, in the class that owns it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pii_unlearn.options import Options


class RetainOptions(Options):
    """Benign text for the retain term and the in-domain utility guard."""

    retain_source: Literal["generated", "builtin"] = Field(
        "generated",
        description="retain text when no --retain is given: the original model's own samples with PII "
        "masked (data-free, in-domain), or the built-in benign paragraphs",
    )
    retain_samples: int = Field(64, ge=4, description="samples drawn for the generated retain set")
    retain_max_new_tokens: int = Field(64, ge=8, description="length of each generated retain sample")
    guard_source: Literal["builtin", "retain"] = Field(
        "builtin",
        description="without --retain, the utility guard reads the built-in benign paragraphs, or a "
        "held-out split of the retain text (in-domain; see the README before choosing it)",
    )
    guard_texts: int = Field(
        16,
        ge=2,
        description="texts of --retain (or of the retain text, with guard_source=retain) "
        "held out for the utility guard",
    )
    ppl_limit_pct: float = Field(
        2.0, ge=0, description="stop before held-out retain perplexity rises more than this (percent)"
    )


class GradientOptions(RetainOptions):
    """The shared training loop: optimiser, trainable parameters, retain KL term, guards."""

    # optimisation
    lr: float = Field(3e-4, gt=0, description="learning rate")
    max_steps: int = Field(200, ge=1, description="optimizer steps at most")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="learning rate after the warm-up: constant, or a cosine decay to 0 at max_steps",
    )
    warmup_steps: int = Field(0, ge=0, description="steps of linear learning-rate warm-up from 0")
    batch_size: int = Field(8, ge=1, description="forget records per step")
    retain_batch_size: int = Field(8, ge=1, description="retain texts per step for the KL term")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clip")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    # parameters that train
    lora: bool = Field(True, description="train LoRA adapters (else every weight)")
    lora_r: int = Field(4, ge=1, description="LoRA rank")
    lora_alpha: float = Field(32, gt=0, description="LoRA scaling alpha")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    lora_target_modules: list[str] | None = Field(
        None, description="module names for LoRA; default: the architecture's MLP projections"
    )
    # flat minima: an edit that a few steps of fine-tuning should not undo
    smoothing: Literal["none", "rwp", "sam", "relearn"] = Field(
        "none",
        description="train the edit to hold at shifted weights too, against relearning: none; rwp "
        "(gradient at random Gaussian shifts); sam (at the worst shift of L2 norm smoothing_rho: two "
        "passes a step); relearn (the loss at the weights and after a sign step of smoothing_rho per "
        "weight down the retain text's loss, what a fine-tuning attacker takes: three passes a step)",
    )
    smoothing_rho: float = Field(
        0.05,
        gt=0,
        description="shift size: rwp, noise std as a share of each weight tensor's RMS; sam, the L2 norm "
        "over all trainable weights; relearn, the step per weight",
    )
    smoothing_every: int = Field(
        1,
        ge=1,
        description="smooth every n-th step only (the others take the plain gradient): the extra "
        "passes' cost divided by n",
    )
    # retain term and per-sample weights
    kl_weight: float = Field(5.0, ge=0, description="weight of KL(original || model) on retain text")
    risk_weighting: bool = Field(False, description="multiply each sample's loss by (1 + PRI) (UnPII)")
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
    eval_every: int = Field(5, ge=1, description="steps between guard readings")
    backoff: int = Field(
        3,
        ge=0,
        description="when the first reading after the start is already over the utility limit, start "
        "again from the starting weights at half the learning rate, up to this many times",
    )


class AscentOptions(GradientOptions):
    """A loop whose forget term raises token NLL: the ascent must be bounded."""

    nll_clamp: float = Field(8.0, gt=0, description="per-token NLL above this gives the ascent no gradient")

"""NSPU: shadow unlearning by a neuro-semantic projector; no backpropagation through the model.

The method reads only each forget record's anonymised text (``anonymized_text``
from ``detect --anonymize``, else made here from the text and its spans, at the
method's boundary). Its core, :func:`nspu_core`, receives nothing else:

1. an aligner (:mod:`pii_unlearn.unlearn.aligner`) maps the model's mean-pooled
   hidden state of anonymised text to an estimate of the state of the same text
   with real-looking PII (trained on generated Faker pairs, or reused);
2. PCA over the aligner's estimates for the forget texts keeps the principal
   directions that explain ``variance`` of their variance: an orthonormal basis
   Q (d x k);
3. the output head is edited once, W <- W (I - alpha Q Q^T): the component of the
   final hidden state along the forget subspace no longer reaches the logits
   (alpha = 1 is the orthogonal projection). No other tensor changes; a head tied
   to the input embeddings is untied first, so the embeddings stay as they were.

The edit hides directions from the output; it does not change what the hidden
states carry, so an audit that reads them (or re-trains the head) can tell.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator, model_validator

from pii_unlearn.artifacts import Record
from pii_unlearn.errors import InputError
from pii_unlearn.lm import model_device, padding_id
from pii_unlearn.pii.anonymize import anonymized_text
from pii_unlearn.unlearn.aligner import (
    Aligner,
    AlignerFit,
    aligner_pairs,
    check_aligner_dir,
    hidden_size,
    load_aligner,
    model_fingerprint,
    output_head,
    pooled_states,
    save_aligner,
    train_aligner,
)
from pii_unlearn.unlearn.config import RetainOptions
from pii_unlearn.unlearn.data import RetainData
from pii_unlearn.unlearn.methods.base import EditResult, GuardReading, Method, ReadingCallback, Stop, register


class NspuOptions(RetainOptions):
    """NSPU's options: the edit, the forget subspace, the aligner, and the utility reading."""

    alpha: float = Field(
        1.0, ge=0, le=1, description="strength of the edit W <- W (I - alpha Q Q^T); 1 is the full projection"
    )
    variance: float = Field(
        0.95, gt=0, le=1, description="share of the forget estimates' variance the subspace keeps (PCA)"
    )
    max_rank: int | None = Field(
        None, ge=1, description="most directions in the forget subspace (none: no cap)"
    )
    center: bool = Field(
        True, description="centre the forget estimates before PCA (else the mean direction counts)"
    )
    layer: int = Field(
        -1,
        description="hidden state the aligner reads and maps (index into hidden_states; -1 is the final "
        "state the output head reads, the only one in the head's coordinates)",
    )
    aligner_pairs: int = Field(
        512, ge=16, description="generated (anonymised, filled) text pairs to train on"
    )
    aligner_epochs: int = Field(60, ge=1, description="aligner training epochs")
    aligner_lr: float = Field(1e-3, gt=0, description="aligner learning rate (Adam)")
    aligner_batch_size: int = Field(64, ge=1, description="aligner training batch size")
    aligner_dropout: float = Field(0.3, ge=0, lt=1, description="dropout in the aligner MLP")
    aligner_path: str | None = Field(
        None, description="reuse the aligner saved in this folder (--aligner; checked against the model)"
    )
    save_aligner_path: str | None = Field(
        None, description="save the trained aligner in this folder (--save-aligner) for later runs"
    )
    measure_utility: bool = Field(
        True, description="read held-out retain perplexity before and after the edit (two readings)"
    )
    ppl_limit_pct: float = Field(
        2.0,
        ge=0,
        description="flag the edit (stop reason 'utility_limit') when held-out retain perplexity rises "
        "more than this (percent); the edit is kept, the flag is for the gate",
    )

    @model_validator(mode="after")
    def _reuse_or_save(self) -> NspuOptions:
        if self.aligner_path and self.save_aligner_path:
            raise ValueError("give --aligner (reuse) or --save-aligner (train and save), not both")
        return self

    @field_validator("aligner_path")
    @classmethod
    def _aligner_exists(cls, value: str | None) -> str | None:
        if value is not None:
            check_aligner_dir(value)
        return value

    @field_validator("save_aligner_path")
    @classmethod
    def _save_place(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).parent.exists():
            raise ValueError(f"{Path(value).parent}: folder does not exist")
        return value


@dataclass
class Subspace:
    """The forget subspace: orthonormal ``basis`` (d x k), the variance it explains, the spectrum size."""

    basis: torch.Tensor
    variance_explained: float
    components: int

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])


def forget_subspace(
    estimates: torch.Tensor, *, variance: float, center: bool = True, max_rank: int | None = None
) -> Subspace:
    """PCA of ``estimates`` (n x d): the fewest principal directions explaining ``variance`` of it."""
    x = estimates.to(torch.float64)
    if center:
        x = x - x.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    power = s**2
    total = float(power.sum())
    if not total > 0 or not math.isfinite(total):
        raise InputError(
            "the forget set's estimates have no variance (one distinct anonymised text?); "
            "give more forget records or set center=false"
        )
    share = torch.cumsum(power, 0) / total
    k = int(torch.searchsorted(share, torch.tensor(variance, dtype=share.dtype) - 1e-12)) + 1
    k = min(k, len(s), max_rank or len(s))
    return Subspace(basis=vh[:k].T.contiguous(), variance_explained=float(share[k - 1]), components=len(s))


def projection_matrix(basis: torch.Tensor, alpha: float) -> torch.Tensor:
    """M = I - alpha Q Q^T (float64): with alpha = 1 and orthonormal Q, M^2 = M and M Q = 0."""
    q = basis.to(torch.float64)
    return torch.eye(q.shape[0], dtype=torch.float64) - alpha * (q @ q.T)


def untie_head(model: Any) -> bool:
    """Give the model its own copy of a head tied to the input embeddings; True if it was tied.

    The embeddings keep their tensor; the head becomes a separate parameter and the
    config says ``tie_word_embeddings: false``, so the saved checkpoint reloads untied.
    """
    head = output_head(model)
    emb = model.get_input_embeddings().weight
    if head.weight is not emb and head.weight.data_ptr() != emb.data_ptr():
        return False
    new = torch.nn.Linear(
        head.in_features,
        head.out_features,
        bias=head.bias is not None,
        device=head.weight.device,
        dtype=head.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(head.weight)
        if head.bias is not None:
            new.bias.copy_(head.bias)
    new.weight.requires_grad_(head.weight.requires_grad)
    model.set_output_embeddings(new)
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.tie_word_embeddings = False
    return True


@torch.no_grad()
def edit_head(model: Any, matrix: torch.Tensor) -> bool:
    """Fold ``matrix`` (d x d) into the output head, W <- W M (untying it first); True if untied."""
    untied = untie_head(model)
    weight = output_head(model).weight
    edited = weight.detach().to(torch.float64) @ matrix.to(weight.device, torch.float64)
    weight.copy_(edited.to(weight.dtype))
    return untied


@dataclass
class CoreResult:
    """What :func:`nspu_core` did: the subspace, the aligner's fit, whether the head was untied."""

    subspace: Subspace
    fit: AlignerFit
    untied: bool
    texts: int
    details: dict[str, Any] = field(default_factory=dict)


def nspu_core(
    model: Any, tokenizer: Any, anonymized: Sequence[str], options: NspuOptions, *, seed: int
) -> CoreResult:
    """NSPU's whole edit, given only anonymised forget texts: aligner, subspace, head edit.

    Trains the aligner on generated pairs (or loads ``options.aligner_path``), maps the
    texts' pooled states through it, takes the forget subspace and folds the
    projection into ``model``'s output head in place.
    """
    o = options
    if not anonymized:
        raise InputError("the forget set is empty")
    fingerprint = model_fingerprint(model, o.layer)
    aligner: Aligner
    start = time.perf_counter()
    if o.aligner_path:
        aligner, fit = load_aligner(o.aligner_path, fingerprint)
        fit.seconds = time.perf_counter() - start  # this run's cost: loading, not the saved training
    else:
        pairs = aligner_pairs(o.aligner_pairs, seed)
        source = pooled_states(model, tokenizer, [a for a, _ in pairs], layer=o.layer)
        target = pooled_states(model, tokenizer, [f for _, f in pairs], layer=o.layer)
        states_s = time.perf_counter() - start
        aligner, fit = train_aligner(
            source,
            target,
            epochs=o.aligner_epochs,
            lr=o.aligner_lr,
            batch_size=o.aligner_batch_size,
            dropout=o.aligner_dropout,
            seed=seed,
            device=model_device(model),
        )
        fit.seconds += states_s
        if o.save_aligner_path:
            save_aligner(o.save_aligner_path, aligner, fingerprint, fit)
    states = pooled_states(model, tokenizer, anonymized, layer=o.layer)
    estimates = aligner.estimate(states)
    subspace = forget_subspace(estimates, variance=o.variance, center=o.center, max_rank=o.max_rank)
    matrix = projection_matrix(subspace.basis, o.alpha)
    untied = edit_head(model, matrix)
    return CoreResult(subspace=subspace, fit=fit, untied=untied, texts=len(anonymized))


def anonymized_inputs(records: Sequence[Record]) -> list[str]:
    """The only thing NSPU reads of the forget set: each record's anonymised text.

    ``anonymized_text`` from ``detect --anonymize`` when present, else the text with
    its spans replaced by ``<ENTITY_TYPE>`` here.
    """
    out = []
    for rec in records:
        given = getattr(rec, "anonymized_text", None)
        out.append(
            given if isinstance(given, str) and given.strip() else anonymized_text(rec.text, rec.spans)
        )
    return out


@register
class NeuroSemanticProjector(Method):
    name = "nspu"
    summary = (
        "Project the forget subspace (PCA of aligner estimates from anonymised text) out of the "
        "output head; no gradients through the model."
    )
    Options: ClassVar[type[NspuOptions]] = NspuOptions
    options: NspuOptions

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        forget: Sequence[Record],
        retain: RetainData,
        *,
        seed: int,
        device: str,
        progress: ReadingCallback | None = None,
    ) -> EditResult:
        from pii_unlearn.unlearn.loop import guard_note, kept_perplexity, within_utility_limit

        o = self.options
        start = time.perf_counter()
        texts = anonymized_inputs(forget)
        pad = padding_id(tokenizer)
        guard: list[Any] = []
        readings: list[GuardReading] = []
        note: str | None = None
        if o.measure_utility:
            _, guard = retain.examples(model, tokenizer, o, seed)
            first = GuardReading(0, math.nan, kept_perplexity(model, guard, pad, device), 0.0)
            readings.append(first)
            note = guard_note(first.ppl, len(tokenizer))
            if progress:
                progress(first)
        core = nspu_core(model, tokenizer, texts, o, seed=seed)
        stop_reason = Stop.PROJECTED
        if guard:
            ppl = kept_perplexity(model, guard, pad, device)
            base = readings[0].ppl
            inc = 100.0 * (ppl / base - 1.0) if base and math.isfinite(base) else 0.0
            after = GuardReading(1, math.nan, ppl, inc)
            readings.append(after)
            if progress:
                progress(after)
            if not within_utility_limit(after, o.ppl_limit_pct, note):
                stop_reason = Stop.UTILITY_LIMIT
        fit = core.fit
        details = {
            "k": core.subspace.rank,
            "variance_explained": round(core.subspace.variance_explained, 6),
            "components": core.subspace.components,
            "hidden_size": hidden_size(model),
            "alpha": o.alpha,
            "head_untied": core.untied,
            "aligner_reused": fit.reused,
            "aligner_pairs": fit.pairs,
            "aligner_train_loss": round(fit.train_loss, 6),
            "aligner_val_loss": round(fit.val_loss, 6),
            "aligner_identity_val_loss": round(fit.identity_val_loss, 6),
            "aligner_seconds": round(fit.seconds, 3),
            "anonymized_texts": core.texts,
        }
        return EditResult(
            model=model,
            stop_reason=stop_reason,
            steps=0,
            readings=readings,
            kept=readings[-1] if readings else None,
            seconds=time.perf_counter() - start,
            forget_count=len(texts),
            details=details,
            guard_note=note,
        )

    def card_lines(self, result: EditResult) -> list[str]:
        d = result.details
        aligner = (
            "reused (fingerprint checked)"
            if d.get("aligner_reused")
            else f"trained on {d.get('aligner_pairs')} generated pairs"
        )
        alpha, k, dim = d.get("alpha", 1.0), d.get("k"), d.get("hidden_size")
        share = 100 * float(d.get("variance_explained", 0))
        lines = [
            f"- Edited: the output head only, W <- W (I - {alpha:g} Q Q^T), forget subspace of rank {k} "
            f"of {dim} ({share:.1f}% of the forget estimates' variance); the method read anonymised "
            f"forget text only; aligner {aligner}",
        ]
        if d.get("head_untied"):
            lines.append(
                "- The output head was tied to the input embeddings: it is now a separate tensor "
                "(`tie_word_embeddings: false`); the input embeddings are unchanged"
            )
        lines.append(f"- Stopped: {result.stop_reason}")
        if len(result.readings) == 2:
            a, b = result.readings
            lines.append(
                f"- Held-out retain perplexity {a.ppl:.3f} -> {b.ppl:.3f} ({b.ppl_increase_pct:+.2f}%)"
            )
        lines.append(
            "- Caveat: a head projection hides the subspace from the output; the hidden states still "
            "carry it (the audit's probes say how much remains)"
        )
        return lines

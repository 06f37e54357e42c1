"""Null matching: train each forget value's likelihood onto that of same-shape values the model never saw.

Suppression methods push the PII tokens down until greedy decoding stops
reproducing them; the value then often still outranks every other value of its
shape. Here the target is the null itself. Each step, for every PII span of the
batch's records, the method draws ``twins`` fresh same-shape values (digits
redrawn when the value carries digits, else a Faker value of the entity type),
picks one of several prefixes an attacker might use (the record's own text
before the span, the same with the other PII values in it swapped for fakes, the
last few words only), and pulls the true value's summed log-likelihood in that
prefix onto a quantile of the twins' (:func:`pii_unlearn.unlearn.losses.null_matching`,
two-sided: a value pushed below its twins is pulled back). The quantile is drawn
once per value, so across values the rank among never-seen values is spread as a
null's is. With ``anchor`` > 0 (the default) the target is the twins as the model
being trained scores them, and a second term holds the twins at their starting
likelihood: without it (``anchor=0``: twins scored by the frozen start) training
pushes every value of the shape down in that context and the true value keeps its
rank (``bench/deep.md``). The non-PII tokens of the forget records keep their NLL
(``alpha``) and the loop's KL term keeps the retain text.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import Field

from pii_unlearn.artifacts import Record
from pii_unlearn.extraction import extraction_targets
from pii_unlearn.lm import encode, pad_right, padding_id
from pii_unlearn.options import with_defaults
from pii_unlearn.pii.anonymize import replace_spans
from pii_unlearn.pii.fakes import fake_value, make_faker
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import ForgetExample
from pii_unlearn.unlearn.losses import (
    null_matching,
    per_sequence_mean,
    target_masks,
    token_nll,
    weighted_mean,
)
from pii_unlearn.unlearn.methods.base import register
from pii_unlearn.unlearn.methods.gradient import Batch, Forward, GradientMethod, example_index

#: A value with at least this many digits gets twins by redrawing its digits (same shape);
#: others get a fresh Faker value of their entity type.
DIGIT_SHAPE_MIN = 3
#: Prefix variants the method can train on.
PREFIX_VARIANTS = ("own", "swapped", "truncated")


class NullMatchOptions(
    with_defaults(GradientOptions, "NullMatchLoop", lr=1e-3, lora=False, max_steps=60, eval_every=10)
):
    """Null matching's options: the shared loop's, plus twins, prefixes and loss weights."""

    twins: int = Field(4, ge=2, description="same-shape never-seen values drawn per forget value and step")
    spans_per_record: int = Field(2, ge=1, description="PII spans of a record trained per step, at most")
    prefixes: list[str] = Field(
        ["own", "swapped", "truncated"],
        description="prefix variants drawn from each step: own (the record's text before the value), "
        "swapped (its other PII values replaced by fakes), truncated (the last words only)",
    )
    truncate_words: int = Field(3, ge=1, description="words kept by the truncated prefix")
    delta: float = Field(2.0, gt=0, description="smooth-L1 threshold of the null-matching loss, in nats")
    spread: bool = Field(
        True, description="pull each value to a random quantile of its twins (else to their median)"
    )
    frozen_twins: bool = Field(
        True,
        description="with anchor=0: score the twins under the frozen starting model (a fixed target), "
        "else under the model being trained",
    )
    anchor: float = Field(
        1.0,
        ge=0,
        description="if > 0: pull onto the twins as the model being trained scores them, and hold "
        "the twins at their starting likelihood with this weight",
    )
    alpha: float = Field(1.0, ge=0, description="weight of the NLL on the forget records' non-PII tokens")
    gamma: float = Field(1.0, ge=0, description="weight of the null-matching term")


@dataclass(frozen=True)
class _Item:
    """One PII value of a forget record: its prefixes, the text before it and its entity type."""

    prefixes: tuple[str, ...]
    lead: str
    value: str
    entity_type: str
    quantile: float


def _digit_twin(value: str, rng: random.Random) -> str:
    return "".join(rng.choice("0123456789") if c.isdigit() and c.isascii() else c for c in value)


@register
class NullMatch(GradientMethod):
    name = "nullmatch"
    summary = (
        "Two-sided: each PII value's log-likelihood (own, fake-swapped, truncated prefixes) pulled onto "
        "never-seen same-shape twins' (twins held in place), all weights, plus non-PII NLL and KL."
    )
    Options = NullMatchOptions
    options: NullMatchOptions
    needs_spans = True
    #: The target is the null, not a threshold: run the steps, keep the last state within utility.
    stops_when_forgotten: ClassVar[bool] = False

    def examples(self, records: Sequence[Record], tokenizer: Any, seed: int) -> list[ForgetExample]:
        examples = super().examples(records, tokenizer, seed)
        o = self.options
        unknown = [p for p in o.prefixes if p not in PREFIX_VARIANTS]
        if unknown or not o.prefixes:
            from pii_unlearn.errors import InputError

            raise InputError(f"prefixes must be among {', '.join(PREFIX_VARIANTS)} (got {o.prefixes})")
        self._tokenizer = tokenizer
        self._rng = random.Random(seed)
        self._fake = make_faker(seed + 17)
        by_id = {}
        for rec in records:
            if rec.spans and rec.id not in by_id:
                by_id[rec.id] = self._items(rec, seed)
        self._per_example = [by_id.get(e.record_id, []) for e in examples]
        return examples

    def _items(self, record: Record, seed: int) -> list[_Item]:
        o = self.options
        spans = sorted(record.spans, key=lambda s: s.start)
        items = []
        for target in extraction_targets([record]):
            prefix = target.prefix
            variants = []
            if "own" in o.prefixes:
                variants.append(prefix)
            if "swapped" in o.prefixes:
                inside = [s for s in spans if s.end <= len(prefix)]
                if inside:
                    variants.append(
                        replace_spans(prefix, inside, lambda s: fake_value(self._fake, s.entity_type))
                    )
            if "truncated" in o.prefixes:
                words = prefix.split()
                if len(words) > o.truncate_words:
                    variants.append(" ".join(words[-o.truncate_words :]))
            if not variants:
                variants.append(prefix)
            digest = hashlib.sha256(f"{seed}:{record.id}:{target.value}".encode()).digest()
            quantile = int.from_bytes(digest[:4], "big") / 2**32 if o.spread else 0.5
            lead = target.target[: len(target.target) - len(target.value)]
            items.append(_Item(tuple(variants), lead, target.value, target.entity_type, quantile))
        return items

    def _twin(self, item: _Item) -> str:
        if sum(c.isdigit() for c in item.value) >= DIGIT_SHAPE_MIN:
            for _ in range(20):
                twin = _digit_twin(item.value, self._rng)
                if twin != item.value:
                    return twin
        for _ in range(20):
            twin = fake_value(self._fake, item.entity_type)
            if twin != item.value:
                return twin
        return twin

    def prepare(
        self, examples: Sequence[ForgetExample], reference: Any, pad_id: int, device: Any
    ) -> dict[str, list[float]]:
        self._reference = reference
        return example_index(examples)

    def forget_loss(self, logits: torch.Tensor, batch: Batch, forward: Forward) -> torch.Tensor:
        o = self.options
        nll = token_nll(logits, batch["input_ids"])
        _, other = target_masks(batch)
        loss = o.alpha * weighted_mean(per_sequence_mean(nll, other), batch["weights"])
        if o.gamma == 0:
            return loss
        items: list[_Item] = []
        item_weights: list[float] = []
        for idx, w in zip(batch["index"].tolist(), batch["weights"].tolist(), strict=True):
            mine = self._per_example[int(idx)]
            picked = self._rng.sample(mine, min(o.spans_per_record, len(mine)))
            items += picked
            item_weights += [w] * len(picked)
        if not items:
            return loss
        prefixes, conts = [], []
        for item in items:
            prefix = self._rng.choice(item.prefixes)
            values = [item.value] + [self._twin(item) for _ in range(o.twins)]
            prefixes.append(prefix)
            conts.append([item.lead + v for v in values])
        device = batch["input_ids"].device
        true_ids = [(p, c[0]) for p, c in zip(prefixes, conts, strict=True)]
        twin_ids = [(p, v) for p, c in zip(prefixes, conts, strict=True) for v in c[1:]]
        true_logp = self._continuation_logp(forward, true_ids, device)
        shape = (len(items), o.twins)
        weights = torch.tensor(item_weights, device=device)
        quantiles = torch.tensor([it.quantile for it in items], device=device)
        if o.anchor > 0:
            # target: the twins under the model being trained; the twins themselves held at
            # their starting likelihood, so the pull is specific to the true value
            twin_logp = self._continuation_logp(forward, twin_ids, device).view(shape)
            with torch.no_grad():
                twin_ref = self._continuation_logp(self._reference.logits, twin_ids, device).view(shape)
            held = torch.nn.functional.smooth_l1_loss(twin_logp, twin_ref, beta=o.delta, reduction="none")
            loss = loss + o.anchor * weighted_mean(held.mean(-1), weights)
        else:
            with torch.no_grad():
                twins_under = self._reference.logits if o.frozen_twins else forward
                twin_logp = self._continuation_logp(twins_under, twin_ids, device).view(shape)
        return loss + o.gamma * null_matching(true_logp, twin_logp, quantiles, weights, delta=o.delta)

    def _continuation_logp(
        self, forward: Forward, pairs: Sequence[tuple[str, str]], device: Any
    ) -> torch.Tensor:
        """Summed log-likelihood of each continuation after its prefix, ``(len(pairs),)``."""
        tok = self._tokenizer
        pad = padding_id(tok)
        seqs, masks = [], []
        for prefix, cont in pairs:
            pre = encode(tok, prefix)["input_ids"]
            post = tok(cont, add_special_tokens=False)["input_ids"]
            seqs.append(pre + post)
            masks.append([0] * len(pre) + [1] * len(post))
        ids, attn = pad_right(seqs, pad, device)
        cont_mask, _ = pad_right(masks, 0, device)
        nll = token_nll(forward(ids, attn), ids)
        return -(nll * cont_mask[:, 1:].float()).sum(-1)

"""Training data for unlearning: forget examples with PII token masks, retain texts, batches.

A forget example is a record's token ids (BOS first), its PII mask (from the
record's ``token_mask`` when it matches the model's tokenizer, else computed from
its spans) and a weight (1 + PRI under UnPII's risk weighting, else 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pii_unlearn.artifacts import Record, read_records
from pii_unlearn.data import benign_texts
from pii_unlearn.errors import InputError
from pii_unlearn.lm import encode, pad_right
from pii_unlearn.pii.anonymize import faked_text
from pii_unlearn.pii.fakes import make_faker
from pii_unlearn.pii.masks import token_mask
from pii_unlearn.risk import loss_weight

#: Longest forget or retain sequence used in training, in tokens.
MAX_TRAIN_TOKENS = 256


@dataclass(frozen=True)
class ForgetExample:
    """One forget sequence ready for the loop."""

    record_id: str | int
    input_ids: list[int]
    pii_mask: list[int]
    weight: float = 1.0
    preferred_ids: list[int] | None = None


def _record_mask(record: Record, tokenizer: Any) -> tuple[list[int], list[int]]:
    given = getattr(record, "token_mask", None)
    ids = encode(tokenizer, record.text)["input_ids"]
    if isinstance(given, list) and len(given) == len(ids) and all(v in (0, 1) for v in given):
        return ids, [int(v) for v in given]
    return token_mask(tokenizer, record.text, record.spans)


def forget_examples(
    records: Sequence[Record],
    tokenizer: Any,
    *,
    max_length: int,
    require_spans: bool,
    risk_weighting: bool = False,
    preferred: bool = False,
    seed: int = 0,
) -> list[ForgetExample]:
    """Forget examples from records (truncated to ``max_length`` tokens).

    ``risk_weighting`` gives each example UnPII's weight 1 + PRI (the record's ``pri``
    from ``risk-score``, else the default policy's). ``preferred`` adds the record's
    faked twin (``faked_text`` from ``detect --fake``, else made here with Faker and
    ``seed``) as the answer DPO should prefer.
    """
    if not records:
        raise InputError("the forget set is empty")
    if require_spans and not any(r.spans for r in records):
        raise InputError(
            "no forget record has PII spans; run `pii-unlearn detect` on it first "
            "(or choose a method that forgets whole sequences, such as ga or npo)"
        )
    fake = make_faker(seed)
    memo: dict[tuple[str, str], str] = {}
    out = []
    for rec in records:
        if require_spans and not rec.spans:
            continue
        ids, mask = _record_mask(rec, tokenizer)
        weight = loss_weight(rec) if risk_weighting else 1.0
        alt = None
        if preferred:
            twin = getattr(rec, "faked_text", None)
            if not isinstance(twin, str) or not twin:
                twin = faked_text(rec.text, rec.spans, fake, memo)
            alt = encode(tokenizer, twin)["input_ids"][:max_length]
        out.append(ForgetExample(rec.id, ids[:max_length], mask[:max_length], weight, alt))
    return out


@dataclass(frozen=True)
class RetainExample:
    """A benign sequence for the KL term or the utility guard; ``keep`` is 0 on PII tokens."""

    input_ids: list[int]
    keep: list[int]


def retain_from_texts(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[RetainExample]:
    """Retain examples from plain benign texts (every token kept)."""
    out = []
    for text in texts:
        ids = encode(tokenizer, text)["input_ids"][:max_length]
        out.append(RetainExample(ids, [1] * len(ids)))
    return out


def generated_retain(
    model: Any,
    tokenizer: Any,
    *,
    count: int,
    max_new_tokens: int,
    seed: int,
    max_length: int,
    detector: Any = None,
) -> list[RetainExample]:
    """Data-free retain text: the original model's own samples, with detected PII tokens masked out.

    The KL term and the guard then preserve what the model says around PII, never the PII itself.
    """
    from pii_unlearn.lm import generate

    if detector is None:
        from pii_unlearn.pii.detect import Detector

        detector = Detector()
    texts = [
        o[0]
        for o in generate(
            model,
            tokenizer,
            [""] * count,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            seed=seed,
            batch_size=32,
        )
    ]
    texts = [t for t in texts if t.strip()]
    out = []
    for text, spans in zip(texts, detector.analyze(texts), strict=True):
        ids, mask = token_mask(tokenizer, text, spans)
        out.append(RetainExample(ids[:max_length], [1 - m for m in mask[:max_length]]))
    return out


def collate_retain(examples: Sequence[RetainExample], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``keep`` (attention and not PII)."""
    ids, attn = pad_right([e.input_ids for e in examples], pad_id, device)
    keep, _ = pad_right([e.keep for e in examples], 0, device)
    return {"input_ids": ids, "attention_mask": attn, "keep": keep * attn}


def retain_texts(path: str | Path | None, text_field: str = "text") -> list[str]:
    """Benign texts for the KL term and the utility guard: the user's file or the built-in set."""
    if path is None:
        return list(benign_texts())
    texts = [r.text for r in read_records(path, text_field=text_field) if r.text.strip()]
    if len(texts) < 2:
        raise InputError(f"{path}: need at least 2 non-empty retain texts")
    return texts


def split_guard(items: Sequence[Any], guard_count: int) -> tuple[list[Any], list[Any]]:
    """``(kl_items, guard_items)``: the guard measures perplexity on texts the KL term never sees."""
    n_guard = min(guard_count, max(1, len(items) // 3))
    return list(items[n_guard:]), list(items[:n_guard])


def collate(examples: Sequence[ForgetExample], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    """Right-padded tensors: ``input_ids``, ``attention_mask``, ``pii_mask``, ``weights``
    (and ``preferred_ids`` / ``preferred_mask`` when the examples carry preferred twins)."""
    ids, attn = pad_right([e.input_ids for e in examples], pad_id, device)
    pii, _ = pad_right([e.pii_mask for e in examples], 0, device)
    weights = torch.tensor([e.weight for e in examples], dtype=torch.float32, device=device)
    batch = {"input_ids": ids, "attention_mask": attn, "pii_mask": pii * attn, "weights": weights}
    if all(e.preferred_ids for e in examples):
        pref, pref_attn = pad_right([e.preferred_ids or [] for e in examples], pad_id, device)
        batch.update(preferred_ids=pref, preferred_mask=pref_attn)
    return batch


@dataclass
class RetainData:
    """Benign text for a method's retain term and its utility guard, built on first use.

    ``texts`` are the user's (``--retain``): the guard reads a held-out split of them
    that the retain term never trains on. Without them the retain text is the original
    model's own samples with detected PII masked (``retain_source=generated``,
    data-free and in-domain) or the built-in paragraphs, and the guard reads the
    built-in paragraphs (``guard_source=builtin``) or a held-out split of the retain
    text (``guard_source=retain``; in-domain, but on a model that memorised its
    training text its own samples are largely memorised text, whose perplexity any
    unlearning raises). Ask for :meth:`examples` before changing the model: generated
    text must come from the original weights.
    """

    texts: Sequence[str] | None = None
    detector: Any = None
    _cache: dict[tuple[Any, ...], tuple[list[RetainExample], list[RetainExample]]] = field(
        default_factory=dict, repr=False
    )

    def examples(
        self, model: Any, tokenizer: Any, options: Any, seed: int
    ) -> tuple[list[RetainExample], list[RetainExample]]:
        """``(retain_examples, guard_examples)`` under ``options`` (a :class:`RetainOptions`)."""
        key = (
            id(model),
            options.retain_source,
            options.retain_samples,
            options.retain_max_new_tokens,
            options.guard_texts,
            options.guard_source,
            seed,
        )
        if key not in self._cache:
            if self.texts is not None:
                items = retain_from_texts(self.texts, tokenizer, MAX_TRAIN_TOKENS)
            elif options.retain_source == "generated":
                items = generated_retain(
                    model,
                    tokenizer,
                    count=options.retain_samples,
                    seed=seed,
                    max_new_tokens=options.retain_max_new_tokens,
                    max_length=MAX_TRAIN_TOKENS,
                    detector=self.detector,
                )
            else:
                items = retain_from_texts(retain_texts(None), tokenizer, MAX_TRAIN_TOKENS)
            if self.texts is not None or options.guard_source == "retain":
                self._cache[key] = split_guard(items, options.guard_texts)
            else:
                builtin = retain_from_texts(retain_texts(None), tokenizer, MAX_TRAIN_TOKENS)
                self._cache[key] = (items, builtin)
        return self._cache[key]

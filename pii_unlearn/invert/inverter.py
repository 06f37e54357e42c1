"""The ``logit-inverter`` strategy: learn to read text back from a model's next-token log-probabilities.

DFSU's stage 1 (data-free: the forget set is read out of the model itself), small enough for a CPU:

* Front end: the target model's log-probability vector at the last position of a
  text becomes a short sequence of soft embeddings. The vocabulary is ranked by
  probability and split into :data:`CHUNK_SIZES` chunks (1, 1, 1, 1, 2, 2, 4,
  ... tokens: the top tokens alone, the tail in growing groups); each chunk's
  soft embedding is the probability-weighted sum of the target's input-embedding
  rows of its tokens, normalised by the chunk's mass, with the log of that mass
  appended. A learned projection maps each to the inverter's width, plus a
  learned position per chunk. (Ranking by probability is our choice: chunks by
  vocabulary index would average unrelated tokens.)
* Inverter: a tiny randomly initialised T5 (encoder-decoder, nothing
  downloaded) over the target's own vocabulary, reading the soft embeddings as
  ``inputs_embeds`` and writing the text's tokens.
* Training pairs: texts from our own templates (``inverter_templates.txt``) with
  Faker values in the PII slots, and their prefixes that stop just before a slot.
* Use: decode the target's log-probabilities on fresh template prompts (new
  Faker values, cut before a slot) into surrogate texts, detect PII in them, score
  it as the sample strategy does, and keep the surrogates that carry PII.

The trained inverter is saved with the target's embedding matrix and a
fingerprint of its tokenizer, so it can be reused on any model with the same
tokenizer (the sanitized model, for re-inversion). Reconstruction quality is
reported as token F1 on held-out texts.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from pii_unlearn.artifacts import Record, Span, check_output
from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.errors import InputError
from pii_unlearn.invert.base import (
    InversionResult,
    InvertOptions,
    Progress,
    make_detector,
    register_strategy,
    summarize,
)
from pii_unlearn.invert.records import mean_memorization
from pii_unlearn.invert.scoring import (
    DEFAULT_KEEP_THRESHOLD,
    Occurrence,
    ValueScore,
    group_by_value,
    score_occurrences,
)
from pii_unlearn.lm import batched, next_token_logprobs
from pii_unlearn.pii.fakes import fake_value, make_faker
from pii_unlearn.pii.masks import token_mask
from pii_unlearn.synth.fake import fill_template, template_slots

#: Ranked-vocabulary chunk sizes of the front end (the rest of the vocabulary is one last chunk).
CHUNK_SIZES: tuple[int, ...] = (1, 1, 1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64, 64)
#: Greedy decoding never repeats a token n-gram of this length (small inverters loop otherwise).
NO_REPEAT_NGRAM = 3
#: The shipped training templates.
TEMPLATES_FILE = "inverter_templates.txt"
#: Files of a saved inverter.
INVERTER_CONFIG = "inverter.json"
INVERTER_WEIGHTS = "frontend.safetensors"
INVERTER_T5 = "t5"
#: Name of the strategy (in the registry, records and manifests).
NAME = "logit-inverter"
#: Attention heads of the inverter (its width must be a multiple of this).
HEADS = 4
#: A span is flagged ``memorised`` when its value's confidence reaches this (nothing is dropped).
MEMORISED_THRESHOLD = DEFAULT_KEEP_THRESHOLD


class LogitInverterOptions(InvertOptions):
    """Options of the ``logit-inverter`` strategy."""

    num_samples: int = Field(
        256, ge=1, description="Fresh template prompts whose log-probabilities are decoded."
    )
    builtin_prompts: bool = Field(
        True, description="Decode fresh prompts from the built-in templates as well."
    )
    inverter: Path | None = Field(None, description="Reuse the inverter saved in this folder (no training).")
    save_inverter: Path | None = Field(None, description="Save the trained inverter to this folder.")
    train_texts: int = Field(2000, ge=1, description="Template texts the inverter is trained on.")
    heldout_texts: int = Field(200, ge=1, description="Held-out texts for the reported token F1.")
    epochs: int = Field(5, ge=1, description="Training epochs.")
    d_model: int = Field(128, ge=HEADS, multiple_of=HEADS, description="Width of the inverter.")
    layers: int = Field(2, ge=1, description="Encoder and decoder layers of the inverter.")
    lr: float = Field(2e-3, gt=0.0, description="Learning rate of the inverter.")


@dataclass
class InverterConfig:
    """Size and training of the inverter; saved with it (see :meth:`from_options` for a new one)."""

    d_model: int
    layers: int
    max_len: int
    train_texts: int
    heldout_texts: int
    epochs: int
    lr: float
    seed: int
    heads: int = HEADS
    d_ff: int = 256
    train_batch_size: int = 32
    chunk_sizes: tuple[int, ...] = CHUNK_SIZES
    tokenizer_fingerprint: str = ""
    target_vocab: int = 0
    target_dim: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    heldout_token_f1: float | None = None

    @classmethod
    def from_options(cls, options: LogitInverterOptions, seed: int) -> InverterConfig:
        """The config of a new inverter: sizes and training from ``options``, its length their tokens."""
        return cls(
            d_model=options.d_model,
            layers=options.layers,
            max_len=options.max_new_tokens,
            train_texts=options.train_texts,
            heldout_texts=options.heldout_texts,
            epochs=options.epochs,
            lr=options.lr,
            seed=seed,
        )


def builtin_templates() -> list[str]:
    """The shipped inverter training templates."""
    text = resources.files("pii_unlearn.invert").joinpath(TEMPLATES_FILE).read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of a tokenizer's vocabulary (token -> id), to tell whether an inverter fits a model."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()


def _filled(template: str, fake: Any) -> tuple[str, list[dict[str, Any]]]:
    """``template`` with a fresh Faker value in each slot, and the values' spans."""
    return fill_template(template, {slot: fake_value(fake, slot) for slot in template_slots(template)})


def template_texts(templates: Sequence[str], count: int, seed: int) -> list[str]:
    """``count`` texts: templates filled with fresh Faker values, and prefixes cut before a slot.

    Half are whole texts, half stop just before a randomly chosen slot (how the
    prompts look at decoding time). Deterministic per seed.
    """
    fake = make_faker(seed)
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        text, spans = _filled(templates[i % len(templates)], fake)
        if i % 2 == 1 and len(spans) > 1:
            cut = spans[rng.randrange(1, len(spans))]["start"]
            text = text[:cut].rstrip()
        out.append(text)
    return out


def token_f1(predicted: Sequence[int], reference: Sequence[int]) -> float:
    """Bag-of-tokens F1 between two token id sequences (1.0 when both are empty)."""
    if not predicted and not reference:
        return 1.0
    common = sum((Counter(predicted) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted)
    recall = common / len(reference)
    return 2 * precision * recall / (precision + recall)


class SoftPromptFrontEnd(nn.Module):
    """Log-probability vector -> chunks of probability-weighted target embeddings -> inverter width."""

    def __init__(self, embedding: torch.Tensor, chunk_sizes: Sequence[int], d_model: int) -> None:
        super().__init__()
        self.register_buffer("embedding", embedding.detach().float().clone(), persistent=True)
        self.chunk_sizes = tuple(int(c) for c in chunk_sizes)
        n_chunks = len(self.chunk_sizes) + 1
        self.proj = nn.Linear(embedding.shape[1] + 1, d_model)
        self.position = nn.Parameter(torch.zeros(n_chunks, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.norm = nn.LayerNorm(d_model)

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_sizes) + 1

    def soft_embeddings(self, logprobs: torch.Tensor) -> torch.Tensor:
        """``[batch, chunks, dim + 1]``: normalised weighted embedding and log mass of each rank chunk."""
        vocab = self.embedding.shape[0]
        probs = logprobs[:, :vocab].float().exp()
        ranked, order = probs.sort(dim=-1, descending=True)
        feats = []
        start = 0
        bounds = [*self.chunk_sizes, max(0, vocab - sum(self.chunk_sizes))]
        for size in bounds:
            stop = min(vocab, start + size)
            if stop <= start:
                feats.append(torch.zeros(probs.shape[0], self.embedding.shape[1] + 1, device=probs.device))
                continue
            p = ranked[:, start:stop]
            rows = self.embedding[order[:, start:stop]]
            mass = p.sum(-1, keepdim=True)
            mean = (p.unsqueeze(-1) * rows).sum(1) / (mass + 1e-9)
            feats.append(torch.cat([mean, torch.log(mass + 1e-9)], dim=-1))
            start = stop
        return torch.stack(feats, dim=1)

    def forward(self, logprobs: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(self.soft_embeddings(logprobs)) + self.position)


class LogitInverter(nn.Module):
    """Front end plus a tiny T5 over the target tokenizer's vocabulary."""

    def __init__(self, config: InverterConfig, embedding: torch.Tensor, tokenizer: Any) -> None:
        super().__init__()
        from transformers import T5Config, T5ForConditionalGeneration

        self.config = config
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else pad
        t5_config = T5Config(
            vocab_size=int(embedding.shape[0]),
            d_model=config.d_model,
            d_kv=config.d_model // config.heads,
            d_ff=config.d_ff,
            num_layers=config.layers,
            num_decoder_layers=config.layers,
            num_heads=config.heads,
            dropout_rate=0.0,
            pad_token_id=pad,
            eos_token_id=eos,
            decoder_start_token_id=pad,
            tie_word_embeddings=True,
        )
        self.front = SoftPromptFrontEnd(embedding, config.chunk_sizes, config.d_model)
        self.t5 = T5ForConditionalGeneration(t5_config)

    def loss(self, logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeds = self.front(logprobs)
        return self.t5(inputs_embeds=embeds, labels=labels).loss

    @torch.no_grad()
    def decode(self, logprobs: torch.Tensor, max_new_tokens: int) -> list[list[int]]:
        """Greedy reconstructions (token ids, without start, end and padding), no repeated 3-grams."""
        embeds = self.front(logprobs)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        out = self.t5.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            no_repeat_ngram_size=NO_REPEAT_NGRAM,
        )
        special = {self.t5.config.pad_token_id, self.t5.config.eos_token_id}
        result = []
        for row in out.tolist():
            ids = row[1:]
            if self.t5.config.eos_token_id in ids:
                ids = ids[: ids.index(self.t5.config.eos_token_id)]
            result.append([t for t in ids if t not in special])
        return result


def _input_embedding(loaded: LoadedModel) -> torch.Tensor:
    return loaded.model.get_input_embeddings().weight.detach().float().cpu()


def target_logprobs(loaded: LoadedModel, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """The target's next-token log-probabilities at the end of each text (CPU, float32)."""
    return next_token_logprobs(loaded.model, loaded.tokenizer, texts, batch_size=batch_size)


def _labels(tokenizer: Any, texts: Sequence[str], max_len: int) -> torch.Tensor:
    """Token ids of each text (no BOS) plus EOS, right-padded with -100."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    rows = [[*tokenizer(t, add_special_tokens=False)["input_ids"][: max_len - 1], eos] for t in texts]
    width = max(len(r) for r in rows)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        labels[i, : len(row)] = torch.tensor(row)
    return labels


def heldout_f1(inverter: LogitInverter, loaded: LoadedModel, texts: Sequence[str], batch_size: int) -> float:
    """Mean token F1 of the inverter's reconstructions of ``texts`` from the target's log-probs."""
    if not texts:
        return float("nan")
    tok = loaded.tokenizer
    scores: list[float] = []
    inverter.eval()
    for chunk in batched(list(texts), batch_size):
        lps = target_logprobs(loaded, chunk, batch_size)
        for text, pred in zip(chunk, inverter.decode(lps, inverter.config.max_len), strict=True):
            scores.append(token_f1(pred, tok(text, add_special_tokens=False)["input_ids"]))
    return sum(scores) / len(scores)


def train_inverter(
    loaded: LoadedModel,
    config: InverterConfig,
    *,
    templates: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> LogitInverter:
    """Train an inverter for ``loaded``'s tokenizer on Faker-filled template texts.

    Deterministic per ``config.seed``.
    """
    templates = list(templates or builtin_templates())
    torch.manual_seed(config.seed)
    embedding = _input_embedding(loaded)
    config.tokenizer_fingerprint = tokenizer_fingerprint(loaded.tokenizer)
    config.target_vocab, config.target_dim = int(embedding.shape[0]), int(embedding.shape[1])
    inverter = LogitInverter(config, embedding, loaded.tokenizer)
    texts = template_texts(templates, config.train_texts + config.heldout_texts, config.seed + 7919)
    train, heldout = texts[: config.train_texts], texts[config.train_texts :]
    inputs = target_logprobs(loaded, train, 64)
    labels = _labels(loaded.tokenizer, train, config.max_len)
    optim = torch.optim.AdamW(inverter.parameters(), lr=config.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(train) / config.train_batch_size)
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / 30) * max(0.05, 1 - s / max(1, total))
    )
    gen = torch.Generator().manual_seed(config.seed)
    step = 0
    for epoch in range(config.epochs):
        inverter.train()
        order = torch.randperm(len(train), generator=gen)
        running = 0.0
        for b in range(0, len(train), config.train_batch_size):
            idx = order[b : b + config.train_batch_size]
            lab = labels[idx]
            lab = lab[:, : int((lab != -100).sum(-1).max())].contiguous()
            loss = inverter.loss(inputs[idx], lab)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(inverter.parameters(), 1.0)
            optim.step()
            sched.step()
            step += 1
            running += float(loss.detach()) * len(idx)
            if progress is not None:
                progress("training inverter", step, total)
        config.history.append({"epoch": epoch + 1, "loss": round(running / len(train), 4)})
    inverter.eval()
    config.heldout_token_f1 = round(heldout_f1(inverter, loaded, heldout, 64), 4)
    return inverter


def write_inverter(inverter: LogitInverter, path: str | Path) -> Path:
    """Write the inverter to a folder (atomically: temp folder, then rename)."""
    from safetensors.torch import save_file

    out = check_output(path, folder=True, marker=INVERTER_CONFIG, kind="an inverter folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        inverter.t5.save_pretrained(tmp / INVERTER_T5, safe_serialization=True)
        state = {k: v.contiguous() for k, v in inverter.front.state_dict().items()}
        save_file(state, str(tmp / INVERTER_WEIGHTS))
        cfg = asdict(inverter.config)
        (tmp / INVERTER_CONFIG).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_inverter(path: str | Path, loaded: LoadedModel) -> LogitInverter:
    """A saved inverter, checked to fit ``loaded``'s tokenizer."""
    from safetensors.torch import load_file
    from transformers import T5ForConditionalGeneration

    src = Path(path)
    if not (src / INVERTER_CONFIG).exists():
        raise InputError(f"{src}: not a saved inverter (no {INVERTER_CONFIG})")
    try:
        raw = json.loads((src / INVERTER_CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{src}: unreadable inverter config ({err})") from None
    if not isinstance(raw, dict) or raw.get("tokenizer_fingerprint") != tokenizer_fingerprint(
        loaded.tokenizer
    ):
        raise InputError(f"{src}: this inverter was trained for a different tokenizer than {loaded.source}'s")
    try:
        config = InverterConfig(**{**raw, "chunk_sizes": tuple(raw.get("chunk_sizes", CHUNK_SIZES))})
    except TypeError as err:
        raise InputError(f"{src}: unreadable inverter config ({err})") from None
    state = load_file(str(src / INVERTER_WEIGHTS))
    inverter = LogitInverter(config, state["embedding"], loaded.tokenizer)
    inverter.front.load_state_dict(state)
    inverter.t5 = T5ForConditionalGeneration.from_pretrained(src / INVERTER_T5)
    inverter.eval()
    return inverter


def decode_prompts(templates: Sequence[str], count: int, seed: int) -> list[str]:
    """Fresh prompts: templates with new Faker values, cut just before a slot after the first."""
    fake = make_faker(seed)
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        text, spans = _filled(templates[i % len(templates)], fake)
        cut = spans[rng.randrange(1, len(spans))]["start"] if len(spans) > 1 else len(text)
        out.append(text[:cut].rstrip())
    return out


@register_strategy(NAME, LogitInverterOptions)
def logit_inverter_strategy(
    loaded: LoadedModel,
    options: LogitInverterOptions,
    *,
    seed: int,
    prompts: Sequence[str] | None,
    detector: Any,
    progress: Progress | None,
) -> InversionResult:
    """Train (or load) an inverter, decode the target's log-probs on fresh template prompts, keep PII.

    ``num_samples`` prompts are decoded (fresh Faker values in our own templates,
    plus ``prompts`` when given); every surrogate text with detected PII becomes a
    record, its spans scored like the sample strategy's (``memorization`` in
    [0, 1]; spans reaching :data:`MEMORISED_THRESHOLD` are flagged ``memorised``,
    nothing is dropped). ``inverter`` reuses a saved inverter; ``save_inverter``
    writes the trained one.
    """
    o = options
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if o.save_inverter is not None and not o.save_inverter.parent.exists():
        raise InputError(f"{o.save_inverter.parent}: output folder does not exist")
    detector = make_detector(detector)
    timings["detector_load"] = round(time.perf_counter() - start, 3)
    t0 = time.perf_counter()
    if o.inverter is not None:
        model = load_inverter(o.inverter, loaded)
        trained = False
    else:
        model = train_inverter(loaded, InverterConfig.from_options(o, seed), progress=progress)
        trained = True
    timings["training" if trained else "loading_inverter"] = round(time.perf_counter() - t0, 3)
    if o.save_inverter is not None and trained:
        write_inverter(model, o.save_inverter)
    t0 = time.perf_counter()
    fresh = decode_prompts(builtin_templates(), o.num_samples, seed + 104_729) if o.builtin_prompts else []
    all_prompts = [*fresh, *(p for p in (prompts or []) if p.strip())]
    if not all_prompts:
        raise InputError("no prompts to decode")
    surrogates = decode_surrogates(model, loaded, all_prompts, o, progress)
    timings["decoding"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    distinct = [t for t in dict.fromkeys(surrogates) if t]
    prompt_of: dict[str, str] = {}
    for p, t in zip(all_prompts, surrogates, strict=True):
        prompt_of.setdefault(t, p)
    found = detector.analyze(distinct) if distinct else []
    occs = [
        Occurrence(
            sample=i,
            text=text,
            start=s.start,
            end=s.end,
            entity_type=s.entity_type,
            detector_score=float(s.score),
            sources=frozenset([i]),
        )
        for i, (text, spans) in enumerate(zip(distinct, found, strict=True))
        for s in spans
    ]
    score_occurrences(loaded.model, loaded.tokenizer, occs, k=o.min_k, batch_size=o.batch_size)
    values = {(v.value, v.entity_type): v for v in group_by_value(occs, o.calibration)}
    timings["detect_and_score"] = round(time.perf_counter() - t0, 3)
    records = surrogate_records(loaded, distinct, occs, values, prompt_of)
    timings["total"] = round(time.perf_counter() - start, 3)
    summary = summarize(
        records,
        Counter(v.entity_type for v in values.values()),
        extra={
            "strategy": NAME,
            "prompts": len(all_prompts),
            "distinct_surrogates": len(distinct),
            "memorised_values": sum(v.memorization >= MEMORISED_THRESHOLD for v in values.values()),
            "heldout_token_f1": model.config.heldout_token_f1,
            "inverter_trained": trained,
        },
    )
    settings = {
        "strategy": NAME,
        "seed": seed,
        **o.model_dump(mode="json"),
        "inverter_config": {k: v for k, v in asdict(model.config).items() if k != "history"},
        "training_history": model.config.history,
        "memorised_threshold": MEMORISED_THRESHOLD,
        "detector": detector.settings() if hasattr(detector, "settings") else type(detector).__name__,
    }
    candidates = [
        {"value": v.value, "entity_type": v.entity_type, "kept": True, **v.scores()} for v in values.values()
    ]
    return InversionResult(
        records=records, summary=summary, settings=settings, timings=timings, candidates=candidates
    )


def decode_surrogates(
    model: LogitInverter,
    loaded: LoadedModel,
    prompts: Sequence[str],
    options: LogitInverterOptions,
    progress: Progress | None = None,
) -> list[str]:
    """The inverter's reading of the target's next-token log-probabilities after each prompt."""
    surrogates: list[str] = []
    for chunk in batched(list(prompts), options.batch_size):
        lps = target_logprobs(loaded, chunk, options.batch_size)
        decoded = model.decode(lps, options.max_new_tokens)
        surrogates.extend(loaded.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in decoded)
        if progress is not None:
            progress("decoding", len(surrogates), len(prompts))
    return surrogates


def surrogate_records(
    loaded: LoadedModel,
    texts: Sequence[str],
    occs: Sequence[Occurrence],
    values: dict[tuple[str, str], ValueScore],
    prompt_of: dict[str, str],
) -> list[Record]:
    """One record per surrogate text with detected PII; every span scored, none dropped."""
    records: list[Record] = []
    by_text: dict[int, list[Occurrence]] = {}
    for occ in occs:
        by_text.setdefault(occ.sample, []).append(occ)
    for i, text in enumerate(texts):
        if i not in by_text:
            continue
        spans = []
        for occ in sorted(by_text[i], key=lambda o: o.start):
            vs = values[(occ.value, occ.entity_type)]
            spans.append(
                Span(
                    start=occ.start,
                    end=occ.end,
                    entity_type=occ.entity_type,
                    score=round(occ.detector_score, 4),
                    value=occ.value,
                    memorised=vs.memorization >= MEMORISED_THRESHOLD,
                    **vs.scores(),
                )
            )
        ids, mask = token_mask(loaded.tokenizer, text, spans)
        records.append(
            Record(
                id=f"inv-{len(records):05d}",
                text=text,
                spans=spans,
                memorization=mean_memorization(spans),
                prompt=prompt_of[text],
                strategy=NAME,
                token_mask=mask,
                num_tokens=len(ids),
            )
        )
    return records

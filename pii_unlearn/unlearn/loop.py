"""The one training loop every gradient method runs on: accelerate, LoRA or full, guards.

Each step: a batch of forget examples -> the method's forget loss, plus
``kl_weight`` x KL(original || model) on a batch of retain text. Every
``eval_every`` steps the guards read the forget PII tokens' mean probability
(teacher-forced), the share of the forget set's PII values greedy decoding still
reproduces from the text before them, and the perplexity on held-out retain text.
Training stops when either forgetting reading reaches its target, or before
perplexity rises past its limit; the trainable weights of the best reading that
kept utility are restored.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from pii_unlearn.checkpoint import architecture_modules
from pii_unlearn.errors import InputError
from pii_unlearn.extraction import Target, greedy_hits
from pii_unlearn.lm import batched, padding_id, right_padded_logits
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import ForgetExample, RetainExample, collate, collate_retain
from pii_unlearn.unlearn.engines import check_engine, weights_for
from pii_unlearn.unlearn.losses import kept_nll, kl_to_reference, sequence_logprob, target_masks, token_nll
from pii_unlearn.unlearn.methods.base import EditResult, GuardReading, ReadingCallback, Stop

if TYPE_CHECKING:
    from pii_unlearn.unlearn.methods.gradient import GradientMethod


def lora_targets(model: Any, settings: GradientOptions) -> list[str]:
    """LoRA target module names: the settings', else the architecture's MLP projections."""
    if settings.lora_target_modules:
        return list(settings.lora_target_modules)
    mods = architecture_modules(str(model.config.model_type))
    return [*mods["mlp_in"], *mods["mlp_out"]]


def wrap_trainable(model: Any, settings: GradientOptions) -> Any:
    """The model with LoRA adapters (peft) or with every weight trainable."""
    if not settings.lora:
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, settings)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise InputError(
            f"LoRA target module(s) {', '.join(missing)} not found in this model; "
            "set --set lora_target_modules=NAME,NAME"
        )
    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


class Reference:
    """The frozen starting model: the adapter-free base under LoRA, else a frozen copy."""

    def __init__(self, model: Any, lora: bool) -> None:
        self.model = model
        self.copy = None if lora else copy.deepcopy(model).requires_grad_(False).eval()

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        if self.copy is not None:
            yield self.copy
        else:
            with self.model.disable_adapter():
                yield self.model

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with self.active() as ref:
            return right_padded_logits(ref, input_ids, attention_mask)


@torch.no_grad()
def pii_probability(model: Any, examples: Sequence[ForgetExample], pad_id: int, device: Any) -> float:
    """Mean teacher-forced probability of the forget set's PII tokens (all tokens if none)."""
    total, count = 0.0, 0
    for chunk in batched(examples, 32):
        batch = collate(chunk, pad_id, device)
        nll = token_nll(
            right_padded_logits(model, batch["input_ids"], batch["attention_mask"]),
            batch["input_ids"],
        )
        pii, other = target_masks(batch)
        mask = pii if pii.sum() > 0 else pii + other
        total += float((torch.exp(-nll) * mask).sum())
        count += int(mask.sum())
    return total / max(count, 1)


@torch.no_grad()
def kept_perplexity(model: Any, examples: Sequence[RetainExample], pad_id: int, device: Any) -> float:
    """Perplexity over the kept (non-PII) tokens of retain examples."""
    total, count = 0.0, 0
    for chunk in batched(examples, 16):
        batch = collate_retain(chunk, pad_id, device)
        logits = right_padded_logits(model, batch["input_ids"], batch["attention_mask"])
        mask = batch["keep"][:, 1:].float()
        total += float((token_nll(logits, batch["input_ids"]) * mask).sum())
        count += int(mask.sum())
    return math.exp(total / count) if count else float("nan")


def within_utility_limit(reading: GuardReading, limit_pct: float, note: str | None) -> bool:
    """Whether ``reading`` is within the utility limit; always, when the guard cannot read (``note``).

    The one rule for every method's utility check: a guard text the model cannot read
    (:func:`guard_note`) is recorded, never obeyed.
    """
    return note is not None or reading.ppl_increase_pct <= limit_pct


def guard_note(ppl: float, vocab_size: int) -> str | None:
    """Why a utility guard whose starting perplexity is ``ppl`` cannot measure utility, or None.

    A model no better than a uniform guess over its vocabulary on the guard text
    (perplexity at or above the vocabulary size) does not use what it knows there, and
    a change in that perplexity is noise, not utility lost: the tiny demo victims read
    ~10,000 on the built-in English paragraphs with ~1,900 tokens, and an oracle
    ``twinfit`` run on one of them was stopped at +4.9% after 25 steps, each slower
    retry read higher still, and the run kept its starting weights (``bench/compare.md``).
    """
    if math.isfinite(ppl) and ppl < vocab_size:
        return None
    return (
        f"the model's perplexity on the guard text ({ppl:.0f}) is no better than a uniform guess over "
        f"its {vocab_size} tokens: readings recorded, not used to stop (pass in-domain --retain text)"
    )


def lr_schedule(optimizer: Any, options: GradientOptions) -> Any:
    """The learning rate over the run: constant, or a linear warm-up over ``warmup_steps`` and a
    cosine decay to 0 at ``max_steps`` (``transformers.get_scheduler``)."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if options.lr_schedule == "constant" else "cosine"
    return get_scheduler(
        name, optimizer, num_warmup_steps=options.warmup_steps, num_training_steps=options.max_steps
    )


#: The most memory the frozen reference's next-token log-probabilities on the KL term's retain
#: text may take to be kept for the whole run (computed once); above it they are recomputed on
#: each step's retain batch. The reference never changes, so both give the same KL term.
REFERENCE_CACHE_BYTES = 1 << 30


class ReferenceCache:
    """The frozen reference's log-probabilities on every retain example, computed once.

    The KL term reads the reference's next-token distribution on each step's retain
    batch; the retain set is fixed and the reference frozen, so over a run the same
    distributions were recomputed again and again (measured: 3% of a tiny `twinfit` run's
    time). :meth:`build` keeps them when they fit in ``budget`` bytes.
    """

    def __init__(self, rows: list[torch.Tensor]) -> None:
        self.rows = rows

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        reference: Reference,
        examples: Sequence[RetainExample],
        pad_id: int,
        device: Any,
        *,
        autocast: Callable[[], Any] = contextlib.nullcontext,
        budget: int = REFERENCE_CACHE_BYTES,
    ) -> ReferenceCache | None:
        """The cache, or ``None`` when the log-probabilities would take more than ``budget`` bytes
        (known from the first chunk's vocabulary width)."""
        tokens = sum(len(e.input_ids) for e in examples)
        rows: list[torch.Tensor] = []
        for chunk in batched(examples, 16):
            batch = collate_retain(chunk, pad_id, device)
            with autocast():
                logits = reference.logits(batch["input_ids"], batch["attention_mask"])
            if tokens * logits.shape[-1] * 4 > budget:
                return None
            logp = torch.log_softmax(logits.float(), dim=-1)
            rows.extend(logp[i, : len(e.input_ids)].clone() for i, e in enumerate(chunk))
        return cls(rows) if rows else None

    def batch(self, picked: Sequence[int], width: int) -> torch.Tensor:
        """The picked examples' log-probabilities, right-padded with zeros to ``width`` positions
        (padding positions are outside the KL term's mask)."""
        first = self.rows[picked[0]]
        out = first.new_zeros((len(picked), width, first.shape[-1]))
        for row, i in enumerate(picked):
            out[row, : len(self.rows[i])] = self.rows[i]
        return out


@torch.no_grad()
def reference_logprobs(
    reference: Reference,
    examples: Sequence[ForgetExample],
    pad_id: int,
    device: Any,
    *,
    preferred: bool = False,
) -> list[float]:
    """The frozen starting model's summed log-likelihood of each example (or of its preferred twin)."""
    out: list[float] = []
    for chunk in batched(examples, 32):
        batch = collate(chunk, pad_id, device)
        if preferred:
            batch = {"input_ids": batch["preferred_ids"], "attention_mask": batch["preferred_mask"]}
        logits = reference.logits(batch["input_ids"], batch["attention_mask"])
        out.extend(sequence_logprob(logits, batch).tolist())
    return out


def _extra_tensors(
    extras: Mapping[str, Sequence[float]], picked: Sequence[int], device: Any
) -> dict[str, torch.Tensor]:
    return {key: torch.tensor([values[i] for i in picked], device=device) for key, values in extras.items()}


def smoothed_backward(
    compute: Callable[[], torch.Tensor],
    params: Sequence[torch.nn.Parameter],
    accelerator: Any,
    options: GradientOptions,
    generator: torch.Generator,
    attack: Callable[[], torch.Tensor] | None = None,
    smooth: bool = True,
) -> torch.Tensor:
    """Backpropagate one step's loss (``compute`` runs the forward passes) and return it.

    With ``smoothing`` the gradient is also, or only, taken at shifted weights, which are
    put back before the optimizer steps, so the edit has to hold in a region around the
    weights, not at one point: a few steps of fine-tuning then undo less of it.

    - ``rwp``: the gradient at the weights shifted by Gaussian noise of ``smoothing_rho``
      times each tensor's RMS (one pass);
    - ``sam``: sharpness-aware minimisation, the gradient at the weights moved
      ``smoothing_rho`` (L2 norm over all trainable weights) up the step's own gradient
      (two passes);
    - ``relearn``: the mean of the loss at the weights and at the weights moved one sign
      step of ``smoothing_rho`` per weight down ``attack`` (the next-token loss on the
      step's retain text, the direction a fine-tuning attacker takes); three passes, the
      attack's on the retain batch only.

    ``smooth`` false (the steps between ``smoothing_every``'s) takes the plain gradient.
    """
    if options.smoothing == "none" or not smooth:
        loss = compute()
        accelerator.backward(loss)
        return loss
    if options.smoothing == "relearn":
        if attack is None:
            raise InputError("smoothing=relearn needs retain text to take the attacker's step on")
        accelerator.backward(attack())
        shifts = [
            -options.smoothing_rho * torch.sign(p.grad) if p.grad is not None else torch.zeros_like(p)
            for p in params
        ]
        for p in params:
            p.grad = None
        here = compute() * 0.5
        accelerator.backward(here)
        return here.detach() + _backward_shifted(lambda: compute() * 0.5, params, shifts, accelerator)
    if options.smoothing == "sam":
        accelerator.backward(compute())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
        scale = options.smoothing_rho / (float(norm) + 1e-12)
        shifts = [(g * scale).to(p.dtype) for p, g in zip(params, grads, strict=True)]
        for p in params:
            p.grad = None
    else:
        shifts = [
            torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype)
            * (options.smoothing_rho * float(p.detach().float().pow(2).mean().sqrt()))
            for p in params
        ]
    return _backward_shifted(compute, params, shifts, accelerator)


def _backward_shifted(
    compute: Callable[[], torch.Tensor],
    params: Sequence[torch.nn.Parameter],
    shifts: Sequence[torch.Tensor],
    accelerator: Any,
) -> torch.Tensor:
    """Backpropagate ``compute``'s loss at the weights plus ``shifts``, then put the weights back;
    return the loss (detached)."""
    with torch.no_grad():
        for p, d in zip(params, shifts, strict=True):
            p.add_(d)
    loss = compute()
    accelerator.backward(loss)
    with torch.no_grad():
        for p, d in zip(params, shifts, strict=True):
            p.sub_(d)
    return loss.detach()


def run_loop(
    model: Any,
    tokenizer: Any,
    method: GradientMethod,
    forget: Sequence[ForgetExample],
    kl_examples: Sequence[RetainExample],
    guard_examples: Sequence[RetainExample],
    *,
    forget_targets: Sequence[Target] = (),
    seed: int,
    device: str,
    progress: ReadingCallback | None = None,
    baseline_ppl: float | None = None,
    probe_examples: Sequence[ForgetExample] | None = None,
) -> EditResult:
    """Train ``model`` with ``method``'s forget loss; return the (possibly peft-wrapped) model and readings.

    The method's :meth:`~GradientMethod.prepare` hook gives any per-example values its
    loss needs (reference log-likelihoods, say); they reach the loss as batch tensors.

    ``baseline_ppl`` is the held-out perplexity the utility guard compares with
    (default: the first reading's); a method that changes the model before the loop
    (SANI erases neurons) passes the original model's. ``probe_examples`` are the
    examples whose PII tokens the probability guard reads (default: ``forget``, the
    examples trained on). A reading within the utility limit is always preferred to
    one outside it; among readings on the same side, the method's ``better`` decides.

    When a run's first reading after the start is already over the utility limit (the
    guard never saw a usable point: a learning rate fitted on a small model overshoots
    on a large one), the starting weights are restored and the run starts again at half
    the learning rate, fresh optimizer state, up to ``backoff`` times; each try is in
    ``attempts`` and each reading carries its try's number.
    """
    from accelerate import Accelerator

    s = method.options
    start = time.perf_counter()
    random.seed(seed)
    torch.manual_seed(seed)
    cpu = not str(device).startswith("cuda")
    bf16 = (not cpu) and torch.cuda.is_bf16_supported()
    accelerator = Accelerator(cpu=cpu, mixed_precision="bf16" if bf16 else "no")
    check_engine(accelerator, s)
    weights = weights_for(accelerator)  # how this engine holds, snapshots and gathers the weights
    model = wrap_trainable(model, s)
    weights.before_prepare(model, accelerator, s)
    from pii_unlearn.unlearn.methods.gradient import GradientMethod as _Shared

    # Under a full fine-tune the reference is a frozen copy of the whole model: make it only
    # when something reads it (the KL term, or a method's own prepare hook).
    uses_reference = s.kl_weight > 0 or type(method).prepare is not _Shared.prepare
    reference = Reference(model, s.lora) if uses_reference else None
    if reference is not None and reference.copy is not None:
        reference.copy = weights.shard_reference(reference.copy, accelerator)
    pad = padding_id(tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP2's sharded ones, where it ran
    schedule = lr_schedule(optimizer, s)
    dev = accelerator.device
    unwrapped = accelerator.unwrap_model(model)
    extras = method.prepare(forget, reference, pad, dev)
    ref_cache = (
        ReferenceCache.build(reference, kl_examples, pad, dev, autocast=accelerator.autocast)
        if s.kl_weight > 0 and reference is not None
        else None
    )

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return right_padded_logits(model, ids, mask)

    def step_loss(
        batch: dict[str, torch.Tensor],
        retain: tuple[dict[str, torch.Tensor], torch.Tensor | None] | None,
    ) -> torch.Tensor:
        """The method's forget loss on ``batch``, plus the KL term on a retain batch given the
        reference's logits on it (computed once per step, outside any smoothing pass)."""
        with accelerator.autocast():
            loss = method.forget_loss(forward(batch["input_ids"], batch["attention_mask"]), batch, forward)
            if retain is not None and retain[1] is not None:
                rb, ref = retain
                cur = forward(rb["input_ids"], rb["attention_mask"])
                loss = loss + s.kl_weight * kl_to_reference(cur, ref, rb["keep"])
        return loss

    def relearn_loss(rb: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-token loss on a retain batch: what a fine-tuning attacker descends."""
        with accelerator.autocast():
            return kept_nll(forward(rb["input_ids"], rb["attention_mask"]), rb["input_ids"], rb["keep"])

    def reading(step: int, loss: float | None, base_ppl: float) -> GuardReading:
        unwrapped.eval()
        prob = pii_probability(unwrapped, probes, pad, dev)
        ppl = kept_perplexity(unwrapped, guard_examples, pad, dev)
        err = None
        if forget_targets:
            hits = greedy_hits(unwrapped, tokenizer, forget_targets, full_text=False)
            err = sum(h for h, _ in hits) / len(hits)
        unwrapped.train()
        inc = 100.0 * (ppl / base_ppl - 1.0) if base_ppl and math.isfinite(base_ppl) else 0.0
        return GuardReading(step, prob, ppl, inc, loss, err)

    def forgotten(r: GuardReading) -> bool:
        return method.stops_when_forgotten and method.forgotten(r)

    probes = list(probe_examples) if probe_examples is not None else forget
    given_base = baseline_ppl is not None and math.isfinite(baseline_ppl) and baseline_ppl > 0
    first = reading(0, None, baseline_ppl if given_base else float("nan"))
    base_ppl = baseline_ppl if given_base else first.ppl
    if not given_base:
        first.ppl_increase_pct = 0.0
    readings = [first]
    note = guard_note(base_ppl, len(tokenizer))

    def within_limit(r: GuardReading) -> bool:
        return within_utility_limit(r, s.ppl_limit_pct, note)

    start_state = weights.snapshot(unwrapped)
    kept, best_state = first, start_state
    kept_within = first_within = within_limit(first)
    if progress:
        progress(first)
    stop_reason = Stop.MAX_STEPS
    rng = random.Random(seed)
    noise = torch.Generator().manual_seed(seed)  # the rwp smoothing's draws
    order: list[int] = []
    kl_order: list[int] = []
    rank, world = accelerator.process_index, accelerator.num_processes
    step = 0
    lr = s.lr
    attempts: list[dict[str, Any]] = []
    model.train()
    if forgotten(first):
        stop_reason = Stop.ALREADY_FORGOTTEN
    tries = 0 if stop_reason == Stop.ALREADY_FORGOTTEN else s.backoff + 1
    for attempt in range(tries):
        if attempt:  # the last try overshot at its first reading: start again, slower
            weights.restore(unwrapped, start_state)
            lr /= 2
            optimizer.state.clear()
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] = lr
            schedule = lr_schedule(optimizer, s)
        stop_reason, read_before = Stop.MAX_STEPS, len(readings)
        for step in range(1, s.max_steps + 1):
            if len(order) < s.batch_size * world:
                order.extend(rng.sample(range(len(forget)), len(forget)))
            take, order = order[: s.batch_size * world], order[s.batch_size * world :]
            mine = take[rank::world] or take[:1]
            batch = collate([forget[i] for i in mine], pad, dev)
            batch.update(_extra_tensors(extras, mine, dev))
            retain: tuple[dict[str, torch.Tensor], torch.Tensor | None] | None = None
            if (s.kl_weight > 0 or s.smoothing == "relearn") and kl_examples:
                if len(kl_order) < s.retain_batch_size:
                    kl_order.extend(rng.sample(range(len(kl_examples)), len(kl_examples)))
                pick, kl_order = kl_order[: s.retain_batch_size], kl_order[s.retain_batch_size :]
                rb = collate_retain([kl_examples[i] for i in pick], pad, dev)
                ref = None
                if ref_cache is not None:
                    ref = ref_cache.batch(pick, rb["input_ids"].shape[1])
                elif s.kl_weight > 0:
                    assert reference is not None
                    with accelerator.autocast():
                        ref = reference.logits(rb["input_ids"], rb["attention_mask"])
                retain = rb, ref
            optimizer.zero_grad(set_to_none=True)
            attack = partial(relearn_loss, retain[0]) if retain is not None else None
            loss = smoothed_backward(
                partial(step_loss, batch, retain),
                params,
                accelerator,
                s,
                noise,
                attack,
                smooth=step % s.smoothing_every == 0,
            )
            accelerator.clip_grad_norm_(params, s.grad_clip)
            optimizer.step()
            schedule.step()
            if step % s.eval_every and step != s.max_steps:
                continue
            r = reading(step, float(loss.detach()), base_ppl)
            r.attempt = attempt
            readings.append(r)
            if progress:
                progress(r)
            within = within_limit(r)
            if (within and not kept_within) or (within == kept_within and method.better(r, kept)):
                kept, best_state, kept_within = r, weights.snapshot(unwrapped), within
            if not within and method.stops_at_utility_limit:
                stop_reason = Stop.UTILITY_LIMIT
                break
            if forgotten(r):
                stop_reason = Stop.FORGOT
                break
        attempts.append({"lr": lr, "steps": step, "stop_reason": stop_reason})
        # overshot: stopped at the utility limit by this try's first reading, from a start within it
        overshot = first_within and stop_reason == Stop.UTILITY_LIMIT and len(readings) == read_before + 1
        if not overshot:
            break
    weights.restore(unwrapped, best_state)
    unwrapped = weights.gather(unwrapped).to(dev)
    unwrapped.eval()
    return EditResult(
        model=unwrapped,
        stop_reason=stop_reason,
        steps=step,
        readings=readings,
        kept=kept,
        seconds=time.perf_counter() - start,
        forget_count=len(forget),
        attempts=attempts,
        engine=str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)),
        guard_note=note,
    )

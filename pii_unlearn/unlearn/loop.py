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
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from pii_unlearn.checkpoint import architecture_modules
from pii_unlearn.errors import InputError
from pii_unlearn.extraction import Target, greedy_hits
from pii_unlearn.lm import batched, padding_id
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import ForgetExample, RetainExample, collate, collate_retain
from pii_unlearn.unlearn.losses import kl_to_reference, sequence_logprob, target_masks, token_nll
from pii_unlearn.unlearn.methods.base import EditResult, GuardReading, ReadingCallback

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
        from pii_unlearn.errors import InputError

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
            return ref(input_ids=input_ids, attention_mask=attention_mask).logits


@torch.no_grad()
def pii_probability(model: Any, examples: Sequence[ForgetExample], pad_id: int, device: Any) -> float:
    """Mean teacher-forced probability of the forget set's PII tokens (all tokens if none)."""
    total, count = 0.0, 0
    for chunk in batched(examples, 32):
        batch = collate(chunk, pad_id, device)
        nll = token_nll(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
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
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        mask = batch["keep"][:, 1:].float()
        total += float((token_nll(logits, batch["input_ids"]) * mask).sum())
        count += int(mask.sum())
    return math.exp(total / count) if count else float("nan")


def lr_schedule(optimizer: Any, options: GradientOptions) -> Any:
    """The learning rate over the run: constant, or a linear warm-up over ``warmup_steps`` and a
    cosine decay to 0 at ``max_steps`` (``transformers.get_scheduler``)."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if options.lr_schedule == "constant" else "cosine"
    return get_scheduler(
        name, optimizer, num_warmup_steps=options.warmup_steps, num_training_steps=options.max_steps
    )


def _resharded(model: Any) -> Any:
    """``model`` with every FSDP2 module back on its shards, so ``named_parameters`` are the
    tensors the optimizer steps (after a forward pass FSDP2 keeps the root's parameters
    gathered, and a copy into those would be lost at the next reshard); no-op otherwise."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    return model


def _zero3(accelerator: Any) -> bool:
    """Whether the loop runs under DeepSpeed ZeRO stage 3 (each process holds a partition of
    every weight and of its fp32 optimizer copy)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", None) == 3


def _trainable_state(model: Any, zero3: bool = False) -> dict[str, Any]:
    """A copy of the trainable weights to restore later. Under ZeRO-3 each process keeps its own
    partitions (the module's and the optimizer's fp32 one), so a snapshot stays sharded."""
    if zero3:
        from deepspeed.utils import safe_get_local_fp32_param

        return {
            n: (p.ds_tensor.detach().clone(), safe_get_local_fp32_param(p).detach().clone())
            for n, p in model.named_parameters()
            if p.requires_grad
        }
    _resharded(model)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _restore(model: Any, state: dict[str, Any], zero3: bool = False) -> None:
    if zero3:  # the module's partition and the fp32 copy the optimizer steps from
        from deepspeed.utils import safe_set_local_fp32_param

        params = dict(model.named_parameters())
        optimizer = params[next(iter(state))]._z3_optimizer
        # as DeepSpeed's own checkpoint loading does: every weight back on its partition first,
        # and the small ones it keeps whole on each process gathered again after the write
        optimizer.checkpoint_event_prologue()
        with torch.no_grad():
            for name, (partition, fp32) in state.items():
                params[name].ds_tensor.copy_(partition)
                safe_set_local_fp32_param(params[name], fp32)
        optimizer.checkpoint_event_epilogue()
        return
    params = dict(_resharded(model).named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


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


def check_engine(accelerator: Any) -> None:
    """Refuse a launch the loop cannot run correctly under, with a one-line error, before training.

    Data parallelism (DDP, ``torchrun``), FSDP2 (``fsdp_version: 2``) and DeepSpeed ZeRO stage 3
    are supported: parameters whole on each process, or sharded with every guard reading a
    collective forward that all processes run in step. FSDP1 wraps the model in a module whose
    parameters are flattened and which ``generate`` cannot run through. ZeRO stages 1 and 2 keep
    every weight whole on each process and shard only the optimizer: DDP does that job without
    DeepSpeed's copy of the weights to keep in step. The optimizer and its schedule are
    ``unlearn``'s own options, so a DeepSpeed config that sets them is refused too.
    """
    kind = str(getattr(getattr(accelerator, "distributed_type", None), "value", "")).upper()
    if kind == "FSDP" and not getattr(accelerator, "is_fsdp2", False):
        raise InputError(
            "unlearn runs under FSDP version 2 only (set fsdp_version: 2, as in "
            "recipes/accelerate/fsdp.yaml); FSDP1 flattens the parameters the guards and the checkpoint read"
        )
    if kind == "DEEPSPEED":
        plugin = accelerator.state.deepspeed_plugin
        if getattr(plugin, "zero_stage", None) != 3:
            raise InputError(
                f"unlearn runs under DeepSpeed ZeRO stage 3 only (zero_stage: 3, as in "
                f"recipes/accelerate/deepspeed.yaml), not stage {getattr(plugin, 'zero_stage', None)}; "
                "for stages 1 and 2 launch with DDP (recipes/accelerate/ddp.yaml)"
            )
        config = plugin.deepspeed_config or {}
        zero = config.get("zero_optimization") or {}
        offloaded = [
            k
            for k in ("offload_optimizer", "offload_param")
            if (zero.get(k) or {}).get("device") not in (None, "none")
        ]
        if offloaded:
            raise InputError(
                f"unlearn does not run with DeepSpeed's {offloaded[0]} (its optimizer is torch's AdamW "
                "and its snapshots read the partitions in memory); set it to none, as in "
                "recipes/accelerate/deepspeed.yaml"
            )
        accumulate = getattr(plugin, "gradient_accumulation_steps", 1)
        if accumulate not in (1, None, "auto"):
            raise InputError(
                f"set gradient_accumulation_steps: 1 in the DeepSpeed config (not {accumulate}): unlearn "
                "steps once per batch and reads its guards between steps; raise --set batch_size instead"
            )
        owned = [key for key in ("optimizer", "scheduler") if key in config]
        if owned:
            raise InputError(
                f"remove '{owned[0]}' from the DeepSpeed config: unlearn sets its optimizer (AdamW) "
                "and schedule from its own options (--lr, --max-steps, ...)"
            )


def _configure_deepspeed(accelerator: Any, options: GradientOptions) -> None:
    """Fill the DeepSpeed config with the loop's batch and clipping before ``prepare``: each
    process takes ``batch_size`` examples a step, one optimizer step per batch (the engine
    steps inside ``accelerator.backward`` and clips there)."""
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = options.batch_size
    config["gradient_accumulation_steps"] = 1
    config["train_batch_size"] = options.batch_size * accelerator.num_processes
    config["gradient_clipping"] = options.grad_clip
    config["zero_allow_untested_optimizer"] = True


def _gather_zero3(partitioned: Any, plain: Any) -> Any:
    """``plain`` (an unpartitioned copy made before ZeRO-3 partitioned ``partitioned``) with the
    trained weights' fp32 values, one weight gathered at a time (collective: every rank calls it)."""
    from deepspeed.utils import safe_get_full_fp32_param

    target = dict(plain.named_parameters())
    with torch.no_grad():
        for name, param in partitioned.named_parameters():
            if param.requires_grad:
                full = safe_get_full_fp32_param(param)
                target[name].copy_(full.reshape(target[name].shape).to("cpu", target[name].dtype))
    return plain


def _gather_into(sharded: Any, plain: Any) -> Any:
    """``plain`` (an unsharded copy made before FSDP2 sharded ``sharded``) with ``sharded``'s
    trainable weights, gathered from every process (a collective call: every rank makes it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, ignore_frozen_params=True)
    full = get_model_state_dict(sharded, options=options)
    # strict=False: the frozen weights are the copy's own; a tied weight arrives under each name
    unexpected = plain.load_state_dict(full, strict=False).unexpected_keys
    if unexpected:
        raise RuntimeError(f"FSDP2 gave weights the unsharded model lacks: {', '.join(unexpected[:3])}")
    return plain


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
    check_engine(accelerator)
    zero3 = _zero3(accelerator)
    if zero3:
        if any(hasattr(p, "ds_id") for p in model.parameters()):
            raise InputError(
                "the model was loaded partitioned (under DeepSpeed's zero.Init); unlearn partitions "
                "it itself: load it whole before calling"
            )
        _configure_deepspeed(accelerator, s)
    model = wrap_trainable(model, s)
    # FSDP2 and ZeRO-3 shard the parameters in place: keep an unsharded copy (on the CPU) to gather
    # the trained weights into, for the checkpoint and for whatever reads the model after the loop
    sharded = zero3 or getattr(accelerator, "is_fsdp2", False)
    plain = copy.deepcopy(model).to("cpu") if sharded else None
    from pii_unlearn.unlearn.methods.gradient import GradientMethod as _Shared

    # Under a full fine-tune the reference is a frozen copy of the whole model: make it only
    # when something reads it (the KL term, or a method's own prepare hook).
    uses_reference = s.kl_weight > 0 or type(method).prepare is not _Shared.prepare
    reference = Reference(model, s.lora) if uses_reference else None
    pad = padding_id(tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP2's sharded ones, where it ran
    schedule = lr_schedule(optimizer, s)
    dev = accelerator.device
    unwrapped = accelerator.unwrap_model(model)
    extras = method.prepare(forget, reference, pad, dev)

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, attention_mask=mask).logits

    def reading(step: int, loss: float | None, base_ppl: float) -> GuardReading:
        unwrapped.eval()
        prob = pii_probability(unwrapped, probes, pad, dev)
        ppl = kept_perplexity(unwrapped, guard_examples, pad, dev)
        err = None
        if forget_targets:
            hits = greedy_hits(unwrapped, tokenizer, forget_targets)
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
    start_state = _trainable_state(unwrapped, zero3)
    kept, best_state = first, start_state
    kept_within = first_within = first.ppl_increase_pct <= s.ppl_limit_pct
    if progress:
        progress(first)
    stop_reason = "max_steps"
    rng = random.Random(seed)
    order: list[int] = []
    kl_order: list[int] = []
    rank, world = accelerator.process_index, accelerator.num_processes
    step = 0
    lr = s.lr
    attempts: list[dict[str, Any]] = []
    model.train()
    if forgotten(first):
        stop_reason = "already_below_target"
    tries = 0 if stop_reason == "already_below_target" else s.backoff + 1
    for attempt in range(tries):
        if attempt:  # the last try overshot at its first reading: start again, slower
            _restore(unwrapped, start_state, zero3)
            lr /= 2
            optimizer.state.clear()
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] = lr
            schedule = lr_schedule(optimizer, s)
        stop_reason, read_before = "max_steps", len(readings)
        for step in range(1, s.max_steps + 1):
            if len(order) < s.batch_size * world:
                order.extend(rng.sample(range(len(forget)), len(forget)))
            take, order = order[: s.batch_size * world], order[s.batch_size * world :]
            mine = take[rank::world] or take[:1]
            batch = collate([forget[i] for i in mine], pad, dev)
            batch.update(_extra_tensors(extras, mine, dev))
            with accelerator.autocast():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = method.forget_loss(logits, batch, forward)
                if s.kl_weight > 0 and kl_examples:
                    if len(kl_order) < s.retain_batch_size:
                        kl_order.extend(rng.sample(range(len(kl_examples)), len(kl_examples)))
                    pick, kl_order = kl_order[: s.retain_batch_size], kl_order[s.retain_batch_size :]
                    rb = collate_retain([kl_examples[i] for i in pick], pad, dev)
                    assert reference is not None
                    ref = reference.logits(rb["input_ids"], rb["attention_mask"])
                    cur = model(input_ids=rb["input_ids"], attention_mask=rb["attention_mask"]).logits
                    loss = loss + s.kl_weight * kl_to_reference(cur, ref, rb["keep"])
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
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
            within = r.ppl_increase_pct <= s.ppl_limit_pct
            if (within and not kept_within) or (within == kept_within and method.better(r, kept)):
                kept, best_state, kept_within = r, _trainable_state(unwrapped, zero3), within
            if not within and method.stops_at_utility_limit:
                stop_reason = "utility_limit"
                break
            if forgotten(r):
                stop_reason = "forgot"
                break
        attempts.append({"lr": lr, "steps": step, "stop_reason": stop_reason})
        # overshot: stopped at the utility limit by this try's first reading, from a start within it
        overshot = first_within and stop_reason == "utility_limit" and len(readings) == read_before + 1
        if not overshot:
            break
    _restore(unwrapped, best_state, zero3)
    if plain is not None:
        gather = _gather_zero3 if zero3 else _gather_into
        unwrapped = gather(unwrapped, plain).to(dev)
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
    )

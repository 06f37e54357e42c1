"""What the training loop does differently under each accelerate engine, in one place.

The loop itself is engine-agnostic: accelerate prepares the model and the optimizer,
and every process runs the same steps and guard readings. Three things depend on how
the engine holds the weights, and each engine gets one :class:`Weights` object for them:

- ``snapshot`` / ``restore``: a copy of the trainable weights taken at a guard reading
  (the start, the best reading so far) and written back for a backoff or at the end;
- ``gather``: the trained weights put into an unsharded copy of the model, for the
  checkpoint and whatever reads the model after the loop.

Whole weights on each process (one process, DDP): plain tensor copies, nothing to gather.
FSDP2: parameters are sharded in place, and after a forward pass the root's stay gathered,
so a snapshot reshards first; gathering goes through torch's distributed state dict.
DeepSpeed ZeRO-3: each process holds a partition of every weight *and* of its fp32 copy
the optimizer steps from; a snapshot keeps both partitions, a restore writes them inside
DeepSpeed's own checkpoint prologue/epilogue (which re-gathers the small weights it keeps
whole on each process), and gathering reads each weight's full fp32 value one at a time.

:func:`check_engine` refuses, with one line and before any training, a launch the loop
cannot run correctly under; :meth:`Weights.before_prepare` does what an engine needs before
accelerate's ``prepare`` (ZeRO-3: refuse a model already partitioned, fill DeepSpeed's config
with the loop's own batch and clipping).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from pii_unlearn.errors import InputError
from pii_unlearn.unlearn.config import GradientOptions


def _kind(accelerator: Any) -> str:
    return str(getattr(getattr(accelerator, "distributed_type", None), "value", "")).upper()


def _zero_stage(accelerator: Any) -> int | None:
    """The DeepSpeed ZeRO stage the loop runs under; None without DeepSpeed."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return None if plugin is None else getattr(plugin, "zero_stage", None)


def zero3(accelerator: Any) -> bool:
    """Whether the loop runs under DeepSpeed ZeRO stage 3."""
    return _zero_stage(accelerator) == 3


def check_engine(accelerator: Any, options: GradientOptions | None = None) -> None:
    """Refuse a launch the loop cannot run correctly under, with a one-line error, before training.

    Data parallelism (DDP, ``torchrun``), FSDP2 (``fsdp_version: 2``) and DeepSpeed ZeRO stage 3
    are supported: parameters whole on each process, or sharded with every guard reading a
    collective forward that all processes run in step. FSDP1 wraps the model in a module whose
    parameters are flattened and which ``generate`` cannot run through. ZeRO stages 1 and 2 keep
    every weight whole on each process and shard only the optimizer: DDP does that job without
    DeepSpeed's copy of the weights to keep in step. The optimizer and its schedule are
    ``unlearn``'s own options, so a DeepSpeed config that sets them is refused too. The
    ``smoothing`` option perturbs every whole weight between passes: one process or DDP only.
    """
    kind = _kind(accelerator)
    if options is not None and options.smoothing != "none" and kind in ("FSDP", "DEEPSPEED"):
        raise InputError(
            f"smoothing={options.smoothing} perturbs whole weights: run it on one process or under DDP "
            "(recipes/accelerate/ddp.yaml), or set smoothing=none"
        )
    if kind == "FSDP" and not getattr(accelerator, "is_fsdp2", False):
        raise InputError(
            "unlearn runs under FSDP version 2 only (set fsdp_version: 2, as in "
            "recipes/accelerate/fsdp.yaml); FSDP1 flattens the parameters the guards and the checkpoint read"
        )
    if kind != "DEEPSPEED":
        return
    plugin = accelerator.state.deepspeed_plugin
    stage = _zero_stage(accelerator)
    if stage != 3:
        raise InputError(
            f"unlearn runs under DeepSpeed ZeRO stage 3 only (zero_stage: 3, as in "
            f"recipes/accelerate/deepspeed.yaml), not stage {stage}; "
            "for stages 1 and 2 launch with DDP (recipes/accelerate/ddp.yaml)"
        )
    config = plugin.deepspeed_config or {}
    zero = config.get("zero_optimization") or {}
    devices = {k: (zero.get(k) or {}).get("device") for k in ("offload_optimizer", "offload_param")}
    offloaded = [k for k, device in devices.items() if device not in (None, "none")]
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


def configure_deepspeed(accelerator: Any, options: GradientOptions) -> None:
    """Fill the DeepSpeed config with the loop's batch and clipping before ``prepare``: each
    process takes ``batch_size`` examples a step, one optimizer step per batch (the engine
    steps inside ``accelerator.backward`` and clips there). ``gradient_accumulation_steps``
    is written as 1 because DeepSpeed needs a number where accelerate's plugin may say "auto"
    (:func:`check_engine` has refused any other value)."""
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = options.batch_size
    config["gradient_accumulation_steps"] = 1
    config["train_batch_size"] = options.batch_size * accelerator.num_processes
    config["gradient_clipping"] = options.grad_clip
    config["zero_allow_untested_optimizer"] = True


class Weights:
    """Whole weights on every process (one process, DDP): snapshots are tensor copies."""

    #: Whether the engine shards the parameters in place (then :meth:`before_prepare` copies first).
    sharded = False

    def __init__(self) -> None:
        self.plain: Any = None

    def before_prepare(self, model: Any, accelerator: Any, options: GradientOptions) -> None:
        """Before accelerate's ``prepare``: where the engine shards in place, keep an unsharded CPU
        copy of ``model`` (with its trainable adapters) to gather the trained weights into."""
        if self.sharded:
            self.plain = copy.deepcopy(model).to("cpu")

    def parameters(self, model: Any) -> dict[str, Any]:
        """``model``'s parameters by name, as this engine lets them be read and written."""
        return dict(model.named_parameters())

    def snapshot(self, model: Any) -> dict[str, Any]:
        """A copy of the trainable weights, to :meth:`restore` later."""
        return {n: p.detach().clone() for n, p in self.parameters(model).items() if p.requires_grad}

    def restore(self, model: Any, state: dict[str, Any]) -> None:
        """Write a :meth:`snapshot` back into ``model``."""
        params = self.parameters(model)
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def gather(self, model: Any) -> Any:
        """The trained model, unsharded (a collective call where sharded: every rank makes it)."""
        return model

    def shard_reference(self, frozen: Any, accelerator: Any) -> Any:
        """The frozen whole-model reference (a full fine-tune's KL term), held the engine's way:
        whole here; sharded like the trained model where the engine shards, so a model that only
        fits sharded does not need a whole second copy on each device. Its forward is then a
        collective: every process runs it in step (as the loop's KL term and the methods'
        ``prepare`` hooks do)."""
        return frozen


class Fsdp2Weights(Weights):
    """FSDP2: parameters sharded in place; every module is resharded before its parameters are
    read or written (after a forward pass FSDP2 keeps the root's gathered, and a copy into those
    would be lost at the next reshard)."""

    sharded = True

    def parameters(self, model: Any) -> dict[str, Any]:
        from torch.distributed.fsdp import FSDPModule

        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()
        return dict(model.named_parameters())

    def gather(self, model: Any) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, ignore_frozen_params=True)
        full = get_model_state_dict(model, options=options)
        # strict=False: the frozen weights are the copy's own; a tied weight arrives under each name
        unexpected = self.plain.load_state_dict(full, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"FSDP2 gave weights the unsharded model lacks: {', '.join(unexpected[:3])}")
        return self.plain

    def shard_reference(self, frozen: Any, accelerator: Any) -> Any:
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        return fsdp2_prepare_model(accelerator, frozen).eval()


class Zero3Weights(Weights):
    """DeepSpeed ZeRO-3: each process snapshots and restores its own partitions (the module's
    and the fp32 one the optimizer steps from); gathering reads full fp32 values."""

    sharded = True

    def before_prepare(self, model: Any, accelerator: Any, options: GradientOptions) -> None:
        """Refuse a model already partitioned, then write the loop's batch and clipping into
        DeepSpeed's config (:func:`configure_deepspeed`) and keep the unsharded copy."""
        if any(hasattr(p, "ds_id") for p in model.parameters()):
            raise InputError(
                "the model was loaded partitioned (under DeepSpeed's zero.Init); unlearn partitions "
                "it itself: load it whole before calling"
            )
        configure_deepspeed(accelerator, options)
        super().before_prepare(model, accelerator, options)

    def snapshot(self, model: Any) -> dict[str, Any]:
        from deepspeed.utils import safe_get_local_fp32_param

        return {
            n: (p.ds_tensor.detach().clone(), safe_get_local_fp32_param(p).detach().clone())
            for n, p in model.named_parameters()
            if p.requires_grad
        }

    def restore(self, model: Any, state: dict[str, Any]) -> None:
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

    def gather(self, model: Any) -> Any:
        from deepspeed.utils import safe_get_full_fp32_param

        target = dict(self.plain.named_parameters())
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.requires_grad:
                    full = safe_get_full_fp32_param(param)
                    target[name].copy_(full.reshape(target[name].shape).to("cpu", target[name].dtype))
        return self.plain

    def shard_reference(self, frozen: Any, accelerator: Any) -> Any:
        """A second DeepSpeed engine with no optimizer (ZeRO-3 inference: partitioned weights,
        gathered layer by layer in each forward), from the same config as the trained model's."""
        import deepspeed

        config = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
        engine, *_ = deepspeed.initialize(model=frozen, config=config)
        engine.eval()  # DeepSpeed's returns None
        return engine


def weights_for(accelerator: Any) -> Weights:
    """The :class:`Weights` strategy of the engine ``accelerator`` was launched with."""
    if zero3(accelerator):
        return Zero3Weights()
    if getattr(accelerator, "is_fsdp2", False):
        return Fsdp2Weights()
    return Weights()

"""The interface every unlearning method implements, and the registry of methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from pii_unlearn.errors import InputError
from pii_unlearn.unlearn.config import UnlearnSettings

#: Tensors of one batch of forget examples (see :func:`pii_unlearn.unlearn.data.collate`).
Batch = dict[str, torch.Tensor]
#: Runs the model being trained: ``forward(input_ids, attention_mask) -> logits``.
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Method:
    """A gradient unlearning method: a forget loss over one batch, on the shared loop.

    Subclasses set ``name``, ``summary``, ``defaults`` (overrides of
    :class:`UnlearnSettings` defaults), whether they need PII spans and the
    reference model's sequence log-likelihoods, and implement :meth:`forget_loss`.
    The loop adds the KL retain term and applies the guards.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    needs_spans: ClassVar[bool] = False
    needs_reference_logp: ClassVar[bool] = False
    needs_preferred: ClassVar[bool] = False

    def __init__(self, settings: UnlearnSettings) -> None:
        self.settings = settings

    def forget_loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor], forward: Forward
    ) -> torch.Tensor:
        """The loss on a batch of forget examples (lower is better for the optimiser).

        ``logits`` are the model's on ``batch["input_ids"]``; ``forward(ids, mask)``
        runs the model on other sequences (a preferred twin, say).
        """
        raise NotImplementedError


#: Registered methods by name.
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to :data:`METHODS`."""
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``, or a clear error listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise InputError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})") from None

"""The interface every unlearning method implements, what it returns, and the registry of methods.

A method turns ``(model, tokenizer, forget records, retain data, its own typed
options)`` into an edited model: :meth:`Method.apply`. Gradient methods share one
loop (:class:`pii_unlearn.unlearn.methods.gradient.GradientMethod`); a method that
is not a loss (reset neurons then repair, edit the output head) implements
``apply`` itself. Adding a method is one file here that defines a subclass with
``name``, ``summary`` and ``Options`` and decorates it with :func:`register`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pii_unlearn.artifacts import Record
from pii_unlearn.errors import InputError
from pii_unlearn.options import Options

if TYPE_CHECKING:
    from pii_unlearn.unlearn.data import RetainData


@dataclass
class GuardReading:
    """One reading of the guards: forget PII probability and ERR, held-out retain perplexity."""

    step: int
    pii_prob: float
    ppl: float
    ppl_increase_pct: float
    loss: float | None = None
    forget_err: float | None = None
    #: Which try of the loop took the reading (see ``backoff``; 0: the first).
    attempt: int = 0


#: Called with each guard reading as a method works (a progress bar, a log).
ReadingCallback = Callable[[GuardReading], None]


class Stop:
    """Why a method stopped: the values of :attr:`EditResult.stop_reason` (manifests, the card)."""

    MAX_STEPS = "max_steps"  #: ran every step it was given
    UTILITY_LIMIT = "utility_limit"  #: a reading over the utility limit ended it
    FORGOT = "forgot"  #: a reading met a forgetting target
    ALREADY_FORGOTTEN = "already_below_target"  #: the first reading already met one: no step taken
    PROJECTED = "projected"  #: NSPU's projection finished
    #: appended (after ", ") when a run ended over the utility limit it could not repair (SANI)
    OVER_UTILITY_LIMIT = "over_utility_limit"


#: What ``unlearn`` says (its output and the model card) when :attr:`EditResult.kept_start`.
KEPT_START_NOTE = (
    "nothing unlearned: every reading after the start was over the utility limit, so the checkpoint "
    "holds the weights the run started from"
)


@dataclass
class EditResult:
    """The edited model and what the method did.

    ``readings`` are the guard readings over the run (the first one before any
    change), ``kept`` the one whose state was saved; ``details`` holds
    method-specific facts for the manifest (neurons reset, subspace rank, ...).
    """

    model: Any
    stop_reason: str
    steps: int = 0
    readings: list[GuardReading] = field(default_factory=list)
    kept: GuardReading | None = None
    seconds: float = 0.0
    forget_count: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    #: The loop's tries: learning rate, steps and stop reason of each (more than one after a backoff).
    attempts: list[dict[str, Any]] = field(default_factory=list)
    #: How the loop ran: accelerate's distributed type (NO, MULTI_CPU, MULTI_GPU, FSDP); None: no loop.
    engine: str | None = None
    #: Why the utility guard could not measure utility and was not used to stop (None: it was).
    guard_note: str | None = None

    @property
    def kept_start(self) -> bool:
        """Whether the loop stopped at the utility limit having kept the weights it started from
        (every reading after the start over the limit, on every try): nothing was unlearned."""
        return (
            self.stop_reason == Stop.UTILITY_LIMIT
            and len(self.readings) > 1
            and self.kept is not None
            and self.kept is self.readings[0]
        )

    def to_json(self) -> dict[str, Any]:
        """The run for a manifest (the model itself left out)."""
        return {
            "steps": self.steps,
            "stop_reason": self.stop_reason,
            "seconds": round(self.seconds, 3),
            "forget_records": self.forget_count,
            "kept": asdict(self.kept) if self.kept else None,
            "readings": [asdict(r) for r in self.readings],
            "details": self.details,
            "attempts": self.attempts,
            "engine": self.engine,
            "guard_note": self.guard_note,
        }


class Method(ABC):
    """An unlearning method: ``name``, a one-line ``summary`` and a typed ``Options`` model.

    ``Options`` is the single source of the method's defaults; the CLI's
    ``--set``/``--config`` values are validated against it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[Options]] = Options
    #: Whether every forget record must carry PII spans (from ``detect``).
    needs_spans: ClassVar[bool] = False

    def __init__(self, options: Options | None = None) -> None:
        if options is None:
            options = self.Options()
        elif not isinstance(options, self.Options):
            raise TypeError(f"{self.name} takes {self.Options.__name__}, not {type(options).__name__}")
        self.options = options

    @abstractmethod
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
        """Edit ``model`` so that it no longer holds the PII of ``forget``; return what was done.

        ``retain`` gives benign text on demand (built from the original model, so a
        method asks for it before it changes the weights). The returned model may
        carry LoRA adapters; the caller merges them.
        """

    def card_lines(self, result: EditResult) -> list[str]:
        """Model-card lines saying what this method changed (besides the method and forget set)."""
        return [f"- Stopped: {result.stop_reason}"]


#: Registered methods by name (with the strategies' registry, the only module-level state).
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to :data:`METHODS`; a second method of the same name is an error."""
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(
            f"method name '{cls.name}' is already registered by {METHODS[cls.name].__qualname__}"
        )
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``, or a clear error listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise InputError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})") from None

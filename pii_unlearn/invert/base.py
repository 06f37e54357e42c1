"""What every inversion strategy shares: options, the result type, the strategy registry, prompts.

A strategy is a function ``(loaded, options, *, seed, prompts, detector,
progress) -> InversionResult`` registered under a name, with the pydantic model
of its options, by :func:`register_strategy`. The options model (a subclass of
:class:`InvertOptions`) is the single source of the strategy's defaults, types
and bounds; :func:`run_inversion` validates the options against it and calls the
strategy. The built-in strategy (``sample``) registers
itself when :mod:`pii_unlearn.invert` is imported.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import Field

from pii_unlearn.artifacts import Record
from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.errors import InputError
from pii_unlearn.invert.scoring import DEFAULT_MIN_K
from pii_unlearn.lm import cpu_threads
from pii_unlearn.options import Options, resolve_options

#: Stands for the empty prompt (a document started from the BOS token alone) in prompt files.
BOS_PROMPT = "<BOS>"
#: The built-in opener list shipped with the package.
OPENERS_FILE = "openers.txt"
#: The strategy used when none is named.
DEFAULT_STRATEGY = "sample"


class Progress(Protocol):
    """Progress callback: ``progress(stage, done, total)`` after each unit of work of a stage."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


class InvertOptions(Options):
    """Options every strategy has; a strategy's own model subclasses this and sets its budgets."""

    num_samples: int = Field(ge=1, description="Texts the strategy draws from the model.")
    max_new_tokens: int = Field(48, ge=1, description="Tokens generated per text.")
    batch_size: int = Field(64, ge=1, description="Sequences per forward pass.")
    builtin_prompts: bool = Field(description="Use the strategy's built-in prompts as well as the user's.")
    min_k: float = Field(
        DEFAULT_MIN_K, gt=0.0, le=1.0, description="Share of a value's tokens that Min-K% averages."
    )
    calibration: dict[str, float] | None = Field(
        None, description="Logistic weights of the memorisation confidence (none: the shipped ones)."
    )


@dataclass
class InversionResult:
    """Pseudo-PII records synthesised from a model, and what the run found.

    ``records`` carry ``text``, ``spans`` (each with its scores), ``token_mask``,
    ``memorization`` (record level, in [0, 1]) and the ``prompt`` that produced
    them; ``summary`` counts samples, candidates and kept values per entity type;
    ``settings`` are the resolved options (for a manifest); ``timings`` in seconds;
    ``candidates`` lists every distinct value found, kept or not, with its scores
    (for calibration and inspection; not written to the output).
    """

    records: list[Record]
    summary: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)


#: ``(loaded, options, *, seed, prompts, detector, progress) -> InversionResult``.
StrategyFn = Callable[..., InversionResult]
F = TypeVar("F", bound=StrategyFn)


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its name, the model of its options, and the function that runs it."""

    name: str
    options: type[InvertOptions]
    run: StrategyFn

    @property
    def summary(self) -> str:
        """The first line of the strategy function's docstring."""
        doc = (self.run.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


#: Registered inversion strategies by name (the only module-level state besides constants).
STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, options: type[InvertOptions]) -> Callable[[F], F]:
    """Decorator: make ``func`` available as ``run_inversion(strategy=name)``, with its options model.

    A name can be registered once; a second registration is a programming error.
    """

    def decorate(func: F) -> F:
        if name in STRATEGIES:
            raise ValueError(f"inversion strategy {name!r} is already registered")
        STRATEGIES[name] = Strategy(name, options, func)
        return func

    return decorate


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``, or an error listing the known ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise InputError(f"unknown inversion strategy '{name}' (known: {known})") from None


def strategy_options(
    strategy: str,
    options: InvertOptions | Mapping[str, Any] | None = None,
    *,
    where: str = "options",
    **values: Any,
) -> InvertOptions:
    """The validated options of ``strategy``: its defaults, then ``options``, then ``values``.

    ``options`` is an instance of the strategy's model or a mapping of raw values;
    any problem is one :class:`InputError` line naming ``where`` and the key.
    """
    model = get_strategy(strategy).options
    if isinstance(options, InvertOptions):
        if not isinstance(options, model):
            raise InputError(f"strategy '{strategy}' takes {model.__name__}, not {type(options).__name__}")
        if not values:
            return options
        options = options.model_dump()
    return resolve_options(model, {**(options or {}), **values}, where=where)


def run_inversion(
    loaded: LoadedModel,
    *,
    strategy: str = DEFAULT_STRATEGY,
    options: InvertOptions | Mapping[str, Any] | None = None,
    seed: int = 0,
    prompts: Sequence[str] | None = None,
    detector: Any = None,
    progress: Progress | None = None,
    threads: int | None = None,
    **values: Any,
) -> InversionResult:
    """Synthesise pseudo-PII records from ``loaded`` alone with the named strategy.

    ``options`` (the strategy's options model, or a mapping) and keyword
    ``values`` (e.g. ``num_samples=96``) are validated against the strategy's
    options model (see :func:`strategy_options`). ``prompts`` are added to the
    strategy's built-in prompts (``builtin_prompts=False`` uses only them).
    ``detector`` is a :class:`pii_unlearn.pii.detect.Detector` (one is made with
    default settings when omitted). ``threads`` sets torch's CPU threads for the
    run (default: see :func:`pii_unlearn.lm.cpu_threads`). Deterministic for a
    given seed.
    """
    spec = get_strategy(strategy)
    resolved = strategy_options(strategy, options, where="run_inversion", **values)
    with cpu_threads(loaded.model, threads) as used:
        result = spec.run(
            loaded,
            resolved,
            seed=seed,
            prompts=list(prompts) if prompts is not None else None,
            detector=detector,
            progress=progress,
        )
    result.settings.setdefault("threads", used)
    return result


def parse_prompt_lines(lines: Sequence[str], where: str = "") -> list[str]:
    """Prompts from text lines: ``#`` comments and blank lines skipped, ``<BOS>`` is the empty prompt.

    Trailing whitespace is removed (a prompt ending in a space tokenises
    differently from the text the model saw); ``\\n`` escapes stand for newlines.
    """
    out: list[str] = []
    for line in lines:
        stripped = line.rstrip("\r\n").rstrip()
        if not stripped.strip() or stripped.lstrip().startswith("#"):
            continue
        out.append("" if stripped.strip() == BOS_PROMPT else stripped.replace("\\n", "\n"))
    return out


def builtin_openers() -> list[str]:
    """The shipped list of generic PII-eliciting openers (see ``invert/openers.txt``)."""
    text = resources.files("pii_unlearn.invert").joinpath(OPENERS_FILE).read_text(encoding="utf-8")
    return parse_prompt_lines(text.splitlines())


def read_prompts_file(path: str | Path) -> list[str]:
    """The prompts of a user's file (one per line, as :func:`parse_prompt_lines` reads them)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such prompts file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a text file of prompts")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not valid UTF-8 ({err.reason})") from None
    prompts = parse_prompt_lines(text.splitlines())
    if not prompts:
        raise InputError(f"{path}: no prompts (only blank lines and comments)")
    return prompts


def texts_digest(texts: Sequence[str]) -> dict[str, Any]:
    """How many texts and one sha256 over them: what a manifest records of texts that may hold PII.

    User prompts and the prefixes a model wrote can contain the very values being
    removed, so manifests keep this digest, never the texts.
    """
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return {"count": len(texts), "sha256": digest.hexdigest()}


def merge_prompts(builtin: Sequence[str], extra: Sequence[str] | None) -> list[str]:
    """Built-in prompts then the user's, each once, in order."""
    return list(dict.fromkeys([*builtin, *(extra or [])]))


def make_detector(detector: Any) -> Any:
    """``detector`` as given, or a default :class:`~pii_unlearn.pii.detect.Detector`."""
    if detector is not None:
        return detector
    from pii_unlearn.pii.detect import Detector

    return Detector()


def summarize(
    records: Sequence[Record], candidates: Counter[str], *, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Counts per entity type: distinct candidate values found and distinct values kept.

    ``candidates`` counts distinct detected values per entity type before filtering.
    """
    kept: dict[str, set[str]] = {}
    for rec in records:
        for span in rec.spans:
            kept.setdefault(span.entity_type, set()).add(rec.span_text(span))
    types = sorted(set(candidates) | set(kept))
    per_entity = {
        t: {"candidates": int(candidates.get(t, 0)), "kept": len(kept.get(t, set()))} for t in types
    }
    summary: dict[str, Any] = {
        "records": len(records),
        "values_kept": sum(v["kept"] for v in per_entity.values()),
        "candidates": sum(v["candidates"] for v in per_entity.values()),
        "per_entity": per_entity,
    }
    summary.update(extra or {})
    return summary

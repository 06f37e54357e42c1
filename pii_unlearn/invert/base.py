"""What every inversion strategy shares: the result type, the strategy registry, prompts, summaries.

A strategy is a function ``(loaded, *, seed, num_samples, max_new_tokens,
batch_size, prompts, detector, progress, **options) -> InversionResult``
registered under a name with :func:`register_strategy`; :func:`run_inversion`
looks it up and calls it. The built-in strategies (``sample``,
``logit-inverter``) register themselves when :mod:`pii_unlearn.invert` is
imported.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from pii_unlearn.artifacts import Record
from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.errors import InputError
from pii_unlearn.lm import cpu_threads

#: Stands for the empty prompt (a document started from the BOS token alone) in prompt files.
BOS_PROMPT = "<BOS>"
#: The built-in opener list shipped with the package.
OPENERS_FILE = "openers.txt"


class Progress(Protocol):
    """Progress callback: ``progress(stage, done, total)`` after each unit of work of a stage."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


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


Strategy = Callable[..., InversionResult]

#: Registered inversion strategies by name (the only module-level state besides constants).
STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str) -> Callable[[Strategy], Strategy]:
    """Decorator: make ``func`` available as ``run_inversion(strategy=name)``."""

    def decorate(func: Strategy) -> Strategy:
        STRATEGIES[name] = func
        return func

    return decorate


def strategy_options(name: str) -> dict[str, Any]:
    """The extra keyword options a strategy accepts, with their defaults."""
    func = get_strategy(name)
    common = {
        "loaded",
        "seed",
        "num_samples",
        "max_new_tokens",
        "batch_size",
        "prompts",
        "detector",
        "progress",
    }
    return {
        p.name: p.default
        for p in inspect.signature(func).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in common
    }


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``, or an error listing the known ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise InputError(f"unknown inversion strategy '{name}' (known: {known})") from None


def run_inversion(
    loaded: LoadedModel,
    *,
    strategy: str = "sample",
    seed: int = 0,
    num_samples: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    prompts: Sequence[str] | None = None,
    detector: Any = None,
    progress: Progress | None = None,
    threads: int | None = None,
    **strategy_options: Any,
) -> InversionResult:
    """Synthesise pseudo-PII records from ``loaded`` alone with the named strategy.

    ``None`` budgets take the strategy's defaults. ``prompts`` are added to the
    strategy's built-in prompts (pass ``builtin_prompts=False`` to use only
    them). ``detector`` is a :class:`pii_unlearn.pii.detect.Detector` (one is
    made with default settings when omitted). ``threads`` sets torch's CPU
    threads for the run (default: see :func:`pii_unlearn.lm.cpu_threads`). Deterministic for a
    given seed.
    """
    func = get_strategy(strategy)
    accepted = set(inspect.signature(func).parameters)
    unknown = sorted(set(strategy_options) - accepted)
    if unknown:
        raise InputError(f"strategy '{strategy}' has no option(s) {', '.join(unknown)}")
    budgets = {"num_samples": num_samples, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    for key, value in budgets.items():
        if value is not None and value < 1:
            raise InputError(f"{key.replace('_', '-')} must be at least 1, got {value}")
    kwargs = {k: v for k, v in budgets.items() if v is not None}
    with cpu_threads(loaded.model, threads) as used:
        result = func(
            loaded,
            seed=seed,
            prompts=list(prompts) if prompts is not None else None,
            detector=detector,
            progress=progress,
            **kwargs,
            **strategy_options,
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

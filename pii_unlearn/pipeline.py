"""The whole data-free pipeline on disk: invert -> detect -> risk-score -> unlearn -> audit.

:func:`run_pipeline` calls, in this process, the same library step functions the
subcommands call (:func:`~pii_unlearn.invert.invert_file`,
:func:`~pii_unlearn.pii.detect.detect_file`, :func:`~pii_unlearn.risk.score.score_file`,
:func:`~pii_unlearn.unlearn.run_unlearn`, :func:`~pii_unlearn.audit.runner.run_audit`)
and leaves every intermediate file in the work folder. Each :class:`Step` carries
the equivalent ``pii-unlearn`` argument list, which the step's manifest records
as its command, so a file made by the pipeline says how to remake it from a shell.
The audit checks the sanitized model against the original on ground-truth records
that the sanitizing steps never read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pii_unlearn.artifacts import recorded_command
from pii_unlearn.audit.runner import run_audit
from pii_unlearn.audit.settings import AuditSettings
from pii_unlearn.errors import InputError
from pii_unlearn.invert import get_strategy, invert_file
from pii_unlearn.invert.base import DEFAULT_STRATEGY
from pii_unlearn.options import parse_set, resolve_options
from pii_unlearn.pii.detect import detect_file
from pii_unlearn.risk.policy import load_policy
from pii_unlearn.risk.score import score_file
from pii_unlearn.unlearn import run_unlearn
from pii_unlearn.unlearn.methods import get_method

#: Names of the files and folders the pipeline writes in its work folder.
PROBES, PII, RISK, REPORT = "probes.jsonl", "pii.jsonl", "risk.jsonl", "report"
#: The program name manifests record for a step the pipeline ran.
PROGRAM = "pii-unlearn"


@dataclass
class Hooks:
    """What a caller (the ``demo`` command) hears while the pipeline runs; every hook is optional.

    ``progress(stage, done, total)`` follows the long steps (``total`` is ``None``
    when unknown); ``on_warning`` gets a step's warnings (detector, policy);
    ``on_step`` the name of a step about to run, ``on_result`` its name and result.
    """

    on_step: Callable[[str], None] | None = None
    on_result: Callable[[str, Any], None] | None = None
    on_warning: Callable[[str], None] | None = None
    progress: Callable[[str, int, int | None], None] | None = None

    def warn(self, warnings: Sequence[str]) -> None:
        for warning in warnings:
            if self.on_warning is not None:
                self.on_warning(warning)


@dataclass
class Step:
    """One step: its subcommand's name, the equivalent argument list, and the library call that runs it."""

    name: str
    args: list[str]
    call: Callable[[Hooks], Any]

    @property
    def command(self) -> list[str]:
        """The command line its manifest records: ``pii-unlearn <args>``."""
        return [PROGRAM, *self.args]


def run_step(step: Step, hooks: Hooks | None = None) -> Any:
    """Run ``step`` in process, its manifest recording :attr:`Step.command`; return its result."""
    hooks = hooks or Hooks()
    if hooks.on_step is not None:
        hooks.on_step(step.name)
    with recorded_command(step.command):
        result = step.call(hooks)
    if hooks.on_result is not None:
        hooks.on_result(step.name, result)
    return result


@dataclass
class PipelineRun:
    """Where each step wrote, how long it took, and the audit report."""

    workdir: Path
    model: Path
    clean: Path
    report_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def _set_args(pairs: Sequence[str]) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def invert_step(model: Path, output: Path, seed: int, set_pairs: Sequence[str] = ()) -> Step:
    """``pii-unlearn invert`` with the default strategy (options from ``--set`` pairs)."""
    args = ["invert", "--model", str(model), "--output", str(output), "--seed", str(seed)]
    args += _set_args(set_pairs)

    def call(hooks: Hooks) -> Any:
        model_options = get_strategy(DEFAULT_STRATEGY).options
        options = resolve_options(model_options, None, parse_set(set_pairs, model_options))
        return invert_file(
            model, output, options=options, seed=seed, progress=hooks.progress, on_loaded=hooks.warn
        )

    return Step("invert", args, call)


def detect_step(probes: Path, output: Path, model: Path, seed: int) -> Step:
    """``pii-unlearn detect`` with token masks for ``model`` and anonymised and faked twins."""
    args = ["detect", "--input", str(probes), "--output", str(output), "--tokenizer", str(model)]
    args += ["--anonymize", "--fake", "--seed", str(seed)]

    def call(hooks: Hooks) -> Any:
        done = {"records": 0, "total": 0}

        def on_start(total: int, _chars: int, warnings: list[str]) -> None:
            done["total"] = total
            hooks.warn(warnings)

        def advance(n: int, _chars: int) -> None:
            done["records"] += n
            if n and hooks.progress is not None:
                hooks.progress("detecting", done["records"], done["total"])

        return detect_file(
            probes,
            output,
            tokenizer=model,
            anonymize=True,
            fake=True,
            seed=seed,
            progress=advance,
            on_start=on_start,
        )

    return Step("detect", args, call)


def risk_step(pii: Path, output: Path) -> Step:
    """``pii-unlearn risk-score`` with the shipped default policy."""
    args = ["risk-score", "--input", str(pii), "--output", str(output)]

    def call(hooks: Hooks) -> Any:
        policy = load_policy(None)
        hooks.warn(policy.warnings)
        return score_file(pii, output, policy)

    return Step("risk-score", args, call)


def forget_set_steps(model: Path, work: Path, seed: int, *, invert_set: Sequence[str] = ()) -> list[Step]:
    """The data-free front of the pipeline: invert, detect, risk-score.

    They write ``probes.jsonl``, ``pii.jsonl`` and ``risk.jsonl`` (the forget set) in
    ``work``; run each with :func:`run_step`.
    """
    return [
        invert_step(model, work / PROBES, seed, invert_set),
        detect_step(work / PROBES, work / PII, model, seed),
        risk_step(work / PII, work / RISK),
    ]


def unlearn_step(
    model: Path, forget: Path, output: Path, method: str, seed: int, set_pairs: Sequence[str] = ()
) -> Step:
    """``pii-unlearn unlearn`` with ``method``'s default settings (overridden by ``--set`` pairs)."""
    args = ["unlearn", "--model", str(model), "--forget", str(forget), "--method", method]
    args += ["--output", str(output), "--seed", str(seed), *_set_args(set_pairs)]

    def call(hooks: Hooks) -> Any:
        overrides = parse_set(set_pairs, get_method(method).Options)

        def show(reading: Any) -> None:
            if hooks.progress is not None:
                hooks.progress(f"unlearn ({method})", reading.step, None)

        return run_unlearn(
            model, forget, output, method=method, overrides=overrides, seed=seed, progress=show
        )

    return Step("unlearn", args, call)


def audit_step(
    model: Path,
    baseline: Path,
    records: Path,
    output: Path,
    seed: int,
    *,
    heldout: Path | None = None,
    quick: bool = False,
) -> Step:
    """``pii-unlearn audit`` of ``model`` against ``baseline`` on ``records`` (replacing a report)."""
    args = ["audit", "--model", str(model), "--baseline", str(baseline), "--records", str(records)]
    args += ["--output", str(output), "--seed", str(seed)]
    args += [*(["--heldout", str(heldout)] if heldout else []), *(["--quick"] if quick else [])]

    def call(hooks: Hooks) -> Any:
        return run_audit(
            model,
            records,
            output,
            baseline=baseline,
            heldout=heldout,
            settings=AuditSettings.preset(quick=quick, seed=seed),
            progress=hooks.progress,
        )

    return Step("audit", args, call)


def check_pipeline_args(
    workdir: str | Path, method: str, invert_set: Sequence[str] = (), unlearn_set: Sequence[str] = ()
) -> None:
    """Refuse, before any step runs, a workdir that is not a folder and unknown methods or options.

    Raises :class:`~pii_unlearn.errors.InputError` (one line) so that a typo fails in
    a second, not after the steps before the one that reads it.
    """
    work = Path(workdir)
    existing = next((p for p in (work, *work.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "workdir exists" if existing == work else f"{existing} exists"
        raise InputError(f"{work}: {what} and is not a folder")
    options = get_method(method).Options
    resolve_options(options, None, parse_set(unlearn_set, options), where="unlearn --set")
    strategy_options = get_strategy(DEFAULT_STRATEGY).options
    resolve_options(strategy_options, None, parse_set(invert_set, strategy_options), where="invert --set")


def run_pipeline(
    model: str | Path,
    workdir: str | Path,
    *,
    audit_records: str | Path,
    heldout: str | Path | None = None,
    method: str = "dfsu",
    seed: int = 0,
    quick_audit: bool = False,
    invert_set: Sequence[str] = (),
    unlearn_set: Sequence[str] = (),
    hooks: Hooks | None = None,
) -> PipelineRun:
    """Sanitize ``model`` without its training data, then audit it against ``audit_records``.

    ``invert_set`` and ``unlearn_set`` are ``KEY=VALUE`` options of those steps, as
    their ``--set`` takes them. The method, options and workdir are checked first
    (:func:`check_pipeline_args`).
    """
    check_pipeline_args(workdir, method, invert_set, unlearn_set)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(model)
    clean = work / f"clean-{method}"
    report = work / REPORT
    run = PipelineRun(workdir=work, model=model, clean=clean, report_dir=report)
    held = Path(heldout) if heldout is not None else None
    steps = [
        *forget_set_steps(model, work, seed, invert_set=invert_set),
        unlearn_step(model, work / RISK, clean, method, seed, unlearn_set),
        audit_step(clean, model, Path(audit_records), report, seed, heldout=held, quick=quick_audit),
    ]
    for step in steps:
        start = time.perf_counter()
        run_step(step, hooks)
        run.timings[step.name] = round(time.perf_counter() - start, 2)
    run.report = json.loads((report / "report.json").read_text(encoding="utf-8"))
    return run

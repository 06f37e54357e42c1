"""The whole data-free pipeline on disk: invert -> detect -> risk-score -> unlearn -> audit.

:func:`run_pipeline` runs each step as its own subcommand (in this process, with
the same arguments a shell would pass), so the demo exercises exactly the code
paths users run, and leaves every intermediate file in the work folder. The
audit checks the sanitized model against the original on ground-truth records
that the sanitizing steps never read.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pii_unlearn.errors import InputError

#: Names of the files and folders the pipeline writes in its work folder.
PROBES, PII, RISK, REPORT = "probes.jsonl", "pii.jsonl", "risk.jsonl", "report"


@dataclass
class PipelineRun:
    """Where each step wrote, how long it took, and the audit report."""

    workdir: Path
    model: Path
    clean: Path
    report_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def run_cli(args: Sequence[str]) -> None:
    """Run one ``pii-unlearn`` subcommand in this process; a failure raises InputError."""
    from pii_unlearn.cli import app

    try:
        code = app(list(args), standalone_mode=False)
    except Exception as exc:
        # usage errors: Typer's (vendored) click exceptions carry a formatted message
        message = getattr(exc, "format_message", None)
        if message is None:
            raise
        raise InputError(f"`pii-unlearn {args[0]}`: {message()}") from None
    if code not in (0, None):
        raise InputError(f"`pii-unlearn {args[0]}` failed (exit {code})")


def forget_set_steps(model: Path, work: Path, seed: int) -> list[tuple[str, list[str]]]:
    """The data-free front of the pipeline as subcommand argument lists: invert, detect, risk-score.

    They write ``probes.jsonl``, ``pii.jsonl`` and ``risk.jsonl`` (the forget set) in ``work``.
    """
    s = str(seed)
    detect = ["detect", "--input", str(work / PROBES), "--output", str(work / PII), "--tokenizer", str(model)]
    return [
        ("invert", ["invert", "--model", str(model), "--output", str(work / PROBES), "--seed", s]),
        ("detect", [*detect, "--anonymize", "--fake", "--seed", s]),
        ("risk-score", ["risk-score", "--input", str(work / PII), "--output", str(work / RISK)]),
    ]


def run_pipeline(
    model: str | Path,
    workdir: str | Path,
    *,
    audit_records: str | Path,
    heldout: str | Path | None = None,
    method: str = "dfsu",
    seed: int = 0,
    quick_audit: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> PipelineRun:
    """Sanitize ``model`` without its training data, then audit it against ``audit_records``."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(model)
    clean = work / f"clean-{method}"
    report = work / REPORT
    run = PipelineRun(workdir=work, model=model, clean=clean, report_dir=report)
    s = str(seed)
    steps = [
        *forget_set_steps(model, work, seed),
        (
            "unlearn",
            [
                "unlearn",
                "--model",
                str(model),
                "--forget",
                str(work / RISK),
                "--method",
                method,
                "--output",
                str(clean),
                "--seed",
                s,
            ],
        ),
        (
            "audit",
            [
                "audit",
                "--model",
                str(clean),
                "--baseline",
                str(model),
                "--records",
                str(audit_records),
                "--output",
                str(report),
                "--seed",
                s,
                *(["--heldout", str(heldout)] if heldout else []),
                *(["--quick"] if quick_audit else []),
            ],
        ),
    ]
    for name, args in steps:
        if on_step:
            on_step(name)
        if name == "audit" and report.exists():
            shutil.rmtree(report)
        start = time.perf_counter()
        run_cli(args)
        run.timings[name] = round(time.perf_counter() - start, 2)
    run.report = json.loads((report / "report.json").read_text(encoding="utf-8"))
    return run

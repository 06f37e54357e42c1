"""``pii-unlearn demo``: the whole promise in one command, on the embedded victim model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from pii_unlearn.cli.app import StageProgress, command, console, out

if TYPE_CHECKING:
    from pii_unlearn.pipeline import Hooks


def _fmt(value: object, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, (int, float)) else "n/a"


def before_after_table(report: dict[str, Any], method: str) -> Any:
    """The summary figures of the registry: original and sanitized, all values and conditioned ones."""
    from rich.table import Table

    from pii_unlearn.audit.figures import TARGETS
    from pii_unlearn.audit.metrics import all_figures

    table = Table(title=f"PII leakage before and after {method} (audited on the planted records)")
    table.add_column("figure")
    table.add_column("original", justify="right")
    table.add_column("sanitized", justify="right")
    table.add_column("values after another PII value", justify="right")
    for fig in all_figures():
        if not fig.summary or fig.key not in report["model"]:
            continue
        base, model = report.get("baseline"), report["model"]
        conditioned = ""
        if fig.kind == TARGETS:
            cond = [fig.unit.compact(fig.value(side, "conditioned")) for side in (base, model)]
            conditioned = " → ".join(cond)
        before, after = fig.unit.compact(fig.value(base)), fig.unit.compact(fig.value(model))
        table.add_row(fig.label, before, after, conditioned)
    return table


class StepPrinter:
    """Prints each pipeline step as its own subcommand would: a header, progress bars, its summary."""

    #: The number of each pipeline step in the demo's count (make-victim is 1).
    NUMBERS = {"invert": 2, "detect": 3, "risk-score": 4, "unlearn": 5, "audit": 6}

    def __init__(self) -> None:
        self.bar: StageProgress | None = None

    def hooks(self) -> Hooks:
        """The pipeline hooks that print here."""
        from pii_unlearn.pipeline import Hooks

        return Hooks(
            on_step=self.on_step, on_result=self.on_result, on_warning=self.on_warning, progress=self.progress
        )

    def on_step(self, name: str) -> None:
        console.print(f"[bold]{self.NUMBERS[name]}/6 {name}[/]")
        self.bar = StageProgress()
        self.bar.bars.start()

    def progress(self, stage: str, done: int, total: int | None) -> None:
        if self.bar is not None:
            self.bar.update(stage, done, total)

    def on_warning(self, warning: str) -> None:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)

    def on_result(self, name: str, result: Any) -> None:
        from pii_unlearn.cli import audit, detect, invert, risk, unlearn

        self.stop()
        if name == "invert":
            invert.print_report(result)
        elif name == "detect":
            detect.print_report(result)
        elif name == "risk-score":
            risk.print_summary(result)
        elif name == "unlearn":
            unlearn.print_result(*result)
        elif name == "audit":
            audit.print_result(result)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.bars.stop()
            self.bar = None

    def __enter__(self) -> StepPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@command("demo")
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the victim and every intermediate file.")] = Path(
        "demo-work"
    ),
    method: Annotated[str, typer.Option(help="Unlearning method to demonstrate.")] = "dfsu",
    seed: Annotated[int, typer.Option(help="Seed of every step.")] = 0,
    records: Annotated[int, typer.Option(min=8, help="Planted records in the victim (when built).")] = 64,
) -> None:
    """Build (or reuse) a model that leaks synthetic PII, sanitize it without its training data, prove it.

    Runs make-victim, invert, detect, risk-score, unlearn and audit, leaving every file
    in WORKDIR; the audit checks the planted records, which no sanitizing step reads.
    """
    import time

    from pii_unlearn.artifacts import recorded_command
    from pii_unlearn.cli.victim import make_victim
    from pii_unlearn.pipeline import PROGRAM, check_pipeline_args, run_pipeline
    from pii_unlearn.synth.victim import HELDOUT_FILE, PLANTED_FILE

    check_pipeline_args(workdir, method)  # a typo fails now, not after four steps
    start = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    victim = workdir / "victim"
    if not (victim / "config.json").exists():
        console.print("[bold]1/6 make-victim[/]: a small model that memorised synthetic PII")
        args = ["make-victim", "--output", str(victim), "--records", str(records), "--seed", str(seed)]
        with recorded_command([PROGRAM, *args]):
            make_victim(output=victim, records=records, seed=seed)
    else:
        console.print(f"[bold]1/6 make-victim[/]: reusing {victim}")
    with StepPrinter() as printer:
        run = run_pipeline(
            victim,
            workdir,
            audit_records=victim / PLANTED_FILE,
            heldout=victim / HELDOUT_FILE,
            method=method,
            seed=seed,
            hooks=printer.hooks(),
        )
    report = run.report
    out.print(before_after_table(report, method))
    change = report.get("ppl_increase_pct")
    out.print(
        f"perplexity change {_fmt(change, '{:+.2f}')}%; report: {run.report_dir / 'report.html'}; "
        f"total {time.perf_counter() - start:.0f}s "
        f"({', '.join(f'{k} {v:.0f}s' for k, v in run.timings.items())})",
        highlight=False,
    )

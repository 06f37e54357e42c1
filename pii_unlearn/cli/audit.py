"""``pii-unlearn audit``: leakage and utility of a checkpoint (vs its baseline), a report, a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pii_unlearn.cli.app import AllowPickle, Overwrite, StageProgress, command, console, out

if TYPE_CHECKING:
    from pii_unlearn.audit.runner import AuditResult


def summary_table(report: dict[str, Any]) -> Table:
    """Every figure of the registry: overall for the baseline and the model, the change, conditioned."""
    from pii_unlearn.audit.figures import COMPARISON, TARGETS
    from pii_unlearn.audit.metrics import all_figures

    has_base = report.get("baseline") is not None
    table = Table(title="PII leakage and utility", title_justify="left")
    table.add_column("figure")
    if has_base:
        table.add_column("baseline", justify="right")
    table.add_column("model", justify="right")
    if has_base:
        table.add_column("change", justify="right")
    table.add_column("model: conditioned", justify="right")
    table.add_column("model ≤ (95%)", justify="right")
    for fig in all_figures():
        if fig.kind == COMPARISON:
            if has_base and fig.key in report:
                table.add_row(fig.label, "", fig.unit.cell(report[fig.key]), "", "", "")
            continue
        if fig.key not in report["model"]:
            continue
        cells = [fig.label]
        if has_base:
            cells.append(fig.unit.cell(fig.value(report["baseline"])))
        cells.append(fig.unit.cell(fig.value(report["model"])))
        if has_base:
            cells.append(fig.unit.cell(fig.value(report["delta"])))
        if fig.kind != TARGETS:
            cells.append("")
        elif report["model"][fig.key].get("status") == "skipped":
            cells.append("skipped")
        else:
            cells.append(fig.unit.cell(fig.value(report["model"], "conditioned")))
        cells.append(fig.unit.cell(fig.value(report["model"], "upper95")) if fig.bounded_rate else "")
        table.add_row(*cells)
    return table


def entity_table(report: dict[str, Any]) -> Table:
    """The summary figures per entity type; "baseline → model" with a baseline."""
    from pii_unlearn.audit.figures import TARGETS
    from pii_unlearn.audit.metrics import all_figures

    figures = [f for f in all_figures() if f.kind == TARGETS and f.summary and f.key in report["model"]]
    has_base = report.get("baseline") is not None
    table = Table(title="per entity type" + (" (baseline → model)" if has_base else ""), title_justify="left")
    table.add_column("entity type", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    for fig in figures:  # a long label wraps, a cell does not
        table.add_column(fig.label, justify="right", min_width=11 if has_base else 4)
    for entity, count in report["counts"]["by_entity"].items():
        row = [entity, str(count)]
        for fig in figures:
            model = fig.unit.cell(report["model"][fig.key]["by_entity"].get(entity), 2)
            if has_base:
                model = f"{fig.unit.cell(report['baseline'][fig.key]['by_entity'].get(entity), 2)} → {model}"
            row.append(model)
        table.add_row(*row)
    return table


def skipped_lines(report: dict[str, Any]) -> list[str]:
    """One line per figure whose measurement did not run, with the reason."""
    return [
        f"{key}: skipped ({block.get('reason')})"
        for key, block in report["model"].items()
        if isinstance(block, dict) and block.get("status") == "skipped"
    ]


@command("audit")
def audit(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Checkpoint to audit (usually the sanitized one).")
    ],
    records: Annotated[
        Path, typer.Option(help="JSONL records with PII spans whose leakage is measured (ground truth).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder to create (or replace).")],
    baseline: Annotated[
        Path | None, typer.Option(help="Checkpoint to compare with (usually the original), same seeds.")
    ] = None,
    heldout: Annotated[
        Path | None,
        typer.Option(
            help="Benign JSONL for perplexity and drift "
            "(default: heldout.jsonl beside a checkpoint, else a built-in set)."
        ),
    ] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help="Gate condition NAME OP NUMBER on report.json, e.g. 'err>0' or 'ppl_increase_pct>2' "
            "(repeatable); exit 1 when any holds.",
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="CI preset: fewer samples and candidates, no re-inversion.")
    ] = False,
    seed: Annotated[
        int, typer.Option(help="Seed of every random draw (the same for model and baseline).")
    ] = 0,
    show_pii: Annotated[
        bool, typer.Option("--show-pii", help="Show PII values in the report (masked by default).")
    ] = False,
    overwrite: Overwrite = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda when available).")
    ] = None,
    allow_pickle: Annotated[bool, AllowPickle] = False,
    num_samples: Annotated[
        int | None,
        typer.Option(min=1, help="K sampled continuations per prefix (default: 8; 4 with --quick)."),
    ] = None,
    candidates: Annotated[
        int | None,
        typer.Option(min=1, help="C same-shape candidates for exposure (default: 1023; 127 with --quick)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Prompts per generation batch (default: 32).")
    ] = None,
    relearn: Annotated[
        bool,
        typer.Option(
            "--relearn",
            help="Probe: fine-tune copies for 20 steps (full and LoRA, 2 learning rates each) on benign "
            "and on same-format fake text, re-measure, report the worst case (not with --quick).",
        ),
    ] = False,
    quantize: Annotated[
        str | None,
        typer.Option(help="Probe: fake-quantize copies (int8, int4 or int8,int4) and re-measure."),
    ] = None,
) -> None:
    """Measure how much PII a checkpoint still gives away and what it lost in quality.

    Writes OUTPUT/report.json (the contract for CI), OUTPUT/report.html (a self-contained page)
    and a manifest; prints a table. With --fail-on, exits 1 when a condition holds.
    """

    from pii_unlearn.audit.gate import parse_conditions
    from pii_unlearn.audit.runner import run_audit
    from pii_unlearn.audit.settings import QUANTIZE_SCHEMES, AuditSettings

    conditions = parse_conditions(fail_on or [])
    schemes = tuple(q.strip() for q in (quantize or "").split(",") if q.strip())
    unknown = [q for q in schemes if q not in QUANTIZE_SCHEMES]
    if unknown:
        raise typer.BadParameter(f"unknown scheme {', '.join(unknown)}", param_hint="--quantize")
    settings = AuditSettings.preset(
        relearn=relearn or None,
        quantize=schemes or None,
        quick=quick,
        seed=seed,
        show_pii=show_pii,
        num_samples=num_samples,
        candidates=candidates,
        batch_size=batch_size,
    )
    bars = StageProgress()
    on_progress = bars.update

    with bars:
        result = run_audit(
            model,
            records,
            output,
            baseline=baseline,
            heldout=heldout,
            settings=settings,
            fail_on=conditions,
            device=device,
            allow_pickle=allow_pickle,
            progress=on_progress,
            overwrite=overwrite,
        )
    from pii_unlearn.lm import is_main_process

    if is_main_process():  # under torchrun / accelerate launch: one table, from rank 0
        print_result(result)
    if result.failed:
        raise typer.Exit(1)


def print_result(result: AuditResult) -> None:
    """The summary and per-entity tables, skipped measurements, where the report went, the gate."""
    report = result.report
    out.print(summary_table(report))
    out.print(entity_table(report))
    for line in skipped_lines(report):
        out.print(f"[dim]{escape(line)}[/]", highlight=False)
    out.print(
        f"report written to [bold]{result.output}[/] (report.json, report.html) "
        f"in {report['timings']['total']:.1f}s",
        highlight=False,
    )
    for outcome in result.outcomes:
        line = f"gate: {outcome.message()}"
        if outcome.failed:
            console.print(f"[bold red]{line}[/]", highlight=False)
        else:
            out.print(line, highlight=False)

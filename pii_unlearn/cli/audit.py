"""``pii-unlearn audit``: leakage and utility of a checkpoint (vs its baseline), a report, a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pii_unlearn.cli.app import AllowPickle, StageProgress, command, console, out

if TYPE_CHECKING:
    from pii_unlearn.audit.runner import AuditResult

#: Rows of the terminal summary: label and key of the figure in each side of report.json.
_SUMMARY = (
    ("ERR", "err"),
    ("FRS", "frs"),
    ("E-Hit", "e_hit"),
    ("exposure (bits)", "exposure"),
    ("MIA AUC", "mia_auc"),
    ("paraphrase, greedy", "paraphrase_greedy"),
    ("paraphrase, sampled", "paraphrase_sampled"),
    ("re-inversion", "reinversion"),
)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_table(report: dict[str, Any]) -> Table:
    """Each figure overall for the baseline and the model, and the change."""
    has_base = report.get("baseline") is not None
    table = Table(title="PII leakage and utility", title_justify="left")
    table.add_column("figure")
    if has_base:
        table.add_column("baseline", justify="right")
    table.add_column("model", justify="right")
    if has_base:
        table.add_column("change", justify="right")
    table.add_column("model: conditioned", justify="right")
    for label, key in _SUMMARY:
        model = report["model"][key]
        cells = [label]
        if has_base:
            cells.append(_fmt(report["baseline"][key]["overall"]))
        cells.append(_fmt(model["overall"]))
        if has_base:
            cells.append(_fmt((report["delta"] or {}).get(key, {}).get("overall")))
        cells.append(_fmt(model["conditioned"]) if model.get("status") != "skipped" else "skipped")
        table.add_row(*cells)
    ppl = ["held-out perplexity"]
    if has_base:
        ppl.append(_fmt(report["baseline"]["perplexity"], 2))
    ppl.append(_fmt(report["model"]["perplexity"], 2))
    if has_base:
        pct = report.get("ppl_increase_pct")
        ppl.append(f"{pct:+.2f}%" if pct is not None else "–")
    table.add_row(*ppl, "")
    if has_base:
        table.add_row("KL drift (nats/token)", "", _fmt(report.get("kl_drift"), 5), "", "")
    return table


def entity_table(report: dict[str, Any]) -> Table:
    """ERR, E-Hit, exposure and MIA AUC per entity type; "baseline → model" with a baseline."""
    has_base = report.get("baseline") is not None
    table = Table(title="per entity type" + (" (baseline → model)" if has_base else ""), title_justify="left")
    table.add_column("entity type", no_wrap=True)
    table.add_column("n", justify="right")
    figures = (("ERR", "err"), ("E-Hit", "e_hit"), ("exposure", "exposure"), ("MIA AUC", "mia_auc"))
    for label, _ in figures:
        table.add_column(label, justify="right", no_wrap=True)
    for entity, count in report["counts"]["by_entity"].items():
        row = [entity, str(count)]
        for _, key in figures:
            model = _fmt(report["model"][key]["by_entity"].get(entity), 2)
            row.append(
                f"{_fmt(report['baseline'][key]['by_entity'].get(entity), 2)} → {model}"
                if has_base
                else model
            )
        table.add_row(*row)
    return table


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
        typer.Option(min=1, help="C same-format candidates for exposure (default: 31; 15 with --quick)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Prompts per generation batch (default: 32).")
    ] = None,
) -> None:
    """Measure how much PII a checkpoint still gives away and what it lost in quality.

    Writes OUTPUT/report.json (the contract for CI), OUTPUT/report.html (a self-contained page)
    and a manifest; prints a table. With --fail-on, exits 1 when a condition holds.
    """

    from pii_unlearn.audit.gate import parse_conditions
    from pii_unlearn.audit.runner import run_audit
    from pii_unlearn.audit.settings import AuditSettings

    conditions = parse_conditions(fail_on or [])
    settings = AuditSettings.preset(
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
        )
    print_result(result)
    if result.failed:
        raise typer.Exit(1)


def print_result(result: AuditResult) -> None:
    """The summary and per-entity tables, skipped measurements, where the report went, the gate."""
    report = result.report
    out.print(summary_table(report))
    out.print(entity_table(report))
    skipped = [k for _, k in _SUMMARY if report["model"][k].get("status") == "skipped"]
    for key in skipped:
        out.print(f"[dim]{key}: skipped ({report['model'][key].get('reason')})[/]", highlight=False)
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

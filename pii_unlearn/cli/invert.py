"""``pii-unlearn invert``: synthesise pseudo-PII forget samples from a checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pii_unlearn.cli.app import AllowPickle, StageProgress, command, console, out
from pii_unlearn.errors import InputError

if TYPE_CHECKING:
    from pii_unlearn.invert import InvertOptions, InvertReport

#: Pointer to where each strategy's options and defaults are listed.
SEE_LIST = "default: per strategy, see --list-strategies"


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def print_strategies() -> None:
    """Every registered strategy with its summary and options (name, type, default, description)."""
    from rich.markup import escape
    from rich.table import Table

    from pii_unlearn.invert import STRATEGIES
    from pii_unlearn.invert.base import DEFAULT_STRATEGY
    from pii_unlearn.options import describe_fields

    for name, strategy in sorted(STRATEGIES.items(), key=lambda kv: (kv[0] != DEFAULT_STRATEGY, kv[0])):
        out.print(f"[bold]{escape(name)}[/]: {escape(strategy.summary)}", highlight=False)
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2, 0, 2))
        for column in ("option", "type", "default", "description"):
            table.add_column(column, overflow="fold")
        for row in describe_fields(strategy.options):
            table.add_row(*(escape(cell) for cell in row))
        out.print(table)
        out.print()


def _list_strategies(value: bool) -> None:
    if value:
        print_strategies()
        raise typer.Exit()


def resolve_strategy_options(
    strategy: str, set_pairs: list[str], flags: dict[str, tuple[str, Any]]
) -> InvertOptions:
    """The strategy's validated options from the dedicated flags (``key: (flag, value)``) and ``--set``.

    A flag or key the strategy does not have is refused, as is a bad value: one
    :class:`InputError` line naming the flag or key.
    """
    from pii_unlearn.invert import get_strategy
    from pii_unlearn.options import parse_set, resolve_options

    model = get_strategy(strategy).options
    given = {key: (flag, value) for key, (flag, value) in flags.items() if value is not None}
    for key, (flag, value) in given.items():
        if key not in model.model_fields:
            known = ", ".join(sorted(model.model_fields))
            raise InputError(f"{flag}: not an option of strategy '{strategy}' (its options: {known})")
        resolve_options(model, {key: value}, where=flag)
    overrides = parse_set(set_pairs, model)
    flag_values = {key: value for key, (_, value) in given.items()}
    return resolve_options(model, flag_values, overrides, where="command line")


def print_report(report: InvertReport) -> None:
    """The kept values per entity type, and one line saying what was written where."""
    from rich.table import Table

    summary = report.result.summary
    table = Table(show_header=True, header_style="bold")
    table.add_column("entity type")
    table.add_column("candidates", justify="right")
    table.add_column("kept", justify="right")
    for kind, row in summary["per_entity"].items():
        table.add_row(kind, str(row["candidates"]), str(row["kept"]))
    if summary["per_entity"]:
        out.print(table)
    out.print(
        f"{summary['values_kept']} memorised PII values in {summary['records']} records "
        f"written to [bold]{report.output}[/] ({report.strategy}, seed {report.seed}, "
        f"{report.timings['invert']:.1f}s)",
        highlight=False,
    )


@command("invert")
def invert(
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint: HF directory or .gguf file.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="JSONL file of pseudo-PII records to write.")
    ],
    strategy: Annotated[str, typer.Option(help="Inversion strategy (see --list-strategies).")] = "sample",
    num_samples: Annotated[
        int | None,
        typer.Option(help=f"Sampled continuations ({SEE_LIST})."),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help=f"Tokens generated per sample ({SEE_LIST}).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Sequences per forward pass ({SEE_LIST}).")] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same output.")] = 0,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help="Text file of extra openers, one per line (# comments; <BOS> is the empty prompt)."
        ),
    ] = None,
    builtin_prompts: Annotated[
        bool | None,
        typer.Option(
            "--builtin-prompts/--no-builtin-prompts",
            help="Use the strategy's built-in prompts as well (default: yes).",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help=f"sample: memorisation confidence a value needs to be kept ({SEE_LIST})."),
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Strategy option KEY=VALUE (repeatable), e.g. --set top_k=20; see --list-strategies.",
        ),
    ] = None,
    entities: Annotated[
        str | None, typer.Option(help="Comma-separated PII entity types to detect (default: the usual).")
    ] = None,
    detect_threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Minimum detector score of a PII span (default: detect's)."),
    ] = None,
    nlp_model: Annotated[
        str | None, typer.Option(help="Installed spaCy model name or path for PII detection.")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:N (default: cuda when present).")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16 or float16 (default: auto).")] = None,
    allow_pickle: Annotated[bool, AllowPickle] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Run the checkpoint's own model code.")] = False,
    list_strategies: Annotated[
        bool,
        typer.Option(
            "--list-strategies",
            callback=_list_strategies,
            is_eager=True,
            help="List every strategy with its options and defaults, and exit.",
        ),
    ] = False,
) -> None:
    """Synthesise pseudo-PII forget samples from the checkpoint alone (no training data).

    Writes one record per kept text: its PII spans with memorisation scores,
    the token mask for the model's tokenizer, and the prompt behind it.
    """
    from pii_unlearn.invert import invert_file

    options = resolve_strategy_options(
        strategy,
        setting or [],
        {
            "num_samples": ("--num-samples", num_samples),
            "max_new_tokens": ("--max-new-tokens", max_new_tokens),
            "batch_size": ("--batch-size", batch_size),
            "builtin_prompts": ("--builtin-prompts", builtin_prompts),
            "threshold": ("--threshold", threshold),
        },
    )
    status = console.status("loading the model and the PII detector...")
    bar = StageProgress()

    def on_loaded(warnings: list[str]) -> None:
        status.stop()
        for warning in warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        bar.bars.start()

    status.start()
    try:
        report = invert_file(
            model,
            output,
            strategy=strategy,
            options=options,
            seed=seed,
            prompts=prompts,
            entities=_names(entities) or None,
            detect_threshold=detect_threshold,
            nlp_model=nlp_model,
            device=device,
            dtype=dtype,
            allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code,
            progress=bar.update,
            on_loaded=on_loaded,
        )
    finally:
        status.stop()
        bar.bars.stop()
    print_report(report)

"""``pii-unlearn unlearn``: remove a forget set's PII from a checkpoint with a registered method."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pii_unlearn.cli.app import AllowPickle, Overwrite, command, console, out

if TYPE_CHECKING:
    from pii_unlearn.unlearn import UnlearnResult


def _list_methods(value: bool) -> None:
    if value:
        from pii_unlearn.unlearn.catalog import methods_listing

        out.print(methods_listing(), highlight=False, markup=False)
        raise typer.Exit()


@command("unlearn")
def unlearn(
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint directory or .gguf file.")],
    forget: Annotated[Path, typer.Option(help="Forget set JSONL (records with PII spans).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New checkpoint directory to write.")],
    method: Annotated[str, typer.Option(help="A registered method (see --list-methods).")] = "dfsu",
    config: Annotated[Path | None, typer.Option(help="YAML file of settings for the method.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override one setting: KEY=VALUE (repeatable).")
    ] = None,
    retain: Annotated[
        Path | None,
        typer.Option(help="Benign JSONL text for the KL term and the utility guard (default: data-free)."),
    ] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--full", help="Train LoRA adapters or every weight.")
    ] = None,
    save_adapter: Annotated[
        bool, typer.Option(help="Also save the LoRA adapter alone in OUTPUT/adapter.")
    ] = False,
    aligner: Annotated[
        Path | None,
        typer.Option(help="NSPU: reuse the aligner saved in this folder (same model; fingerprint checked)."),
    ] = None,
    save_aligner: Annotated[
        Path | None, typer.Option(help="NSPU: save the trained aligner in this folder for later runs.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling and batching.")] = 0,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps at most.")] = None,
    overwrite: Overwrite = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or cuda:N (default: CUDA when present).")
    ] = None,
    text_field: Annotated[str, typer.Option(help="Field holding the text in the JSONL files.")] = "text",
    allow_pickle: Annotated[bool, AllowPickle] = False,
    list_methods: Annotated[
        bool,
        typer.Option(
            "--list-methods",
            callback=_list_methods,
            is_eager=True,
            help="Print every method with its summary and options, and exit.",
        ),
    ] = False,
) -> None:
    """Unlearn the forget set's PII and write a new checkpoint (adapter merged, safetensors).

    Guards: the ascent is bounded, training stops once the forget PII tokens' mean
    probability is under its target, and before benign perplexity rises past its
    limit; the best reading that kept utility is the one saved.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pii_unlearn.errors import InputError
    from pii_unlearn.options import parse_set
    from pii_unlearn.unlearn import options_for, run_unlearn
    from pii_unlearn.unlearn.methods import GuardReading, get_method

    model_options = get_method(method).Options
    fields = model_options.model_fields
    overrides = parse_set(set_ or [], model_options)
    flags = (
        ("--lora/--full", "lora", lora),
        ("--max-steps", "max_steps", max_steps),
        ("--aligner", "aligner_path", str(aligner) if aligner else None),
        ("--save-aligner", "save_aligner_path", str(save_aligner) if save_aligner else None),
    )
    for flag, key, value in flags:
        if value is not None:
            if key not in fields:
                raise InputError(f"{flag}: method '{method}' has no option {key}")
            overrides[key] = value
    total = getattr(options_for(method, config, overrides), "max_steps", None)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"unlearn ({method})", total=total, info="")

        def show(r: GuardReading) -> None:
            bar.update(
                task,
                completed=r.step,
                info=(f"PII p={r.pii_prob:.3f} " if not math.isnan(r.pii_prob) else "")
                + f"ppl={r.ppl:.2f} ({r.ppl_increase_pct:+.1f}%)",
            )

        path, result = run_unlearn(
            model,
            forget,
            output,
            method=method,
            config=config,
            overrides=overrides,
            retain_path=retain,
            save_adapter=save_adapter,
            seed=seed,
            device=device,
            text_field=text_field,
            allow_pickle=allow_pickle,
            progress=show,
            overwrite=overwrite,
        )
    print_result(path, result)


def print_result(path: Path, result: UnlearnResult) -> None:
    """Where the new checkpoint went, how the method stopped, and what the guards read."""
    from pii_unlearn.unlearn.methods.base import KEPT_START_NOTE

    edit = result.edit
    out.print(
        f"wrote [bold]{path}[/] with {result.method.name}: {edit.forget_count} forget records, "
        f"{edit.steps} steps, stopped: {edit.stop_reason}, {edit.seconds:.1f}s"
    )
    if edit.guard_note:
        out.print(f"[yellow]utility guard:[/] {edit.guard_note}")
    if edit.kept_start:
        out.print(f"[yellow]{KEPT_START_NOTE}[/]", highlight=False)
    if edit.kept is not None and edit.readings:
        first, kept = edit.readings[0], edit.kept
        prob = (
            f"forget PII tokens' mean probability {first.pii_prob:.4f} -> {kept.pii_prob:.4f}; "
            if not math.isnan(first.pii_prob)
            else ""
        )
        out.print(
            f"{prob}benign perplexity {first.ppl:.3f} -> {kept.ppl:.3f} ({kept.ppl_increase_pct:+.2f}%)"
        )

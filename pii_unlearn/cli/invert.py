"""``pii-unlearn invert``: synthesise pseudo-PII forget samples from a checkpoint alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pii_unlearn.cli.app import StageProgress, command, console, out
from pii_unlearn.errors import InputError


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_settings(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strategy options; values are read as JSON when they parse, else kept as text."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


@command("invert")
def invert(
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint: HF directory or .gguf file.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="JSONL file of pseudo-PII records to write.")
    ],
    strategy: Annotated[
        str, typer.Option(help="Inversion strategy: 'sample' (default) or 'logit-inverter'.")
    ] = "sample",
    num_samples: Annotated[
        int | None,
        typer.Option(min=1, help="Samples (sample: 512) or decoded prompts (logit-inverter: 256)."),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Tokens generated per sample (48).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Sequences per forward pass (64).")] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same output.")] = 0,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help="Text file of extra openers, one per line (# comments; <BOS> is the empty prompt)."
        ),
    ] = None,
    builtin_prompts: Annotated[
        bool, typer.Option(help="Use the built-in list of PII-eliciting openers as well.")
    ] = True,
    threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Memorisation confidence a value needs to be kept (0.5)."),
    ] = None,
    inverter: Annotated[
        Path | None, typer.Option(help="logit-inverter: reuse a trained inverter from this folder.")
    ] = None,
    save_inverter: Annotated[
        Path | None, typer.Option(help="logit-inverter: save the trained inverter to this folder.")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Strategy option KEY=VALUE (repeatable), e.g. --set top_k=20."),
    ] = None,
    entities: Annotated[
        str | None, typer.Option(help="Comma-separated PII entity types to detect (default: the usual).")
    ] = None,
    detect_threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Minimum detector score of a PII span.")
    ] = 0.5,
    nlp_model: Annotated[
        str | None, typer.Option(help="Installed spaCy model name or path for PII detection.")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:N (default: cuda when present).")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16 or float16 (default: auto).")] = None,
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow pickle weight files (trusted input only).")
    ] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Run the checkpoint's own model code.")] = False,
) -> None:
    """Synthesise pseudo-PII forget samples from the checkpoint alone (no training data).

    Writes one record per kept text: its PII spans with memorisation scores,
    the token mask for the model's tokenizer, and the prompt behind it.
    """
    from rich.table import Table

    from pii_unlearn.artifacts import Manifest, Timer, ensure_writable_target, write_records
    from pii_unlearn.checkpoint import load_model
    from pii_unlearn.invert import read_prompts_file, run_inversion, strategy_options
    from pii_unlearn.invert.base import get_strategy
    from pii_unlearn.pii.detect import Detector

    get_strategy(strategy)
    ensure_writable_target(output, inputs=[model])
    if not os.access(output.parent, os.W_OK):
        raise InputError(f"{output.parent}: output folder is not writable")
    extra = read_prompts_file(prompts) if prompts is not None else None
    options = parse_settings(setting)
    known = strategy_options(strategy)
    if not builtin_prompts:
        options["builtin_prompts"] = False
    if threshold is not None:
        options["threshold"] = threshold
    if inverter is not None:
        options["inverter"] = str(inverter)
    if save_inverter is not None:
        options["save_inverter"] = str(save_inverter)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(
            f"strategy '{strategy}' has no option(s) {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(known))})"
        )
    timer = Timer()
    with timer("load"), console.status("loading the model and the PII detector..."):
        loaded = load_model(
            model, device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
        )
        detector = Detector(
            entities=_names(entities) or None, threshold=detect_threshold, nlp_model=nlp_model
        )
    for warning in getattr(detector, "warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    bar = StageProgress()
    on_progress = bar.update

    with timer("invert"), bar:
        result = run_inversion(
            loaded,
            strategy=strategy,
            seed=seed,
            num_samples=num_samples,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            prompts=extra,
            detector=detector,
            progress=on_progress,
            **options,
        )
    manifest = Manifest(seed=seed, settings={**result.settings, "summary": result.summary})
    manifest.add_input(model, role="model")
    if prompts is not None:
        manifest.add_input(prompts, role="prompts")
    if inverter is not None:
        manifest.add_input(inverter, role="inverter")
    manifest.timings = {**timer.timings, **{f"invert.{k}": v for k, v in result.timings.items()}}
    write_records(output, result.records, manifest)

    table = Table(show_header=True, header_style="bold")
    table.add_column("entity type")
    table.add_column("candidates", justify="right")
    table.add_column("kept", justify="right")
    for kind, row in result.summary["per_entity"].items():
        table.add_row(kind, str(row["candidates"]), str(row["kept"]))
    if result.summary["per_entity"]:
        out.print(table)
    out.print(
        f"{result.summary['values_kept']} memorised PII values in {result.summary['records']} records "
        f"written to [bold]{output}[/] ({strategy}, seed {seed}, {timer.timings['invert']:.1f}s)",
        highlight=False,
    )

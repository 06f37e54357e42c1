"""``pii-unlearn make-victim``: build a model that has memorised synthetic PII (offline)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from pii_unlearn.cli.app import Overwrite, command, console, out


class TemplateSet(str, Enum):
    """The record templates a victim is built with."""

    train = "train"
    heldout = "heldout"


@command("make-victim")
def make_victim(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint directory to create.")],
    records: Annotated[
        int | None,
        typer.Option(min=1, help="Number of planted PII records. [default: 64; 32 with --base]"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the fake data, tokenizer and training.")] = 0,
    overwrite: Overwrite = False,
    templates: Annotated[
        TemplateSet,
        typer.Option(
            help="Record templates: 'train' (the demo's) or 'heldout' (phrasings no default of the "
            "tool is fitted on: tickets, discharge notes, payroll, HR, chargebacks, VPN logs)."
        ),
    ] = TemplateSet.train,
    control: Annotated[
        bool,
        typer.Option(
            "--control",
            help="Build a control: same recipe, trained on other fake values. planted.jsonl then "
            "holds the records of the real victim of this seed, which the control never saw "
            "(control.jsonl holds what it saw).",
        ),
    ] = False,
    base: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune this pretrained causal LM (HF directory or .gguf) on the records mixed "
            "with support-desk text, with its own tokenizer, instead of training a tiny model."
        ),
    ] = None,
    lora: Annotated[
        bool, typer.Option("--lora", help="With --base: train LoRA adapters (merged on save).")
    ] = False,
    time_budget: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Stop training after this many seconds even if the target is not reached. "
            "[default: 300; 1800 with --base]",
        ),
    ] = None,
) -> None:
    """Build a model that has memorised synthetic PII (offline).

    Without --base: a tiny Pythia-architecture model and its own tokenizer (trained on
    the templates filled with other fake values, never on the planted ones). Writes
    OUTPUT as a Hugging Face checkpoint plus planted.jsonl (ground truth, for
    evaluation only) and heldout.jsonl (benign text it never saw).
    """
    from pii_unlearn.checkpoint import check_output_dir
    from pii_unlearn.synth.victim import VictimConfig, build_victim

    check_output_dir(output, [base], overwrite=overwrite)
    settings: dict[str, object] = {"seed": seed, "templates": templates.value, "control": control}
    if records is not None:
        settings["records"] = records
    if time_budget is not None:
        settings["time_budget_s"] = time_budget
    if base is not None:
        config = VictimConfig.for_base(base, lora=lora, **settings)
    else:
        config = VictimConfig(**settings)  # type: ignore[arg-type]
    with console.status("training the victim model...") as status:
        report = build_victim(
            output,
            config,
            overwrite=overwrite,
            progress=lambda row: status.update(
                f"epoch {row['epoch']:.0f}: loss {row['loss']:.3f}, "
                f"greedy reconstruction {row['conditioned_err']:.0%}"
            ),
        )
    kind = "control" if report.control else "victim"
    out.print(
        f"{kind} written to [bold]{report.path}[/]: {report.records} records ({report.templates} "
        f"templates), {report.parameters / 1e6:.2f}M parameters, {report.epochs} epochs in "
        f"{report.seconds:.1f}s; greedy decoding reproduces {report.conditioned_err:.1%} of the "
        f"{report.conditioned_targets} trained values that follow another PII value"
    )
    if report.control:
        out.print(
            f"planted.jsonl holds values this control never saw; "
            f"it reproduces {report.planted_err:.1%} of them"
        )

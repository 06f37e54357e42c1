"""``pii-unlearn make-victim``: build the demo model that has memorised synthetic PII."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pii_unlearn.cli.app import Overwrite, command, console, out


@command("make-victim")
def make_victim(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint directory to create.")],
    records: Annotated[int, typer.Option(min=1, help="Number of planted PII records.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed for the fake data, tokenizer and training.")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Build a tiny Pythia-architecture model that has memorised synthetic PII (offline).

    Writes OUTPUT as a Hugging Face checkpoint plus planted.jsonl (ground truth, for
    evaluation only) and heldout.jsonl (benign text it never saw).
    """
    from pii_unlearn.checkpoint import check_output_dir
    from pii_unlearn.synth.victim import VictimConfig, build_victim

    check_output_dir(output, overwrite=overwrite)
    config = VictimConfig(records=records, seed=seed)
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
    out.print(
        f"victim written to [bold]{report.path}[/]: {report.records} records, "
        f"{report.parameters / 1e6:.2f}M parameters, {report.epochs} epochs in {report.seconds:.1f}s; "
        f"greedy decoding reproduces {report.conditioned_err:.1%} of the "
        f"{report.conditioned_targets} planted values that follow another PII value"
    )

"""``pii-unlearn demo``: the whole promise in one command, on the embedded victim model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pii_unlearn.cli.app import command, console, out


@command("demo")
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the victim and every intermediate file.")] = Path(
        "demo-work"
    ),
    seed: Annotated[int, typer.Option(help="Seed of every step.")] = 0,
) -> None:
    """Build (or reuse) the demo victim and show how much PII it leaks."""
    from pii_unlearn.artifacts import read_records
    from pii_unlearn.checkpoint import load_model
    from pii_unlearn.synth.victim import PLANTED_FILE, VictimConfig, build_victim, conditioned_err

    workdir.mkdir(parents=True, exist_ok=True)
    victim = workdir / "victim"
    if not (victim / "config.json").exists():
        with console.status("building the victim model..."):
            build_victim(victim, VictimConfig(seed=seed))
    loaded = load_model(victim)
    rate, n = conditioned_err(loaded.model, loaded.tokenizer, read_records(victim / PLANTED_FILE))
    out.print(f"victim: {victim}\ngreedy decoding reproduces {rate:.1%} of {n} planted PII values")

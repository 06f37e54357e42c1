"""End-to-end: the Makefile recipe chains every subcommand through files; the in-process pipeline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pii_unlearn.artifacts import read_manifest
from pii_unlearn.errors import InputError
from pii_unlearn.pipeline import PII, PROBES, REPORT, RISK, Hooks, forget_set_steps, run_pipeline, run_step
from pii_unlearn.synth.victim import HELDOUT_FILE, PLANTED_FILE

ROOT = Path(__file__).resolve().parents[1]


def _make(out: Path, victim_dir: Path, *targets: str, dry: bool = False) -> subprocess.CompletedProcess:
    args = [
        "make",
        "-f",
        str(ROOT / "recipes" / "sanitize.mk"),
        *(["-q"] if dry else []),
        f"MODEL={victim_dir}",
        f"OUT={out}",
        f"RECORDS={victim_dir / PLANTED_FILE}",
        f"PII_UNLEARN={sys.executable} -m pii_unlearn",
        "INVERT_ARGS=--num-samples 96",
        # GA-style ascent is slow for ~40 steps on a confident victim, then falls off a cliff:
        # 80 steps (it stops early once the forget tokens fall below the probability target).
        "UNLEARN_ARGS=--max-steps 80 --set retain_source=builtin",
        f"AUDIT_ARGS=--quick --heldout {victim_dir / HELDOUT_FILE}",
        *targets,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_recipe_runs_end_to_end(victim_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "work"
    done = _make(out, victim_dir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ["probes.jsonl", "pii.jsonl", "risk.jsonl", "dfsu/config.json", "report/report.json"]:
        assert (out / name).exists(), name
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["baseline"] is not None
    assert report["err"] < report["baseline"]["err"]["overall"]
    risk = [json.loads(line) for line in (out / "risk.jsonl").read_text().splitlines()]
    assert risk and all("pri" in r and "faked_text" in r for r in risk)
    # make's dependency tracking: nothing left to do
    assert _make(out, victim_dir, dry=True).returncode == 0


def test_pipeline_manifests_name_each_steps_own_command(victim_dir: Path, tmp_path: Path) -> None:
    """What ``demo`` runs: every step's manifest records the ``pii-unlearn`` command that remakes it."""
    work = tmp_path / "work"
    heard: list[tuple[str, str]] = []
    hooks = Hooks(
        on_step=lambda name: heard.append(("step", name)),
        on_result=lambda name, _: heard.append(("result", name)),
    )
    run = run_pipeline(
        victim_dir,
        work,
        audit_records=victim_dir / PLANTED_FILE,
        heldout=victim_dir / HELDOUT_FILE,
        seed=3,
        quick_audit=True,
        invert_set=["num_samples=96"],
        unlearn_set=["max_steps=20", "retain_source=builtin"],
        hooks=hooks,
    )
    steps = ["invert", "detect", "risk-score", "unlearn", "audit"]
    assert heard == [(kind, name) for name in steps for kind in ("step", "result")]
    assert list(run.timings) == steps and run.report["baseline"] is not None
    outputs = {
        "invert": work / PROBES,
        "detect": work / PII,
        "risk-score": work / RISK,
        "unlearn": run.clean,
        "audit": work / REPORT,
    }
    for step, path in outputs.items():
        manifest = read_manifest(path)
        assert manifest is not None, step
        command = manifest["command"]
        assert command[:2] == ["pii-unlearn", step], command
        assert "demo" not in command and str(path) in command
        if step != "risk-score":  # the only step without a seed
            assert command[command.index("--seed") + 1] == "3", command
    assert read_manifest(work / PROBES)["settings"]["num_samples"] == 96
    unlearn = read_manifest(run.clean)["command"]
    assert unlearn[-4:] == ["--set", "max_steps=20", "--set", "retain_source=builtin"]
    assert read_manifest(run.clean)["settings"]["max_steps"] == 20


def test_forget_set_steps_check_their_input(tmp_path: Path) -> None:
    invert, detect, risk = forget_set_steps(tmp_path / "model", tmp_path, 0, invert_set=["top_k=abc"])
    assert invert.command[:2] == ["pii-unlearn", "invert"] and invert.args[-2:] == ["--set", "top_k=abc"]
    with pytest.raises(InputError, match="--set top_k: Input should be a valid integer"):
        run_step(invert)
    with pytest.raises(InputError, match="no such file"):
        run_step(detect)
    assert risk.command == [
        "pii-unlearn",
        "risk-score",
        "--input",
        str(tmp_path / PII),
        "--output",
        str(tmp_path / RISK),
    ]

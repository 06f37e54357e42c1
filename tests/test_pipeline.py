"""End-to-end: the Makefile recipe chains every subcommand through files; the in-process runner."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pii_unlearn.errors import InputError
from pii_unlearn.pipeline import run_cli
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
        "UNLEARN_ARGS=--max-steps 20 --set retain_source=builtin",
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


def test_run_cli_maps_failures_to_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="detect"):
        run_cli(["detect", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl")])
    with pytest.raises(InputError, match="No such option"):
        run_cli(["detect", "--bogus"])

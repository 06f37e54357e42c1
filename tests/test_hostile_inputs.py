"""Hostile arguments that must fail up front: one error line, exit 2, before any step runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pii_unlearn.cli import app
from pii_unlearn.errors import EXIT_USAGE

runner = CliRunner()


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    assert "Traceback" not in output
    return lines[0]


def test_demo_unknown_method_fails_before_any_step(tmp_path: Path) -> None:
    work = tmp_path / "work"
    result = runner.invoke(app, ["demo", "--workdir", str(work), "--method", "foo"])
    assert result.exit_code == EXIT_USAGE
    assert "unknown method 'foo'" in _one_error_line(result.output)
    assert not work.exists()  # nothing built, not even the workdir


@pytest.mark.parametrize("below", [False, True], ids=["file", "under-a-file"])
def test_demo_workdir_that_is_a_file(tmp_path: Path, below: bool) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("keep me\n")
    work = file / "sub" if below else file
    result = runner.invoke(app, ["demo", "--workdir", str(work)])
    assert result.exit_code == EXIT_USAGE
    assert "is not a folder" in _one_error_line(result.output)
    assert file.read_text() == "keep me\n"


def test_pipeline_checks_unlearn_and_invert_options_up_front(tmp_path: Path) -> None:
    from pii_unlearn.errors import InputError
    from pii_unlearn.pipeline import check_pipeline_args

    check_pipeline_args(tmp_path, "dfsu", ["num_samples=8"], [])
    with pytest.raises(InputError, match="no_such_option"):
        check_pipeline_args(tmp_path, "dfsu", [], ["no_such_option=1"])
    with pytest.raises(InputError, match="num_samples"):
        check_pipeline_args(tmp_path, "dfsu", ["num_samples=-3"], [])


@pytest.mark.parametrize("subcommand", ["invert", "unlearn", "audit"])
def test_every_weight_loading_subcommand_has_allow_pickle(subcommand: str) -> None:
    result = runner.invoke(app, [subcommand, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--allow-pickle" in result.output


def test_pickle_only_checkpoint_hint_names_an_option_unlearn_has(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (ckpt / "pytorch_model.bin").write_bytes(b"not really a pickle")
    forget = tmp_path / "forget.jsonl"
    forget.write_text(
        json.dumps(
            {
                "id": "a",
                "text": "Call 555-0100.",
                "spans": [{"start": 5, "end": 13, "entity_type": "PHONE_NUMBER"}],
            }
        )
        + "\n"
    )
    args = ["unlearn", "--model", str(ckpt), "--forget", str(forget), "--output", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_USAGE
    assert "--allow-pickle" in _one_error_line(result.output)
    assert not (tmp_path / "out").exists()

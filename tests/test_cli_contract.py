"""The CLI's contract: distinct exit codes, one-line errors, no traceback unless --debug."""

from __future__ import annotations

import importlib
import time

import pytest
import typer

from pii_unlearn.cli import run
from pii_unlearn.errors import EXIT_INTERNAL, EXIT_USAGE, InputError

app_module = importlib.import_module("pii_unlearn.cli.app")


@pytest.fixture
def tiny_app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """A throwaway app on the real conventions (root options, command wrapper), swapped in for run()."""
    tiny = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    tiny.callback()(app_module._root)

    def wrap(func):  # the same wrapper `command` applies, registered on the tiny app
        monkeypatch.setattr(app_module, "app", tiny)
        return app_module.command(func.__name__)(func)

    monkeypatch.setattr(app_module, "app", tiny)

    @wrap
    def boom() -> None:
        raise RuntimeError("kaput\nsecond line")

    @wrap
    def bad() -> None:
        raise InputError("that file is wrong")

    @wrap
    def gate() -> None:
        raise typer.Exit(1)

    @wrap
    def ctrl_c_in_a_finalizer() -> None:
        class Dying:
            def __del__(self) -> None:
                raise KeyboardInterrupt  # what a SIGINT landing inside a library's __del__ does

        Dying()
        deadline = time.monotonic() + 5  # the interrupt must stop the run in this work, not be lost
        while time.monotonic() < deadline:
            sum(range(100))
        raise AssertionError("the interrupt was lost")

    return tiny


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_internal_error_is_one_line_and_exit_3(tiny_app, capsys) -> None:
    assert run(["boom"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert _lines(err) == [line for line in _lines(err) if "internal error: RuntimeError: kaput" in line]
    assert "Traceback" not in err and "--debug" in err


def test_debug_shows_the_traceback(tiny_app, capsys) -> None:
    assert run(["--debug", "boom"]) == EXIT_INTERNAL
    assert "Traceback" in capsys.readouterr().err


def test_input_error_gate_and_usage_codes(tiny_app, capsys) -> None:
    assert run(["bad"]) == EXIT_USAGE
    assert _lines(capsys.readouterr().err) == ["error: that file is wrong"]
    assert run(["gate"]) == 1
    assert run(["nope"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "No such command" in err and "╭" not in err


def test_ctrl_c_inside_a_finalizer_stops_the_run_without_a_traceback(tiny_app, capsys) -> None:
    """CI once saw "Exception ignored in ... KeyboardInterrupt" from a regex __del__, and the run went on."""
    assert run(["ctrl_c_in_a_finalizer"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err and "interrupted" in err


def test_real_app_usage_error_is_one_line(capsys) -> None:
    assert run(["unlearn", "--bogus"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "No such option: --bogus" in err


def test_yaml_duplicate_keys_are_refused(tmp_path) -> None:
    from pii_unlearn.options import load_config_file

    dup = tmp_path / "dup.yaml"
    dup.write_text("lr: 1\nlr: 2\n")
    with pytest.raises(InputError, match="line 2: invalid YAML \\(duplicate key 'lr'\\)"):
        load_config_file(dup)


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id":1,"text":"hi \\ud800 there","spans":[]}', "lone Unicode surrogate"),
        (
            '{"id":1,"text":"call 555-123-4567","spans":[{"start":5,"end":17,'
            '"entity_type":"PHONE_NUMBER","score":NaN}]}',
            "NaN is not valid JSON",
        ),
        ('{"id":1,"text":"x","spans":[{"start":0,"end":1,"entity_type":"P","score":Infinity}]}', "Infinity"),
    ],
)
def test_hostile_jsonl_is_one_line_exit_2_nothing_written(line: str, message: str, tmp_path, capsys) -> None:
    src = _write(tmp_path / "in.jsonl", line + "\n")
    before = src.read_bytes()
    out = tmp_path / "out.jsonl"
    assert run(["risk-score", "--input", str(src), "--output", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and len(_lines(err)) == 1 and "Traceback" not in err
    assert not out.exists() and src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_bad_device_is_a_usage_error(capsys, tmp_path) -> None:
    from pii_unlearn.checkpoint import pick_device

    with pytest.raises(InputError, match="device 'foo'"):
        pick_device("foo")
    assert pick_device("cpu") == "cpu"


def test_record_lines_never_write_bare_nan() -> None:
    from pii_unlearn.artifacts import record_line

    with pytest.raises(ValueError):
        record_line({"id": 1, "text": "x", "score": float("nan")})


def test_manifest_does_not_hash_a_pipe(tmp_path) -> None:
    import os

    from pii_unlearn.artifacts import Manifest

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    manifest = Manifest()
    manifest.add_input(fifo, "forget")  # must neither block nor record a hash of other bytes
    assert manifest.inputs[0]["sha256"] is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "cannot load model"),
        ("garbage", "cannot load model"),
        ("shape", "cannot load model"),
        ("tokenizer", "not a valid tokenizer file"),
        ("config", "cannot read model config"),
    ],
)
def test_corrupt_checkpoint_is_bad_input_not_a_crash(damage: str, message: str, victim_dir, tmp_path, capsys):
    import json
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(victim_dir, ckpt)
    weights = ckpt / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garbage":
        weights.write_bytes(b"garbage\n")
    elif damage == "shape":
        config = json.loads((ckpt / "config.json").read_text())
        config["hidden_size"] = config["hidden_size"] // 2
        (ckpt / "config.json").write_text(json.dumps(config))
    elif damage == "tokenizer":
        (ckpt / "tokenizer.json").write_text("{bad")
    else:
        (ckpt / "config.json").write_text("{bad")
    out = tmp_path / "probes.jsonl"
    assert run(["invert", "--model", str(ckpt), "--output", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and len(_lines(err)) == 1 and "Traceback" not in err
    assert not out.exists()

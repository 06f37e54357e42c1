"""The CLI's contract: distinct exit codes, one-line errors, no traceback unless --debug."""

from __future__ import annotations

import importlib

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


def test_real_app_usage_error_is_one_line(capsys) -> None:
    assert run(["unlearn", "--bogus"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "No such option: --bogus" in err


LAUGHS = (
    "a: &a ["
    + ",".join(['"lol"'] * 9)
    + "]\n"
    + "".join(
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


@pytest.mark.parametrize("args", [["risk-score", "--show-policy", "--policy"], ["unlearn", "--list-methods"]])
def test_yaml_alias_bomb_is_refused_quickly(args: list[str], tmp_path, capsys) -> None:
    from pii_unlearn.options import load_config_file

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(LAUGHS)
    if args[0] == "risk-score":
        assert run([*args, str(bomb)]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "anchors and aliases" in err and len(_lines(err)) == 1 and "lol" not in err
    else:
        with pytest.raises(InputError, match="anchors and aliases"):
            load_config_file(bomb)


def test_yaml_duplicate_keys_are_refused(tmp_path) -> None:
    from pii_unlearn.options import load_config_file

    dup = tmp_path / "dup.yaml"
    dup.write_text("lr: 1\nlr: 2\n")
    with pytest.raises(InputError, match="line 2: invalid YAML \\(duplicate key 'lr'\\)"):
        load_config_file(dup)

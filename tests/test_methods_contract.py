"""The contract every registered unlearning method keeps, and the docs generated from the methods."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pii_unlearn.checkpoint import load_model
from pii_unlearn.cli import app
from pii_unlearn.lm import generate
from pii_unlearn.synth.victim import PLANTED_FILE
from pii_unlearn.unlearn import run_unlearn
from pii_unlearn.unlearn.catalog import RECIPES_DIR, readme_with_table, recipe_yaml
from pii_unlearn.unlearn.methods import METHODS, GradientMethod, Method, register

ROOT = Path(__file__).resolve().parents[1]
#: Overrides that make any method quick, applied where the method has the option.
QUICK = {
    "max_steps": 3,
    "eval_every": 1,
    "retain_source": "builtin",
    "guard_texts": 4,
    "ppl_limit_pct": 1e9,
}


def _quick(method: str) -> dict[str, object]:
    fields = METHODS[method].Options.model_fields
    return {k: v for k, v in QUICK.items() if k in fields}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_writes_a_checkpoint_that_loads_and_generates(
    method: str, victim_dir: Path, tmp_path: Path
) -> None:
    out, result = run_unlearn(
        victim_dir, victim_dir / PLANTED_FILE, tmp_path / "clean", method=method, overrides=_quick(method)
    )
    assert result.edit.forget_count > 0 and result.edit.stop_reason
    assert result.method.name == method
    again = load_model(out, device="cpu")
    [[text]] = generate(again.model, again.tokenizer, ["Customer"], max_new_tokens=6)
    assert isinstance(text, str)
    # the saved model is the edited one, not the input
    source = load_model(victim_dir, device="cpu")
    ids = again.tokenizer("Customer Ann", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.equal(again.model(ids).logits, source.model(ids).logits)


def test_registry_refuses_a_second_method_of_the_same_name() -> None:
    class Impostor(GradientMethod):
        name = "dfsu"
        summary = "not DFSU"

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    assert METHODS["dfsu"] is not Impostor


def test_every_method_documents_every_option() -> None:
    for name, cls in METHODS.items():
        assert issubclass(cls, Method) and cls.summary, name
        for field, info in cls.Options.model_fields.items():
            assert info.description, f"{name}.{field} has no description"
        assert cls.Options.model_config.get("extra") == "forbid", name


def test_readme_table_and_recipes_match_the_methods() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme) == readme, "README method table is stale: run `make docs`"
    for name, cls in METHODS.items():
        path = ROOT / RECIPES_DIR / f"{name}.yaml"
        assert path.exists() and path.read_text(encoding="utf-8") == recipe_yaml(cls), (
            f"{path} is stale: run `make docs`"
        )


def test_pretrained_recipes_are_valid_settings() -> None:
    """``recipes/pretrained/METHOD.yaml`` (hand-written, not generated) resolve for their method."""
    from pii_unlearn.unlearn import options_for

    paths = sorted((ROOT / "recipes" / "pretrained").glob("*.yaml"))
    assert paths
    for path in paths:
        options = options_for(path.stem, path)
        assert options.lr < METHODS[path.stem].Options().lr, f"{path}: a pretrained model's rate is lower"


def test_list_methods() -> None:
    result = CliRunner().invoke(app, ["unlearn", "--list-methods"])
    assert result.exit_code == 0, result.output
    for name in METHODS:
        assert f"\n{name}: " in "\n" + result.output
    assert "nll_clamp (float, default 8)" in result.output


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lr=oops", "--set lr: Input should be a valid number"),
        ("lora=maybe", "--set lora: Input should be a valid boolean"),
        ("max_steps=0", "--set max_steps: Input should be greater than or equal to 1"),
        ("nonsense=1", "--set nonsense: unknown option"),
        ("retain_source=web", "--set retain_source: Input should be 'generated' or 'builtin'"),
        ("lr", "expected KEY=VALUE"),
    ],
)
def test_bad_set_values_are_one_line_and_exit_2_before_work(
    value: str, message: str, victim_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["unlearn", "--model", str(victim_dir), "--forget", str(victim_dir / PLANTED_FILE)]
    result = CliRunner().invoke(app, [*args, "--output", str(out), "--set", value])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_set_booleans_read_like_yaml() -> None:
    from pii_unlearn.options import parse_set, resolve_options

    options = METHODS["dfsu"].Options
    for text, expected in [("no", False), ("off", False), ("0", False), ("yes", True), ("true", True)]:
        assert resolve_options(options, {}, parse_set([f"lora={text}"], options)).lora is expected

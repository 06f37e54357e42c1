"""The registered methods described for people: ``--list-methods``, the README table, the recipes.

The method classes are the single source of every default; the README's method
table and ``recipes/configs/<method>.yaml`` are generated from them here
(``python -m pii_unlearn.unlearn.catalog --write``), and a test fails when they
drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pii_unlearn.options import Options, default_text, describe_fields, type_name
from pii_unlearn.unlearn.config import GradientOptions, RetainOptions
from pii_unlearn.unlearn.methods import METHODS, Method

#: Marks around the generated method table in the README.
TABLE_START, TABLE_END = "<!-- methods:start -->", "<!-- methods:end -->"
#: Where the per-method recipe configs live, relative to the repository root.
RECIPES_DIR = Path("recipes") / "configs"


def shared_base(options: type[Options]) -> type[Options]:
    """The shared options model a method's options extend (the loop's, the retain set's, or none)."""
    for base in (GradientOptions, RetainOptions):
        if issubclass(options, base):
            return base
    return Options


def own_settings(cls: type[Method]) -> dict[str, str]:
    """The options a method adds to its shared base, or whose default it changes, as text."""
    base = shared_base(cls.Options).model_fields
    out = {}
    for name, info in cls.Options.model_fields.items():
        if name not in base or base[name].default != info.default:
            out[name] = default_text(info.default)
    return out


def describe_method(cls: type[Method]) -> str:
    """A plain-text block for ``unlearn --list-methods``: name, summary, every option."""
    lines = [f"{cls.name}: {cls.summary}"]
    own = own_settings(cls)
    for name, kind, default, description in describe_fields(cls.Options):
        mark = "*" if name in own else " "
        lines.append(f"  {mark} {name} ({kind}, default {default}): {description}")
    return "\n".join(lines)


def methods_listing() -> str:
    """Every registered method, for ``unlearn --list-methods``."""
    blocks = [describe_method(cls) for _, cls in sorted(METHODS.items())]
    note = "(* marks an option the method adds or whose default it sets; set any with --set KEY=VALUE)"
    return "\n\n".join([*blocks, note])


def methods_table() -> str:
    """The README's Markdown table of registered methods."""
    rows = ["| method | what it does | its own options and defaults |", "|---|---|---|"]
    for name, cls in sorted(METHODS.items()):
        own = ", ".join(f"`{k}={v}`" for k, v in own_settings(cls).items()) or "the shared loop's"
        rows.append(f"| `{name}` | {cls.summary} | {own} |")
    return "\n".join(rows)


def recipe_yaml(cls: type[Method]) -> str:
    """A commented YAML config holding every option of ``cls`` at its default."""
    lines = [
        f"# {cls.name}: {cls.summary}",
        "# Generated from the method's options by `python -m pii_unlearn.unlearn.catalog --write`;",
        "# copy it and change what you need. Every key is optional.",
        f"method: {cls.name}",
    ]
    for name, info in cls.Options.model_fields.items():
        value = info.default
        if value is None:
            text = "null"
        elif isinstance(value, str):
            text = value
        elif isinstance(value, list):
            text = "[" + ", ".join(map(str, value)) + "]"
        else:
            text = default_text(value)
        lines.append(f"{name}: {text}  # {type_name(info.annotation)}: {info.description or ''}".rstrip())
    return "\n".join(lines) + "\n"


def readme_with_table(readme: str) -> str:
    """``readme`` with the text between the table marks replaced by :func:`methods_table`."""
    head, sep, rest = readme.partition(TABLE_START)
    _, sep2, tail = rest.partition(TABLE_END)
    if not sep or not sep2:
        raise ValueError(f"README lacks the marks {TABLE_START} ... {TABLE_END}")
    return f"{head}{TABLE_START}\n{methods_table()}\n{TABLE_END}{tail}"


def write(root: Path) -> list[Path]:
    """Regenerate the README table and every recipe config under ``root``; return what changed."""
    changed = []
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = readme_with_table(text)
    if new != text:
        readme.write_text(new, encoding="utf-8")
        changed.append(readme)
    for name, cls in METHODS.items():
        path = root / RECIPES_DIR / f"{name}.yaml"
        body = recipe_yaml(cls)
        if not path.exists() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m pii_unlearn.unlearn.catalog --write  (run in the repository root)")
    for path in write(Path.cwd()):
        print(f"wrote {path}")

"""The imports of ``pii_unlearn`` run one way: down the floors, never up, never sideways.

Every module of the package is parsed (not imported) and each of its imports,
function-level ones included, is mapped to the *unit* it reaches: the first name
under ``pii_unlearn`` (a subpackage such as ``audit`` or a module such as
``lm``; the package's own ``__init__`` is the unit ``pii_unlearn``). A unit may
import from itself and from any unit on a lower floor. Units on the same floor
are siblings and do not import each other: the steps on floor 6 (``invert``,
``unlearn``, ``audit``) each stand on the floors below, so one can change
without the others. Anything shared by siblings moves down a floor.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pii_unlearn

PACKAGE = "pii_unlearn"
ROOT = Path(pii_unlearn.__file__).parent

#: The floors, lowest first. A unit imports only from itself or from a lower floor.
FLOORS: tuple[tuple[str, ...], ...] = (
    # 0: leaves: the version string, error types, entity names, built-in benign text
    ("pii_unlearn", "errors", "entities", "data"),
    # 0.5: reading user YAML safely; typed options and their --set/config parser
    ("safeyaml",),
    ("options",),
    # 1: records, spans, manifests, atomic writes, input and output checks
    ("artifacts",),
    # 2: models: loading and saving checkpoints; generation and log-probabilities
    ("checkpoint", "lm"),
    # 3: PII: detection, token masks and token/span overlap, anonymised twins, fake values
    ("pii",),
    # 4: shared extraction helpers: extraction targets, greedy hits, Min-K%
    ("extraction",),
    # 5: demo data (fake text, the victim model); the risk policy and scores
    ("synth", "risk"),
    # 6: the steps
    ("invert", "unlearn", "audit"),
    # 7: the chain of steps that ``demo`` runs
    ("pipeline",),
    # 8: the command line
    ("cli",),
    # 9: ``python -m pii_unlearn``
    ("__main__",),
)

#: Imports allowed against the rule: (importing module, imported unit) -> why.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("pii_unlearn.audit.metrics", "invert"): (
        "the re-inversion measurement runs the invert step as an attack on the audited model"
    ),
}

FLOOR_OF: dict[str, int] = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def module_name(path: Path) -> str:
    """The dotted module name of a file under :data:`ROOT`."""
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to: ``pii_unlearn.audit.runner`` -> ``audit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The ``pii_unlearn`` modules that ``module`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # ``from pii_unlearn import entities`` imports the module pii_unlearn.entities
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in known else source)
    return found


def import_edges() -> list[tuple[str, str, str]]:
    """Every (importing module, imported module, imported unit) of the package."""
    modules = all_modules()
    known = set(modules)
    return [
        (module, target, unit_of(target))
        for module, path in modules.items()
        for target in sorted(imported_modules(module, path, known))
    ]


def test_every_unit_has_a_floor() -> None:
    units = {unit_of(m) for m in all_modules()}
    missing = sorted(units - set(FLOOR_OF))
    assert not missing, f"give these a floor in FLOORS: {missing}"
    assert not sorted(set(FLOOR_OF) - units), "FLOORS names a unit that no longer exists"


def test_imports_run_down_the_floors() -> None:
    bad = []
    for module, target, unit in import_edges():
        here = unit_of(module)
        if unit == here or FLOOR_OF[unit] < FLOOR_OF[here] or (module, unit) in EXCEPTIONS:
            continue
        way = "up" if FLOOR_OF[unit] > FLOOR_OF[here] else "sideways"
        bad.append(f"{module} imports {target} ({way}: floor {FLOOR_OF[here]} -> {FLOOR_OF[unit]})")
    assert not bad, "imports against the floors:\n" + "\n".join(bad)


def test_exceptions_are_still_needed() -> None:
    used = {(module, unit) for module, _, unit in import_edges()}
    stale = sorted(set(EXCEPTIONS) - used)
    assert not stale, f"these imports are gone: delete their EXCEPTIONS entries: {stale}"


def test_the_walker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    source = (
        "from . import lm\n"
        "from ..artifacts import Record\n"
        "def f():\n"
        "    from pii_unlearn.cli import app\n"
        "    import pii_unlearn.audit.runner\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {"pii_unlearn.pii.lm", "pii_unlearn.artifacts", "pii_unlearn.cli", "pii_unlearn.audit.runner"}
    got = imported_modules("pii_unlearn.pii.mod", path, known)
    assert got == {
        "pii_unlearn.pii.lm",
        "pii_unlearn.artifacts",
        "pii_unlearn.cli",
        "pii_unlearn.audit.runner",
    }

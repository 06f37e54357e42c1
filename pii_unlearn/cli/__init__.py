"""Command-line interface: ``pii-unlearn`` and ``python -m pii_unlearn``.

Each subcommand lives in its own small module here and only parses options,
calls the library and prints; importing this package registers them all.
"""

from __future__ import annotations

from pii_unlearn.cli import audit, demo, detect, invert, risk, unlearn, victim  # noqa: F401  (registers subcommands)
from pii_unlearn.cli.app import app, run


def main() -> None:
    """Entry point of the console script: exit codes as :mod:`pii_unlearn.errors` lists them."""
    raise SystemExit(run())


__all__ = ["app", "main", "run"]

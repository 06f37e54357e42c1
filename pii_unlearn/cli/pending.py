"""Subcommands whose implementation has not landed yet: each says so and exits 2."""

from __future__ import annotations

from pii_unlearn.cli.app import command
from pii_unlearn.errors import NotBuiltError

_PENDING: dict[str, str] = {}


def _register(name: str, summary: str) -> None:
    def pending() -> None:
        raise NotBuiltError(f"'{name}' is not built yet")

    pending.__doc__ = f"{summary} [not built yet]"
    command(name)(pending)


for _name, _summary in _PENDING.items():
    _register(_name, _summary)

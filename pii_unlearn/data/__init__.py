"""Built-in offline text: benign paragraphs used for utility checks and retain terms."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def benign_texts() -> tuple[str, ...]:
    """The built-in benign paragraphs (no PII), one per non-empty line of ``benign.txt``."""
    raw = files(__package__).joinpath("benign.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in raw.splitlines() if line.strip() and not line.startswith("#"))

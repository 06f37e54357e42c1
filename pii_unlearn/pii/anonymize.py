"""Anonymised and faked twins of a text: each PII span replaced by its type, or by a fake value.

:func:`replace_spans` is the one span substitution every step uses.
``anonymized_text`` writes ``<ENTITY_TYPE>`` in place of each span (``detect --anonymize``);
``faked_text`` writes a Faker value of the same type (``detect --fake``, DPO pairs).
A :class:`Faker` seeded once makes the fakes deterministic per seed; passing the
same ``memo`` across texts maps one original value to one fake everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from faker import Faker

from pii_unlearn.pii.fakes import fake_value


def _field(span: Any, key: str) -> Any:
    return span[key] if isinstance(span, Mapping) else getattr(span, key)


def replace_spans(text: str, spans: Sequence[Any], replacement: Callable[[Any], str]) -> str:
    """``text`` with each span (objects or dicts with start/end) replaced by ``replacement(span)``.

    Spans are taken in order of start; a span overlapping an earlier one is left out.
    """
    out: list[str] = []
    pos = 0
    for span in sorted(spans, key=lambda s: _field(s, "start")):
        start, end = _field(span, "start"), _field(span, "end")
        if start < pos:
            continue  # overlapping spans: the first one wins
        out.append(text[pos:start])
        out.append(replacement(span))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def placeholder(entity_type: str) -> str:
    """The placeholder an anonymised span becomes: ``<ENTITY_TYPE>``."""
    return f"<{entity_type}>"


def anonymized_text(text: str, spans: Sequence[Any]) -> str:
    """``text`` with each span replaced by ``<ENTITY_TYPE>`` (overlaps: the earlier span wins)."""
    return replace_spans(text, spans, lambda s: placeholder(_field(s, "entity_type")))


def faked_text(
    text: str,
    spans: Sequence[Any],
    fake: Faker,
    memo: dict[tuple[str, str], str] | None = None,
) -> str:
    """``text`` with each span replaced by a fake value of its type, drawn from ``fake``.

    With ``memo`` (a dict kept across calls), the same original value of the same
    type always gets the same fake, and a fake never equals its original.
    """
    cache = memo if memo is not None else {}

    def replacement(span: Any) -> str:
        kind = _field(span, "entity_type")
        original = text[_field(span, "start") : _field(span, "end")]
        key = (kind, original)
        if key not in cache:
            value = fake_value(fake, kind)
            for _ in range(5):
                if value != original:
                    break
                value = fake_value(fake, kind)
            cache[key] = value
        return cache[key]

    return replace_spans(text, spans, replacement)

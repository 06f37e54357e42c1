"""Anonymised and faked twins of a text: each PII span replaced by its type, or by a fake value.

:func:`replace_spans` is the one span substitution every step uses.
``anonymized_text`` writes ``<ENTITY_TYPE>`` in place of each span (``detect --anonymize``);
``faked_text`` writes a Faker value of the same type (``detect --fake``, DPO pairs).
A :class:`Faker` seeded once makes the fakes deterministic per seed; passing the
same ``memo`` across texts maps one original value to one fake everywhere.
"""

from __future__ import annotations

import re
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


#: What :func:`masked_preview` writes for a run of words it does not show.
HIDDEN = "***"
#: A word a masked preview may show: letters only, inside apostrophes or hyphens allowed.
_SHOWN_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_EDGE_PUNCT = ",.;:!?()[]\"'’“”"


def _shown(token: str, glued: bool) -> str:
    """A word of text no span covers as a masked preview shows it: itself or :data:`HIDDEN`."""
    core = token.strip(_EDGE_PUNCT)
    if not core:
        return token if all(ch in _EDGE_PUNCT for ch in token) else HIDDEN
    if glued or not _SHOWN_WORD.fullmatch(core) or (core[0].isupper() and core != "I"):
        return HIDDEN  # digits, @, inner dots or slashes, symbols, a fragment of a span, a name?
    return token


def _preview_segment(segment: str, glued_left: bool, glued_right: bool) -> str:
    """A stretch of text no span covers with each word shown or hidden, spacing kept.

    ``glued_left``/``glued_right``: a span touches the stretch with no space between,
    so the first/last word may be a fragment of it (``.com`` after an e-mail span).
    """
    tokens = list(re.finditer(r"\S+", segment))

    def one(m: re.Match[str]) -> str:
        glued = (m.start() == 0 and glued_left) or (m.end() == len(segment) and glued_right)
        return _shown(m.group(), glued)

    return (
        "".join(segment[(tokens[i - 1].end() if i else 0) : m.start()] + one(m) for i, m in enumerate(tokens))
        + segment[tokens[-1].end() if tokens else 0 :]
    )


_HIDDEN_RUN = re.compile(re.escape(HIDDEN) + r"(?:\s*" + re.escape(HIDDEN) + ")+")


def masked_preview(text: str, spans: Sequence[Any], tag: Callable[[Any], str]) -> str:
    """A one-line preview of ``text`` that shows no PII, even PII the detector missed.

    Spans become ``<TAG>`` (``tag(span)``). Of the rest, only lower-case words made
    of letters are shown: any word with a digit, ``@``, an inner dot, slash or other
    symbol (a fragment of a phone number, e-mail address or URL), any word touching
    a span, and any capitalised word (a name NER missed, or a sentence's first word)
    becomes :data:`HIDDEN`, a run of hidden words one :data:`HIDDEN`.
    """
    parts: list[str] = []
    pos = 0
    for span in sorted(spans, key=lambda s: _field(s, "start")):
        start, end = _field(span, "start"), _field(span, "end")
        if start < pos:
            continue
        parts.append(_preview_segment(text[pos:start], pos > 0, True))
        parts.append(f"<{tag(span)}>")
        pos = end
    parts.append(_preview_segment(text[pos:], pos > 0, False))
    return _HIDDEN_RUN.sub(HIDDEN, " ".join("".join(parts).split()))


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

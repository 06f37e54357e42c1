"""Typed options: one parser for ``--set KEY=VALUE`` and YAML config layers, validated by pydantic.

Every configurable piece of the tool (an unlearning method, an inversion
strategy) owns a pydantic model of its options with ``extra="forbid"``; the
model is the single source of their defaults. :func:`resolve_options` merges,
lowest first, the model's defaults, a config file's mapping and ``--set``
overrides, and turns any problem (unknown key, wrong type, out-of-range value)
into one :class:`~pii_unlearn.errors.InputError` line naming where the bad
value came from.

``--set`` values are strings; they are converted by the field's type the same
way for every subcommand: booleans accept true/false, yes/no, on/off, 1/0;
``none``/``null``/empty is ``None`` where the field allows it; list fields take
comma-separated items.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo

from pii_unlearn.errors import InputError
from pii_unlearn.safeyaml import load_yaml

M = TypeVar("M", bound=BaseModel)

#: Longest piece of a user's value quoted back in an error message.
MAX_QUOTED = 40


class Options(BaseModel):
    """Base of every options model: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def with_defaults(base: type[M], name: str, doc: str | None = None, **defaults: Any) -> type[M]:
    """A subclass of ``base`` whose named fields default to other values (types and bounds kept)."""
    fields: dict[str, Any] = {}
    for key, value in defaults.items():
        if key not in base.model_fields:
            raise KeyError(f"{base.__name__} has no field {key!r}")
        info = base.model_fields[key]
        fields[key] = (info.annotation, FieldInfo.merge_field_infos(info, default=value))
    model = create_model(name, __base__=base, __doc__=doc or base.__doc__, **fields)
    return model


def _quote(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "...")


def _allows_none(annotation: Any) -> bool:
    return annotation is None or type(None) in typing.get_args(annotation)


def _is_list(annotation: Any) -> bool:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) in (list, tuple, set, frozenset):
            return True
    return False


def parse_set(pairs: Sequence[str], model: type[BaseModel]) -> dict[str, Any]:
    """``["lr=1e-4", "lora=no"]`` -> ``{"lr": "1e-4", "lora": "no"}``, keys checked against ``model``.

    Dashes in keys are read as underscores. Values stay strings except ``None`` and
    comma-split lists; :func:`resolve_options` converts and validates them.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"--set {_quote(pair)}: expected KEY=VALUE")
        field = model.model_fields.get(key)
        if field is None:
            known = ", ".join(sorted(model.model_fields))
            raise InputError(f"--set {key}: unknown option (known: {known})")
        value = value.strip()
        if value.lower() in ("", "none", "null") and _allows_none(field.annotation):
            out[key] = None
        elif _is_list(field.annotation):
            out[key] = [item.strip() for item in value.split(",") if item.strip()]
        else:
            out[key] = value
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of options from ``path`` (a clear error for a missing or malformed file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not valid UTF-8 ({err.reason})") from None
    data = load_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    return data


def _first_error(err: ValidationError) -> tuple[str, str, Any]:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "options"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown option"
    return key, message, first.get("input")


def resolve_options(
    model: type[M],
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    where: str = "config",
) -> M:
    """``model`` validated from its defaults, then ``file_values`` (from ``where``), then ``overrides``.

    An error names the key and its source: ``--set top_k: Input should be a valid
    integer (got 'abc')`` or ``dfsu.yaml: lr: Input should be greater than 0``.
    """
    file_values = dict(file_values or {})
    overrides = dict(overrides or {})
    try:
        return model(**{**file_values, **overrides})
    except ValidationError as err:
        key, message, given = _first_error(err)
        source = "--set" if key.split(".")[0] in overrides else where
        known = ""
        if message == "unknown option":
            known = f" (known: {', '.join(sorted(model.model_fields))})"
        got = "" if message == "unknown option" or isinstance(given, dict) else f" (got {_quote(given)})"
        sep = " " if source == "--set" else ": "
        raise InputError(f"{source}{sep}{key}: {message}{got}{known}") from None


def describe_fields(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, description)`` for each field of ``model``, in declaration order."""
    rows = []
    for name, info in model.model_fields.items():
        rows.append((name, type_name(info.annotation), default_text(info.default), info.description or ""))
    return rows


def type_name(annotation: Any) -> str:
    """A short readable name of a field's type (``float``, ``int | None``, ``list[str]``, ``a|b``)."""
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    return str(annotation).replace("typing.", "")


def default_text(value: Any) -> str:
    """A field default as a user would type it on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)

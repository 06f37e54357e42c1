"""The files that flow between subcommands: JSONL records and their sidecar manifests.

Every subcommand reads and writes records through this module, so that

* a record is validated the same way everywhere (``id``, ``text``, ``spans``),
  and a bad line is reported as ``file:line: what is wrong``;
* fields a step does not know are carried through untouched, in order;
* output is written atomically (temp file in the same folder, then rename), with
  mode 0600 because these files hold PII, and never half-written;
* each output gets a sidecar ``<file>.manifest.json`` saying what made it: tool
  version, command line, each input's path and sha256, seed and timings. The
  command line is the process's own, unless a library caller running a step
  says which ``pii-unlearn`` command it is equivalent to (:func:`recorded_command`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pii_unlearn import __version__
from pii_unlearn.errors import InputError

#: File mode for everything this tool writes that may hold PII.
PII_FILE_MODE = 0o600
#: Suffix of the sidecar manifest written next to every output file.
MANIFEST_SUFFIX = ".manifest.json"
#: Name of the manifest inside an output directory (checkpoints, reports).
DIR_MANIFEST_NAME = "pii_unlearn_manifest.json"


class Span(BaseModel):
    """A PII span: character offsets ``[start, end)`` into the record's text."""

    model_config = ConfigDict(extra="allow")

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    entity_type: str = Field(min_length=1)
    score: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Span:
        if self.end <= self.start:
            raise ValueError(f"span end ({self.end}) must be greater than start ({self.start})")
        return self


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """Whether half-open intervals ``[a_start, a_end)`` and ``[b_start, b_end)`` share a character."""
    return a_start < b_end and b_start < a_end


class Record(BaseModel):
    """One JSONL line: an id, a text, its PII spans, and any other fields kept as they are."""

    model_config = ConfigDict(extra="allow")

    id: str | int
    text: str
    spans: list[Span] = Field(default_factory=list)

    @model_validator(mode="after")
    def _spans_inside_text(self) -> Record:
        for span in self.spans:
            if span.end > len(self.text):
                raise ValueError(
                    f"span [{span.start}, {span.end}) runs past the end of text (length {len(self.text)})"
                )
        return self

    def span_text(self, span: Span) -> str:
        """The characters of ``text`` that ``span`` covers."""
        return self.text[span.start : span.end]

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, unknown fields included, ``None`` fields kept."""
        return self.model_dump(mode="json")


def _format_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


def parse_record(obj: Any, *, text_field: str = "text", where: str = "") -> Record:
    """Validate one decoded JSON value as a :class:`Record`.

    ``text_field`` names the field holding the text when it is not ``text``; the
    value is then also available as ``record.text``. A record without ``id``
    gets none here: :func:`read_records` numbers them by line.
    """
    if not isinstance(obj, dict):
        raise InputError(f"{where}expected a JSON object, got {type(obj).__name__}")
    if text_field != "text":
        if text_field not in obj:
            raise InputError(f"{where}missing field '{text_field}'")
        obj = {**obj, "text": obj[text_field]}
    if "text" not in obj:
        raise InputError(f"{where}missing field 'text'")
    try:
        return Record.model_validate(obj)
    except ValidationError as err:
        raise InputError(f"{where}{_format_validation_error(err)}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def _refuse_lone_surrogates(obj: Any, where: str) -> None:
    """A lone UTF-16 surrogate (``\\ud800``) decodes in JSON but cannot be written back as UTF-8."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}holds a lone Unicode surrogate escape (not a character)") from None


def iter_records(path: str | Path, *, text_field: str = "text") -> Iterator[Record]:
    """Yield the records of a JSONL file in order; blank lines are skipped.

    Records without an ``id`` are given their 1-based line number. Errors name
    ``file:line``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a JSONL file")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}: "
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{where}not valid UTF-8 ({err.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=_refuse_constant)
            except json.JSONDecodeError as err:
                raise InputError(f"{where}invalid JSON ({err.msg})") from None
            except ValueError as err:
                raise InputError(f"{where}{err}") from None
            if "\\u" in line:
                _refuse_lone_surrogates(obj, where)
            if isinstance(obj, dict) and "id" not in obj:
                obj = {"id": lineno, **obj}
            yield parse_record(obj, text_field=text_field, where=where)


def read_records(path: str | Path, *, text_field: str = "text", allow_empty: bool = False) -> list[Record]:
    """Read every record of a JSONL file; an empty file is an error unless allowed."""
    records = list(iter_records(path, text_field=text_field))
    if not records and not allow_empty:
        raise InputError(f"{path}: no records (the file is empty)")
    return records


def sha256_file(path: str | Path) -> str | None:
    """Hex sha256 of a file's bytes (of every file, sorted by name, for a directory).

    ``None`` for something that is neither (a pipe, a device): reading it again
    would hash other bytes than the step read, or block.
    """
    path = Path(path)
    if not (path.is_dir() or path.is_file()):
        return None
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


#: The command line manifests record inside :func:`recorded_command` (``None``: ``sys.argv``).
_RECORDED_COMMAND: ContextVar[tuple[str, ...] | None] = ContextVar("recorded_command", default=None)


@contextlib.contextmanager
def recorded_command(argv: Sequence[str]) -> Iterator[None]:
    """Manifests made inside this block record ``argv`` as their command instead of ``sys.argv``.

    For library callers that run a step in process (the pipeline): ``argv`` is the
    equivalent command line, e.g. ``["pii-unlearn", "detect", "--input", ...]``.
    """
    token = _RECORDED_COMMAND.set(tuple(argv))
    try:
        yield
    finally:
        _RECORDED_COMMAND.reset(token)


def current_command() -> list[str]:
    """The command line a manifest made now records (see :func:`recorded_command`)."""
    recorded = _RECORDED_COMMAND.get()
    return list(recorded) if recorded is not None else list(sys.argv)


class Manifest(BaseModel):
    """What made an output: enough to reproduce it and to trust where it came from."""

    model_config = ConfigDict(extra="allow")

    tool: str = "pii-unlearn"
    version: str = __version__
    command: list[str] = Field(default_factory=current_command)
    created: str = Field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    inputs: list[dict[str, str | None]] = Field(default_factory=list)
    seed: int | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)

    def add_input(self, path: str | Path, role: str = "input") -> None:
        """Record an input file or directory with its sha256."""
        self.inputs.append({"role": role, "path": str(path), "sha256": sha256_file(path)})


class Timer:
    """Collects named wall-clock timings for a manifest: ``with timer("load"): ...``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)


def _absolute(path: str | Path) -> Path:
    """``path`` made absolute with symlinks resolved where they exist (no error if it does not)."""
    return Path(os.path.abspath(Path(path).expanduser())).resolve(strict=False)


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output(
    path: str | Path,
    *,
    inputs: Iterable[str | Path | None] = (),
    folder: bool = False,
    marker: str | None = None,
    kind: str = "an output of pii-unlearn",
    overwrite: bool = False,
) -> Path:
    """The one output policy, checked before any work; every problem is an :class:`InputError` line.

    An output may not be an input, hold an input (a folder to be replaced that
    contains one) or sit inside an input folder (a checkpoint). An existing output
    must be a regular file (never a device, pipe or socket: ``--output /dev/null``
    would otherwise be replaced by a file), or, for a ``folder``, one that is empty
    or that pii-unlearn wrote (it holds ``marker``); another folder is replaced only
    with ``overwrite``. The parent folder must exist and be writable.
    """
    out = Path(path)
    target = _absolute(out)
    for given in inputs:
        if given is None:
            continue
        source = _absolute(given)
        if target == source:
            raise InputError(f"{out}: is also an input; choose another output path")
        if _inside(source, target):
            raise InputError(f"{out}: holds the input {given}; writing here would delete it")
        if Path(given).is_dir() and _inside(target, source):
            raise InputError(f"{out}: is inside the input folder {given}; write outside it")
    if out.exists() or out.is_symlink():
        if folder:
            if not out.is_dir():
                raise InputError(f"{out}: exists and is not a directory")
            ours = marker is not None and (out / marker).is_file()
            if not overwrite and not ours and any(out.iterdir()):
                raise InputError(
                    f"{out}: exists, is not empty and is not {kind} written by pii-unlearn; "
                    "choose a new folder (or pass --overwrite to replace it)"
                )
        elif out.is_dir():
            raise InputError(f"{out}: is a directory, expected a file path")
        elif not out.is_file():
            raise InputError(
                f"{out}: is not a regular file (a device, pipe or socket); refusing to replace it"
            )
    parent = target.parent
    if not parent.is_dir():
        raise InputError(f"{out.parent}: output folder does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{out.parent}: cannot write in this folder")
    clean_stale_temps(target)
    return out


def _temp_prefix(path: Path) -> str:
    """Temp names beside ``path`` carry the writer's pid, so a later run can tell a dead writer's."""
    return f".{path.name}.{os.getpid()}."


def clean_stale_temps(path: str | Path) -> list[Path]:
    """Remove temp files/folders beside ``path`` left by a writer that is gone (killed mid-write)."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\..*\.tmp$")
    for item in path.parent.iterdir():
        match = pattern.match(item.name)
        if not match or _alive(int(match.group(1))):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                item.unlink()
        removed.append(item)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: int = PII_FILE_MODE) -> Iterator[Any]:
    """Open a temp file next to ``path`` for text writing; rename it over ``path`` on success.

    On any exception the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` (mode 0700, files 0600).

    On any exception the temp folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for item in tmp.rglob("*"):
            item.chmod(0o700 if item.is_dir() else PII_FILE_MODE)
        tmp.chmod(0o700)
        if path.exists():
            backup = path.with_name(_temp_prefix(path) + "old.tmp")
            shutil.rmtree(backup, ignore_errors=True)
            path.rename(backup)
            tmp.rename(path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, obj: Any, mode: int = PII_FILE_MODE) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    with atomic_writer(path, mode) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")
    return Path(path)


def manifest_path(path: str | Path) -> Path:
    """Where the sidecar manifest of an output file lives."""
    path = Path(path)
    return path.with_name(path.name + MANIFEST_SUFFIX)


def record_line(rec: Record | dict[str, Any]) -> str:
    """One record as a JSONL line (with its newline)."""
    obj = rec.to_json() if isinstance(rec, Record) else rec
    return json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n"


def write_records(
    path: str | Path,
    records: Iterable[Record | dict[str, Any]],
    manifest: Manifest | None = None,
) -> Path:
    """Atomically write records as JSONL (mode 0600) and, if given, the sidecar manifest."""
    path = Path(path)
    count = 0
    with atomic_writer(path) as fh:
        for rec in records:
            fh.write(record_line(rec))
            count += 1
    if manifest is not None:
        manifest.settings.setdefault("records_written", count)
        write_json(manifest_path(path), manifest.model_dump(mode="json"))
    return path


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The sidecar manifest of ``path`` (a file) or the manifest inside ``path`` (a folder)."""
    path = Path(path)
    target = path / DIR_MANIFEST_NAME if path.is_dir() else manifest_path(path)
    if not target.exists():
        return None
    return json.loads(target.read_text(encoding="utf-8"))

"""Tests for the artifact layer: record validation, JSONL I/O, atomic writes, manifests."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pii_unlearn.artifacts import (
    Manifest,
    Record,
    atomic_writer,
    check_output,
    manifest_path,
    read_manifest,
    read_records,
    recorded_command,
    sha256_file,
    write_records,
)
from pii_unlearn.errors import InputError


def _write(path: Path, lines: list[str] | bytes) -> Path:
    if isinstance(lines, bytes):
        path.write_bytes(lines)
    else:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_round_trip_keeps_unknown_fields_and_order(tmp_path: Path) -> None:
    rows = [
        {
            "id": "b",
            "text": "Call Ann at 555-123-4567",
            "spans": [{"start": 5, "end": 8, "entity_type": "PERSON", "score": 0.9, "recognizer": "x"}],
            "meta": {"source": "crm", "n": [1, 2]},
        },
        {"id": "a", "text": "nothing here", "extra": None},
    ]
    src = _write(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    records = read_records(src)
    assert [r.id for r in records] == ["b", "a"]
    assert records[0].span_text(records[0].spans[0]) == "Ann"
    out = tmp_path / "out.jsonl"
    manifest = Manifest(seed=7)
    manifest.add_input(src)
    write_records(out, records, manifest)
    back = [json.loads(line) for line in out.read_text().splitlines()]
    assert back[0]["meta"] == {"source": "crm", "n": [1, 2]}
    assert back[0]["spans"][0]["recognizer"] == "x"
    assert back[1]["extra"] is None
    assert back[1]["spans"] == []
    side = read_manifest(out)
    assert side is not None
    assert side["seed"] == 7
    assert side["inputs"][0]["sha256"] == sha256_file(src)
    assert side["version"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(manifest_path(out).stat().st_mode) == 0o600


def test_missing_id_gets_line_number_and_text_field(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.jsonl", ['{"body": "hi"}', "", '{"body": "there"}'])
    records = read_records(src, text_field="body")
    assert [r.id for r in records] == [1, 3]
    assert records[1].text == "there"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (['{"id": 1, "text": "ok"}', "{not json"], "in.jsonl:2: invalid JSON"),
        (['{"id": 1}'], "in.jsonl:1: missing field 'text'"),
        (["[1, 2]"], "in.jsonl:1: expected a JSON object"),
        (
            ['{"id": 1, "text": "abc", "spans": [{"start": 2, "end": 1, "entity_type": "X"}]}'],
            "in.jsonl:1: spans.0",
        ),
        (
            ['{"id": 1, "text": "abc", "spans": [{"start": 0, "end": 9, "entity_type": "X"}]}'],
            "runs past the end of text",
        ),
        (['{"id": 1, "text": "abc", "spans": [{"start": 0, "end": 2}]}'], "entity_type"),
        (b'{"id": 1, "text": "caf\xe9"}\n', "in.jsonl:1: not valid UTF-8"),
        ([""], "no records"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, content: list[str] | bytes, expected: str) -> None:
    src = _write(tmp_path / "in.jsonl", content)
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace("[", r"\[")):
        read_records(src)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        read_records(tmp_path)


def test_output_folder_check(tmp_path: Path) -> None:
    def check(path: Path, **kw: object) -> Path:
        return check_output(path, folder=True, marker="done.json", kind="a report", **kw)

    assert check(tmp_path / "new") == tmp_path / "new"
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "done.json").write_text("{}")
    check(earlier)  # an earlier output: replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not empty and is not a report written by pii-unlearn"):
        check(tmp_path / "other")
    check(tmp_path / "other", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        check(tmp_path / "file")
    with pytest.raises(InputError, match="output folder does not exist"):
        check(tmp_path / "no" / "out")


def test_output_policy_protects_inputs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = run / "checkpoint-5"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hi")
    cases = [
        (run, [ckpt], True, "holds the input"),  # the Trainer layout: --model run/checkpoint-5 --output run
        (ckpt, [ckpt], True, "is also an input"),
        (ckpt / "clean", [ckpt], True, "is inside the input folder"),
        (ckpt / "x.jsonl", [ckpt], False, "is inside the input folder"),
        (prompts, [ckpt, prompts], False, "is also an input"),
        (ckpt / "tokenizer.json", [ckpt], False, "is inside the input folder"),
    ]
    for out, inputs, folder, message in cases:
        with pytest.raises(InputError, match=message):
            check_output(out, inputs=inputs, folder=folder, marker="done.json", overwrite=True)
    # a file input inside an output folder: replacing the folder would delete it
    (tmp_path / "out").mkdir()
    forget = tmp_path / "out" / "forget.jsonl"
    forget.write_text("{}")
    with pytest.raises(InputError, match="holds the input"):
        check_output(tmp_path / "out", inputs=[forget], folder=True, overwrite=True)
    # a symlink to an input is the input
    link = tmp_path / "link.txt"
    link.symlink_to(prompts)
    with pytest.raises(InputError, match="is also an input"):
        check_output(link, inputs=[prompts])


def test_output_policy_refuses_devices_and_pipes(tmp_path: Path) -> None:
    import os

    with pytest.raises(InputError, match="not a regular file"):
        check_output("/dev/null")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        check_output(fifo)


def test_stale_temps_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".out.jsonl.{pid}.abc.tmp"
    stale.write_text("half")
    stale_dir = tmp_path / f".clean.{pid}.xyz.tmp"
    stale_dir.mkdir()
    mine = tmp_path / f".out.jsonl.{os.getpid()}.def.tmp"  # a live writer's: kept
    mine.write_text("busy")
    check_output(tmp_path / "out.jsonl")
    check_output(tmp_path / "clean", folder=True)
    assert not stale.exists() and not stale_dir.exists() and mine.exists()


def test_atomic_write_leaves_original_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("original\n")

    def bad_records():
        yield Record(id=1, text="x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_records(target, bad_records())
    assert target.read_text() == "original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_atomic_writer_mode(tmp_path: Path) -> None:
    with atomic_writer(tmp_path / "f.txt", mode=0o644) as fh:
        fh.write("x")
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_sha256_of_directory_changes_with_content(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_text("1")
    first = sha256_file(d)
    (d / "a").write_text("2")
    assert sha256_file(d) != first


def test_recorded_command_overrides_the_manifest_command_inside_its_block() -> None:
    import sys

    assert Manifest().command == sys.argv
    with recorded_command(["pii-unlearn", "detect", "--input", "a.jsonl"]):
        assert Manifest().command == ["pii-unlearn", "detect", "--input", "a.jsonl"]
        with recorded_command(["pii-unlearn", "risk-score"]):
            assert Manifest().command == ["pii-unlearn", "risk-score"]
        assert Manifest().command[1] == "detect"
    assert Manifest().command == sys.argv
    assert Manifest(command=["x"]).command == ["x"]

"""A table of hostile inputs across every subcommand: each is one stderr line, exit 2, no traceback,
nothing written, and every input byte-identical afterwards.

Each case is ``(argv, message)``; ``{v}`` is the session victim checkpoint, ``{w}`` a fresh
work folder holding the files :func:`workspace` writes. The victim and the work folder are
hashed before and after each case.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from pii_unlearn.cli import run
from pii_unlearn.errors import EXIT_USAGE
from pii_unlearn.synth.victim import PLANTED_FILE

LAUGHS = (
    "a: &a ["
    + ",".join(['"lol"'] * 9)
    + "]\n"
    + "".join(
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def workspace(root: Path, victim: Path) -> None:
    """The files the cases read: good and bad JSONL, policies, configs, a Trainer-style run folder."""
    planted = (victim / PLANTED_FILE).read_text(encoding="utf-8")
    (root / "good.jsonl").write_text(planted, encoding="utf-8")
    (root / "empty.jsonl").write_text("", encoding="utf-8")
    (root / "badjson.jsonl").write_text('{"id": 1, "text": "x"}\n{not json\n', encoding="utf-8")
    (root / "nan.jsonl").write_text(
        '{"id":1,"text":"call 555-123-4567","spans":[{"start":5,"end":17,"entity_type":"PHONE_NUMBER",'
        '"score":NaN}]}\n',
        encoding="utf-8",
    )
    (root / "surrogate.jsonl").write_text('{"id":1,"text":"hi \\ud800","spans":[]}\n', encoding="utf-8")
    (root / "badspan.jsonl").write_text(
        '{"id":1,"text":"short","spans":[{"start":2,"end":99,"entity_type":"PERSON"}]}\n', encoding="utf-8"
    )
    (root / "notutf8.jsonl").write_bytes(b'{"id":1,"text":"\xff\xfe"}\n')
    (root / "bomb.yaml").write_text(LAUGHS, encoding="utf-8")
    (root / "dup.yaml").write_text("lr: 1\nlr: 2\n", encoding="utf-8")
    (root / "ga.yaml").write_text("method: ga\nlr: 0.001\n", encoding="utf-8")
    (root / "badlr.yaml").write_text("lr: -1\n", encoding="utf-8")
    (root / "tag.yaml").write_text("lr: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    (root / "policy-bad.yaml").write_text("name: x\ntypes:\n  ssn:\n    ratings: {sensitivity: 9}\n")
    (root / "prompts.txt").write_text("My name is\n", encoding="utf-8")
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("mine", encoding="utf-8")
    (root / "holder").mkdir()
    (root / "holder" / "forget.jsonl").write_text(planted, encoding="utf-8")
    (root / "report").mkdir()
    (root / "report" / "report.json").write_text("{}", encoding="utf-8")
    (root / "report" / "records.jsonl").write_text(planted, encoding="utf-8")
    shutil.copytree(victim, root / "run" / "checkpoint-5")
    corrupt = root / "corrupt"
    shutil.copytree(victim, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:512])
    (root / "afile").write_text("x", encoding="utf-8")
    os.mkfifo(root / "pipe")


D, INV, R, U, A = "detect", "invert", "risk-score", "unlearn", "audit"
CASES: list[tuple[list[str], str]] = [
    # detect
    ([D, "--input", "{w}/missing.jsonl", "--output", "{w}/o.jsonl"], "no such file"),
    ([D, "--input", "{w}", "--output", "{w}/o.jsonl"], "inside the input folder"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{w}/good.jsonl"], "is also an input"),
    ([D, "--input", "{w}/good.jsonl", "--output", "/dev/null"], "not a regular file"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{w}/pipe"], "not a regular file"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{v}/x.jsonl", "--tokenizer", "{v}"], "inside the input"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{v}/tokenizer.json", "--tokenizer", "{v}"], "inside"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{w}/no/such/o.jsonl"], "does not exist"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{w}/foreign"], "is a directory"),
    ([D, "--input", "{w}/badjson.jsonl", "--output", "{w}/o.jsonl"], "badjson.jsonl:2: invalid JSON"),
    ([D, "--input", "{w}/nan.jsonl", "--output", "{w}/o.jsonl"], "NaN is not valid JSON"),
    ([D, "--input", "{w}/surrogate.jsonl", "--output", "{w}/o.jsonl"], "lone Unicode surrogate"),
    ([D, "--input", "{w}/badspan.jsonl", "--output", "{w}/o.jsonl"], "runs past the end of text"),
    ([D, "--input", "{w}/notutf8.jsonl", "--output", "{w}/o.jsonl"], "not valid UTF-8"),
    ([D, "--input", "{w}/empty.jsonl", "--output", "{w}/o.jsonl"], "no records"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--tokenizer", "{w}/nope"], "no such"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--threshold", "7"], "threshold"),
    ([D, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--entities", "NOT_A_TYPE"], "NOT_A_TYPE"),
    # risk-score
    ([R, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--policy", "{w}/nope.yaml"], "no such"),
    ([R, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--policy", "{w}/bomb.yaml"], "aliases"),
    ([R, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--policy", "{w}/dup.yaml"], "duplicate"),
    ([R, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--policy", "{w}/policy-bad.yaml"], None),
    ([R, "--input", "{w}/good.jsonl", "--output", "{w}/good.jsonl"], "is also an input"),
    ([R, "--input", "{w}/good.jsonl", "--output", "{w}/bomb.yaml", "--policy", "{w}/bomb.yaml"], None),
    ([R, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--top", "0"], None),
    ([R, "--input", "{w}/good.jsonl", "--output", "{w}/o.jsonl", "--sort", "sideways"], None),
    ([R, "--input", "{w}/nan.jsonl", "--output", "{w}/o.jsonl"], "NaN"),
    ([R, "--input", "{w}/good.jsonl", "--output", "/dev/null"], "not a regular file"),
    # invert
    ([INV, "--model", "{v}", "--output", "{w}/o.jsonl", "--set", "top_k=abc"], "--set top_k"),
    ([INV, "--model", "{v}", "--output", "{w}/o.jsonl", "--set", "foo=1"], "--set foo: unknown option"),
    ([INV, "--model", "{v}", "--output", "{w}/o.jsonl", "--set", "refine=maybe"], "valid boolean"),
    ([INV, "--model", "{v}", "--output", "{w}/o.jsonl", "--strategy", "nope"], "nope"),
    ([INV, "--model", "{v}", "--output", "{w}/o.jsonl", "--strategy", "logit-inverter"], "unknown"),
    ([INV, "--model", "{w}/nope", "--output", "{w}/o.jsonl"], "no such checkpoint"),
    ([INV, "--model", "{w}/good.jsonl", "--output", "{w}/o.jsonl"], "checkpoint"),
    (
        [INV, "--model", "{v}", "--output", "{w}/prompts.txt", "--prompts", "{w}/prompts.txt"],
        "is also an input",
    ),
    ([INV, "--model", "{v}", "--output", "{w}/o.jsonl", "--prompts", "{w}/nope.txt"], "no such prompts file"),
    ([INV, "--model", "{v}", "--output", "{v}/o.jsonl"], "inside the input folder"),
    ([INV, "--model", "{w}/corrupt", "--output", "{w}/o.jsonl"], "cannot load model"),
    ([INV, "--model", "{v}", "--output", "{w}/o.jsonl", "--device", "foo"], "device 'foo'"),
    ([INV, "--model", "{v}", "--output", "/dev/null"], "not a regular file"),
    # unlearn
    ([U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--method", "magic"], "magic"),
    (
        [U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--set", "lr=oops"],
        "--set lr",
    ),
    ([U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--set", "max_steps=0"], None),
    ([U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--set", "nonsense=1"], None),
    (
        [U, "--model", "{w}/run/checkpoint-5", "--forget", "{w}/good.jsonl", "--output", "{w}/run"],
        "holds the",
    ),
    ([U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{v}"], "is also an input"),
    ([U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{v}/clean"], "inside the input folder"),
    (
        [U, "--model", "{v}", "--forget", "{w}/holder/forget.jsonl", "--output", "{w}/holder"],
        "holds the input",
    ),
    ([U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/foreign"], "--overwrite"),
    ([U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/afile"], "not a directory"),
    (
        [U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--config", "{w}/nope.yaml"],
        None,
    ),
    (
        [U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--config", "{w}/bomb.yaml"],
        None,
    ),
    (
        [U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--config", "{w}/ga.yaml"],
        None,
    ),
    (
        [
            U,
            "--model",
            "{v}",
            "--forget",
            "{w}/good.jsonl",
            "--output",
            "{w}/o",
            "--config",
            "{w}/badlr.yaml",
        ],
        None,
    ),
    (
        [U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--config", "{w}/tag.yaml"],
        None,
    ),
    ([U, "--model", "{v}", "--forget", "{w}/empty.jsonl", "--output", "{w}/o"], "empty"),
    (
        [
            U,
            "--model",
            "{v}",
            "--forget",
            "{w}/good.jsonl",
            "--output",
            "{w}/o",
            "--method",
            "nspu",
            "--full",
        ],
        None,
    ),
    (
        [U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--full", "--save-adapter"],
        None,
    ),
    ([U, "--model", "{v}", "--forget", "{w}/good.jsonl", "--output", "{w}/o", "--device", "foo"], "device"),
    ([U, "--model", "{w}/corrupt", "--forget", "{w}/good.jsonl", "--output", "{w}/o"], "cannot load model"),
    # audit
    (
        [A, "--model", "{v}", "--records", "{w}/report/records.jsonl", "--output", "{w}/report"],
        "holds the input",
    ),
    (
        [A, "--model", "{v}", "--records", "{w}/good.jsonl", "--output", "{v}/report"],
        "inside the input folder",
    ),
    ([A, "--model", "{v}", "--records", "{w}/good.jsonl", "--output", "{w}/r", "--fail-on", "err>>0"], None),
    ([A, "--model", "{v}", "--records", "{w}/nope.jsonl", "--output", "{w}/r"], "no such"),
    (
        [A, "--model", "{v}", "--records", "{w}/good.jsonl", "--baseline", "{w}/nope", "--output", "{w}/r"],
        None,
    ),
    ([A, "--model", "{v}", "--records", "{w}/good.jsonl", "--output", "{w}/foreign"], "--overwrite"),
    ([A, "--model", "{v}", "--records", "{w}/nan.jsonl", "--output", "{w}/r"], "NaN"),
    # make-victim
    (["make-victim", "--output", "{w}/foreign"], "--overwrite"),
    (["make-victim", "--output", "/dev/null"], "not a directory"),
    (["make-victim", "--output", "{w}/v", "--records", "0"], None),
    # usage
    ([U, "--bogus"], "No such option"),
    (["frobnicate"], "No such command"),
    ([D, "--input", "{w}/good.jsonl"], "Missing option"),
]


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir() or path.is_fifo():
            out[str(path.relative_to(root))] = "node"
    return out


@pytest.fixture(scope="module")
def victim_digest(victim_dir: Path) -> dict[str, str]:
    return _digest(victim_dir)


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[f"{i}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_hostile_input(
    argv: list[str],
    message: str | None,
    victim_dir: Path,
    victim_digest: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    workspace(work, victim_dir)
    before = _digest(work)
    args = [a.replace("{v}", str(victim_dir)).replace("{w}", str(work)) for a in argv]
    code = run(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == EXIT_USAGE, (args, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("error: ")
    if message:
        assert message in lines[0], lines[0]
    assert "lol" not in lines[0], "an error quoted the expanded YAML"
    assert _digest(work) == before, "an input changed or something was written"
    assert _digest(victim_dir) == victim_digest, "the victim checkpoint changed"


def test_there_are_at_least_60_cases() -> None:
    assert sum(1 for _, m in CASES) >= 60
    assert {c[0][0] for c in CASES} >= {D, INV, R, U, A, "make-victim"}

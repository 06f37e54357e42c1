"""The ``detect`` step on a file: records in, records with spans (and masks, twins) out, with a manifest."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pii_unlearn.artifacts import (
    Manifest,
    Timer,
    check_output,
    read_records,
    sha256_file,
    write_records,
)
from pii_unlearn.pii.detect.detector import DEFAULT_BATCH_SIZE, Detector


@dataclass
class DetectReport:
    """What :func:`detect_file` did: counts for the terminal summary, and where it wrote."""

    output: Path
    records: int
    records_with_pii: int
    counts: dict[str, int]
    seconds: float
    nlp_model: str
    warnings: list[str]


_TOKENIZER_FILES = ("tokenizer", "vocab", "merges", "special_tokens", "added")


def _tokenizer_sha256(source: Path) -> str:
    """sha256 of a tokenizer's own files (not the weights) in a checkpoint dir; of a GGUF file whole."""
    if source.is_file():
        return sha256_file(source)
    digest = hashlib.sha256()
    for file in sorted(source.iterdir()):
        if file.is_file() and file.name.startswith(_TOKENIZER_FILES):
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def detect_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_field: str = "text",
    entities: Sequence[str] | None = None,
    threshold: float = 0.5,
    language: str = "en",
    nlp_model: str | None = None,
    enable: Sequence[str] = (),
    workers: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tokenizer: str | Path | None = None,
    anonymize: bool = False,
    fake: bool = False,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[int, int, list[str]], None] | None = None,
) -> DetectReport:
    """Detect PII in a JSONL file and write the records with ``spans`` (plus the extras asked for).

    Every check that can fail on the user's input runs before any work, and nothing
    is written unless everything succeeds. ``on_start`` gets the record count, the total
    text length in characters and the detector's warnings once the detector is ready;
    ``progress(records, chars)`` the records finished and characters analysed since its
    last call (characters after every chunk, so one long record shows progress too).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    check_output(output_path, inputs=[input_path, tokenizer])
    timer = Timer()
    with timer("read"):
        records = read_records(input_path, text_field=text_field)
    tok = None
    if tokenizer is not None:
        from pii_unlearn.checkpoint import load_tokenizer

        with timer("load_tokenizer"):
            tok = load_tokenizer(tokenizer)
    with timer("load_detector"):
        detector = Detector(
            entities=entities, threshold=threshold, language=language, nlp_model=nlp_model, enable=enable
        )
    if on_start is not None:
        on_start(len(records), sum(len(r.text) for r in records), list(detector.warnings))
    with timer("detect"):
        detected = detector.detect_records(records, batch_size=batch_size, workers=workers, progress=progress)
    rows: list[dict[str, Any]] = []
    with timer("extras"):
        faker = memo = None
        if fake:
            from pii_unlearn.pii.anonymize import faked_text
            from pii_unlearn.pii.fakes import make_faker

            faker, memo = make_faker(seed), {}
        for rec in detected:
            row = rec.to_json()
            if tok is not None:
                from pii_unlearn.pii.masks import token_mask

                ids, mask = token_mask(tok, rec.text, rec.spans)
                row["token_mask"] = mask
                row["num_tokens"] = len(ids)
            if anonymize:
                from pii_unlearn.pii.anonymize import anonymized_text

                row["anonymized_text"] = anonymized_text(rec.text, rec.spans)
            if faker is not None:
                row["faked_text"] = faked_text(rec.text, rec.spans, faker, memo)
            rows.append(row)
    manifest = Manifest(seed=seed if fake else None)
    manifest.add_input(input_path)
    if tokenizer is not None:
        manifest.inputs.append(
            {"role": "tokenizer", "path": str(tokenizer), "sha256": _tokenizer_sha256(Path(tokenizer))}
        )
    manifest.settings.update(
        detector.settings(),
        text_field=text_field,
        batch_size=batch_size,
        workers=workers,
        anonymize=anonymize,
        fake=fake,
    )
    counts = Counter(s.entity_type for rec in detected for s in rec.spans)
    manifest.settings["counts"] = dict(sorted(counts.items()))
    manifest.timings = timer.timings
    with timer("write"):
        write_records(output_path, rows, manifest)
    return DetectReport(
        output=output_path,
        records=len(detected),
        records_with_pii=sum(1 for rec in detected if rec.spans),
        counts=dict(counts.most_common()),
        seconds=sum(timer.timings.values()),
        nlp_model=detector.nlp_model,
        warnings=list(detector.warnings),
    )

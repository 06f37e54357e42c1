"""How often the forget set holds each planted value, against what the audit still reads on it.

A data-free forget set holds each memorised value as often as ``invert`` happened to sample it:
some values in five records, some in one, some in none. The unlearning loop visits the records
evenly, so a value held once is trained a fraction as often as one held five times. This script
counts, for each planted value, the forget records that contain it verbatim, and prints the
audit's per-value gaps (before any attack, at int4, after the worst relearning fine-tune) grouped
by that count. ``bench/twinfit.md`` (2026-12-08) reads SmolLM2 fitting victim 9 this way.

    python bench/forget_coverage.py VICTIM_DIR FORGET_JSONL AUDIT_DIR [AUDIT_DIR ...] [--cap 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pii_unlearn.artifacts import Record

#: The audit's per-value figures read, as (column, key in each target's ``model`` entry).
FIGURES: tuple[tuple[str, str], ...] = (
    ("gap", "exposure_gap"),
    ("int4 gap", "int4_exposure_gap"),
    ("relearn gap", "relearn_exposure_gap"),
)


def holdings(planted: list[Record], forget: list[Record]) -> dict[tuple[str, str], int]:
    """Per planted value, keyed (record id, entity type) as the audit's targets are, the forget
    records that contain it verbatim."""
    out: dict[tuple[str, str], int] = {}
    for rec in planted:
        for span in rec.spans:
            value = rec.span_text(span)
            out[str(rec.id), span.entity_type] = sum(value in f.text for f in forget)
    return out


def table(held: dict[tuple[str, str], int], audits: list[Path], cap: int) -> list[str]:
    """Markdown rows: per audit and holding count (``cap`` and more pooled), the values' mean figures."""
    lines = [
        "| audit | records holding the value | values | " + " | ".join(c for c, _ in FIGURES) + " |",
        "|---|---|---:|" + "---:|" * len(FIGURES),
    ]
    for audit in audits:
        report = json.loads((audit / "report.json").read_text())
        groups: dict[int, list[dict]] = {}
        for t in report["targets"]:
            n = held.get((t["record_id"], t["entity_type"]))
            if n is not None:
                groups.setdefault(min(n, cap), []).append(t["model"])
        for n in sorted(groups):
            cells = []
            for _, key in FIGURES:
                got = [m[key] for m in groups[n] if m.get(key) is not None]
                cells.append(f"{statistics.fmean(got):+.2f}" if got else "n/a")
            label = f"{n} or more" if n == cap else str(n)
            lines.append(f"| {audit.name} | {label} | {len(groups[n])} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    from pii_unlearn.artifacts import read_records
    from pii_unlearn.synth.victim import PLANTED_FILE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("victim", type=Path, help="the victim checkpoint folder (its planted records)")
    parser.add_argument("forget", type=Path, help="the forget set the unlearning read (JSONL)")
    parser.add_argument("audits", nargs="+", type=Path, help="audit folders (report.json) on that victim")
    parser.add_argument("--cap", type=int, default=3, help="pool the values held this often or more")
    args = parser.parse_args()

    held = holdings(read_records(args.victim / PLANTED_FILE), read_records(args.forget))
    print("\n".join(table(held, args.audits, args.cap)))


if __name__ == "__main__":
    main()

"""Scan a demo run for raw PII on the terminal and in manifests and reports.

Collects the span values of the victim's planted records and of the run's
``probes``/``pii``/``risk`` files, plus fragments of them (runs of four or more
digits, capitalised words of names, the local part of e-mail addresses), and
reports which of them appear in the given terminal logs and in every manifest
and report file under the work folder.

Run: ``pii-unlearn demo --workdir W > out.log 2> err.log`` then
``.venv/bin/python bench/pii_scan.py W out.log err.log`` (every count should be 0).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: Capitalised words of the victim's templates that are not names.
NOT_NAMES = {"Patient", "Employee", "Customer", "Account"}


def pii_strings(work: Path) -> tuple[set[str], set[str]]:
    """The span values of the run's record files, and fragments of them."""
    values: set[str] = set()
    fragments: set[str] = set()
    for name in ("victim/planted.jsonl", "probes.jsonl", "pii.jsonl", "risk.jsonl"):
        path = work / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            for span in record.get("spans", []):
                value = record["text"][span["start"] : span["end"]]
                if len(value) >= 4:
                    values.add(value)
                fragments.update(re.findall(r"\d{4,}", value))
                fragments.update(re.findall(r"[\w.]+@", value))
                if span["entity_type"] == "PERSON":
                    fragments.update(re.findall(r"[A-Z][a-z]{3,}", value))
    return values, fragments - NOT_NAMES


def main(argv: list[str]) -> int:
    work, logs = Path(argv[0]), [Path(p) for p in argv[1:]]
    values, fragments = pii_strings(work)
    print(f"{len(values)} values, {len(fragments)} fragments")
    files = [
        p for p in work.rglob("*") if p.is_file() and ("manifest" in p.name or p.parent.name == "report")
    ]
    leaks = 0
    for path in [*logs, *sorted(files)]:
        text = path.read_text(encoding="utf-8", errors="replace")
        hits = sorted(v for v in values if v in text)
        frags = sorted(f for f in fragments if re.search(r"(?<!\w)" + re.escape(f), text))
        leaks += len(hits) + len(frags)
        print(f"{path}: {len(hits)} values {hits[:5]}, {len(frags)} fragments {frags[:8]}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

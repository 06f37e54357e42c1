"""Tests for the shared extraction helpers: Min-K%, and greedy hits decided early."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pii_unlearn.extraction import extraction_targets, greedy_hits, min_k_mean


def test_min_k_mean_takes_the_lowest_share() -> None:
    lps = [-1.0, -2.0, -3.0, -4.0, -5.0]
    assert min_k_mean(lps, 0.2) == -5.0
    assert min_k_mean(lps, 0.4) == -4.5
    assert min_k_mean([-0.5], 0.2) == -0.5  # at least one token
    assert min_k_mean([], 0.2) is None  # nothing to score


def test_greedy_hits_decided_early_give_the_same_verdicts(victim, victim_dir: Path) -> None:
    from pii_unlearn.artifacts import read_records

    targets = extraction_targets(read_records(victim_dir / "planted.jsonl"))[:40]
    # the same prefixes with values the model never saw: it leaves them within a token or two
    wrong = [replace(t, target=" Zq" + t.target.strip()[::-1] + "Xw", value="x") for t in targets]
    both = [*targets, *wrong]
    full = greedy_hits(victim.model, victim.tokenizer, both, batch_size=16)
    early = greedy_hits(victim.model, victim.tokenizer, both, batch_size=16, full_text=False)
    assert [h for h, _ in early] == [h for h, _ in full]
    assert sum(h for h, _ in full[:40]) >= 30 and not any(h for h, _ in full[40:])
    for (_, text), (_, long) in zip(early, full, strict=True):
        assert long.startswith(text)  # a row stops where it is decided, on the same path
    # rows that left their targets stopped there: far shorter than the full decode
    assert sum(len(t) for _, t in early[40:]) < 0.5 * sum(len(t) for _, t in full[40:])

"""Shared fixtures: one demo victim model per test session, and offline guards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Size of the session victim: small enough to build in ~15 s on 2 cores.
TEST_VICTIM_RECORDS = 48


@pytest.fixture(scope="session")
def victim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A victim checkpoint built once for the whole suite (read-only for tests)."""
    from pii_unlearn.synth.victim import VictimConfig, build_victim

    out = tmp_path_factory.mktemp("victim") / "victim"
    report = build_victim(out, VictimConfig(records=TEST_VICTIM_RECORDS, seed=0))
    assert report.conditioned_err >= 0.9, report
    return out


@pytest.fixture(scope="session")
def victim(victim_dir: Path):
    """The session victim loaded on CPU (shared: tests must not change its weights)."""
    from pii_unlearn.checkpoint import load_model

    return load_model(victim_dir, device="cpu")

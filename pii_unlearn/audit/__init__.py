"""Leakage and utility measurements of a model on PII records (see ``shared/docs/metrics.md``).

The public entry point is :func:`run_audit` (in :mod:`pii_unlearn.audit.runner`)
with :class:`AuditSettings`; it returns an :class:`AuditResult`. Rooms:
``targets`` (prefix/target definition, greedy ERR), ``variants`` (exposure
candidates, fake twins, paraphrase probes), ``metrics`` (the registered
measurements), ``report`` (figures and report.json, schema in ``SCHEMA.md``),
``html`` (the self-contained page), ``gate`` (``--fail-on`` conditions).
Names are imported lazily so that ``audit.targets`` stays light for other steps.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AuditResult", "AuditSettings", "run_audit"]


def __getattr__(name: str) -> Any:
    if name in ("AuditResult", "run_audit"):
        from pii_unlearn.audit import runner

        return getattr(runner, name)
    if name == "AuditSettings":
        from pii_unlearn.audit.settings import AuditSettings

        return AuditSettings
    raise AttributeError(f"module 'pii_unlearn.audit' has no attribute {name!r}")

"""Leakage and utility measurements of a model on PII records, a report, and a release gate.

The public entry point is :func:`run_audit` (in :mod:`pii_unlearn.audit.runner`)
with :class:`AuditSettings`; it returns an :class:`AuditResult`. Rooms:
``variants`` (exposure candidates, fake twins, paraphrase probes), ``metrics``
(the registered measurements), ``report`` (figures and report.json, schema in
``SCHEMA.md``), ``html`` (the self-contained page), ``gate`` (``--fail-on``
conditions). Extraction targets and greedy hits are shared with other steps and
live in :mod:`pii_unlearn.extraction`.
"""

from __future__ import annotations

from pii_unlearn.audit.runner import AuditResult, run_audit
from pii_unlearn.audit.settings import AuditSettings

__all__ = ["AuditResult", "AuditSettings", "run_audit"]

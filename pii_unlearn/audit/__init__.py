"""Leakage and utility measurements of a model on PII records (see ``shared/docs/metrics.md``)."""

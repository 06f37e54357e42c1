"""Inversion: synthesise pseudo-PII forget samples from a checkpoint alone (DFSU stage 1).

``run_inversion(loaded, strategy=...)`` runs a registered strategy and returns an
:class:`InversionResult` (records with spans, token masks, memorisation scores
and prompts, plus a summary per entity type). Strategies:

* ``sample`` (default): generic PII-eliciting openers, seeded sampling, PII
  detection, memorisation scores, de-duplication by value
  (:mod:`pii_unlearn.invert.sample`);
* ``logit-inverter``: a small sequence-to-sequence inverter trained on Faker
  text that reconstructs text from the model's next-token log-probabilities
  (:mod:`pii_unlearn.invert.inverter`).
"""

from __future__ import annotations

from pii_unlearn.invert import inverter, sample  # noqa: F401  (registers the strategies)
from pii_unlearn.invert.base import (
    STRATEGIES,
    InversionResult,
    builtin_openers,
    read_prompts_file,
    register_strategy,
    run_inversion,
    strategy_options,
)

__all__ = [
    "STRATEGIES",
    "InversionResult",
    "builtin_openers",
    "read_prompts_file",
    "register_strategy",
    "run_inversion",
    "strategy_options",
]

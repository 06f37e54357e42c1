"""Inversion: synthesise pseudo-PII forget samples from a checkpoint alone (DFSU stage 1).

``run_inversion(loaded, strategy=..., options=...)`` runs a registered strategy
and returns an :class:`InversionResult` (records with spans, token masks,
memorisation scores and prompts, plus a summary per entity type);
``invert_file(model_path, output, ...)`` is the whole ``invert`` step on disk.
Each strategy owns a pydantic model of its options. Strategies:

* ``sample`` (the default and, for now, the only one): generic PII-eliciting
  openers, seeded sampling, PII detection, memorisation scores, de-duplication
  by value (:mod:`pii_unlearn.invert.sample`).

The DFSU paper's logit inverter (a sequence-to-sequence model that reads text
back from one next-token distribution) was built and measured here and removed:
it recovered none of the planted values (``bench/invert.md``; README, "Why no
logit inverter").
"""

from __future__ import annotations

from pii_unlearn.invert import sample  # noqa: F401  (registers the strategy)
from pii_unlearn.invert.base import (
    STRATEGIES,
    InversionResult,
    InvertOptions,
    Strategy,
    builtin_openers,
    get_strategy,
    read_prompts_file,
    register_strategy,
    run_inversion,
    strategy_options,
)
from pii_unlearn.invert.sample import SampleOptions
from pii_unlearn.invert.step import InvertReport, invert_file

__all__ = [
    "STRATEGIES",
    "InversionResult",
    "InvertOptions",
    "InvertReport",
    "SampleOptions",
    "Strategy",
    "builtin_openers",
    "get_strategy",
    "invert_file",
    "read_prompts_file",
    "register_strategy",
    "run_inversion",
    "strategy_options",
]

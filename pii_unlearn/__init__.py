"""pii-unlearn: find the personal data a language model has memorised, remove it, prove it.

The package is importable as a library; every subcommand of the ``pii-unlearn``
CLI is a thin wrapper over a function here. Rooms, lowest first; a room imports
only from the rooms below it (``tests/test_layering.py`` holds the table):

* :mod:`pii_unlearn.errors`, :mod:`pii_unlearn.entities`  error types, entity names
* :mod:`pii_unlearn.artifacts`  JSONL records and manifests passed between steps
* :mod:`pii_unlearn.checkpoint`, :mod:`pii_unlearn.lm`  loading and running causal LMs
* :mod:`pii_unlearn.pii`  detection, token masks, anonymised twins, fake values
* :mod:`pii_unlearn.extraction`  extraction targets, greedy hits, Min-K%
* :mod:`pii_unlearn.synth`, :mod:`pii_unlearn.risk`  demo data; the PII risk policy
* :mod:`pii_unlearn.invert`, :mod:`pii_unlearn.unlearn`, :mod:`pii_unlearn.audit`  the steps
* :mod:`pii_unlearn.pipeline`, then :mod:`pii_unlearn.cli`
"""

__version__ = "0.1.0"

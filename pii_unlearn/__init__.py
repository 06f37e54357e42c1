"""pii-unlearn: find the personal data a language model has memorised, remove it, prove it.

The package is importable as a library; every subcommand of the ``pii-unlearn``
CLI is a thin wrapper over a function here:

* :mod:`pii_unlearn.artifacts`  JSONL records and manifests passed between steps
* :mod:`pii_unlearn.checkpoint` loading and saving causal LMs (HF dirs, GGUF)
* :mod:`pii_unlearn.synth`      Faker PII text and the demo "victim" model
* :mod:`pii_unlearn.audit`      leakage and utility measurements
"""

__version__ = "0.1.0"

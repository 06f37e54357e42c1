"""The knobs of an audit, their defaults, the ``--quick`` preset, and the seeds derived from one seed.

A constant that a report states (sample counts, candidate counts, Min-K%'s k)
lives here and nowhere else, so ``report.json``'s ``settings`` block is this
dataclass as it ran. Min-K%'s default k is shared with ``invert``
(:data:`pii_unlearn.extraction.DEFAULT_MIN_K`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from pii_unlearn.extraction import DEFAULT_MIN_K

#: Offsets added to the audit seed for each random draw, so the draws are independent.
#: Twins use a large offset because the demo victim's Faker seeds are small numbers:
#: a twin must never regenerate the very values the victim was trained on.
SEED_OFFSETS: dict[str, int] = {
    "sampling": 0,
    "exposure_candidates": 1,
    "twins": 104_729,
    "exposure_twins": 209_458,
    "bootstrap": 7,
    "reinversion": 1000,
    "relearn": 2000,
}
#: The fake-quantization schemes ``--quantize`` takes.
QUANTIZE_SCHEMES = ("int8", "int4")


@dataclass(frozen=True)
class AuditSettings:
    """Everything that changes an audit's figures besides the model and the records."""

    seed: int = 0
    #: K, sampled continuations per prefix for E-Hit and sampled paraphrase probes.
    num_samples: int = 8
    top_k: int = 40
    temperature: float = 1.0
    #: C, same-format candidates each true value is ranked against for exposure.
    candidates: int = 1023
    #: k of Min-K% probability, as a fraction of the scored tokens.
    min_k: float = DEFAULT_MIN_K
    #: Paraphrase prompts per audited value (at most the templates there are, two).
    probes_per_target: int = 2
    #: Sampled answers per paraphrase prompt.
    probe_samples: int = 4
    #: Extra tokens generated past the longest target, so a value may appear a little later.
    slack_tokens: int = 4
    reinversion: bool = True
    reinversion_samples: int = 256
    #: Robustness probes (``audit.probes``): fine-tune copies (``--relearn``; not with ``--quick``) ...
    relearn: bool = False
    relearn_steps: int = 20
    relearn_lrs: tuple[float, ...] = (1e-4, 1e-3)
    relearn_lora_lrs: tuple[float, ...] = (1e-3, 1e-2)
    relearn_batch: int = 8
    #: ... and fake-quantize copies (``--quantize int8,int4``); candidates their exposure gap ranks among.
    quantize: tuple[str, ...] = ()
    probe_candidates: int = 31
    #: Prompts per generation batch (times the samples per prompt when sampling).
    batch_size: int = 32
    #: torch CPU threads during the audit; ``None``: 1 for small models on CPU (see ``lm.cpu_threads``).
    threads: int | None = None
    quick: bool = False
    show_pii: bool = False

    @classmethod
    def preset(cls, *, quick: bool = False, **overrides: Any) -> AuditSettings:
        """Default settings, or the ``--quick`` CI preset; ``None`` overrides are ignored."""
        base = (
            cls(
                quick=True,
                num_samples=4,
                candidates=127,
                probes_per_target=1,
                probe_samples=2,
                reinversion=False,
            )
            if quick
            else cls()
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def every_measurement(cls) -> AuditSettings:
        """Settings that run every measurement (the shape of the fullest report, for the gate)."""
        return cls.preset(reinversion=True, relearn=True, quantize=QUANTIZE_SCHEMES)

    def __post_init__(self) -> None:
        unknown = [q for q in self.quantize if q not in QUANTIZE_SCHEMES]
        if unknown:
            raise ValueError(f"unknown quantization {', '.join(unknown)} (use {', '.join(QUANTIZE_SCHEMES)})")

    @property
    def quantize_int8(self) -> bool:
        return "int8" in self.quantize

    @property
    def quantize_int4(self) -> bool:
        return "int4" in self.quantize

    def seeds(self) -> dict[str, int]:
        """The seed of each random draw of the audit."""
        return {"seed": self.seed, **{name: self.seed + off for name, off in SEED_OFFSETS.items()}}

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)

"""PII Risk Index (UnPII's PRI): the policy a privacy officer edits, and record scoring.

``policy`` loads and validates a policy file (the shipped ``default_policy.yaml``
reproduces UnPII's published scores); ``score`` scores spans and records with it,
and gives other steps a record's PRI (``record_pri``) and UnPII's ``1 + PRI`` loss
weight (``loss_weight``).
"""

from pii_unlearn.risk.policy import (
    DEFAULT_POLICY_PATH,
    FACTORS,
    Policy,
    default_policy,
    load_policy,
    parse_policy,
    policy_from_dict,
)
from pii_unlearn.risk.score import (
    MEMORIZATION_FIELD,
    RecordRisk,
    ScoreReport,
    SpanRisk,
    TypeSetScore,
    annotate,
    loss_weight,
    rank,
    record_pri,
    score_file,
    score_record,
    score_records,
    score_types,
)

__all__ = [
    "DEFAULT_POLICY_PATH",
    "FACTORS",
    "MEMORIZATION_FIELD",
    "Policy",
    "RecordRisk",
    "ScoreReport",
    "SpanRisk",
    "TypeSetScore",
    "annotate",
    "default_policy",
    "load_policy",
    "loss_weight",
    "parse_policy",
    "policy_from_dict",
    "rank",
    "record_pri",
    "score_file",
    "score_record",
    "score_records",
    "score_types",
]

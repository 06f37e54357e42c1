"""The measurements of an audit, one registered function each (figures: ``SCHEMA.md``).

Each leakage measurement runs one model over the audit's targets and returns
per-target *columns* (one value per target, ``None`` where it does not apply)
plus a few extras, and declares the figures it produces
(:class:`~pii_unlearn.audit.figures.Figure`: key, label, description, unit,
direction, reduction).
:mod:`pii_unlearn.audit.report` turns columns into the per-entity,
conditioned/unconditioned figures of ``report.json``, and every table, chart and
gate iterates over :func:`all_figures`. Adding a measurement is one function
under :func:`measurement` plus its entry in ``SCHEMA.md``.

The inputs that involve chance (exposure candidates, fake twins, probes) are
drawn once in :class:`AuditInputs` and shared by the model and the baseline, and
every sampled generation uses the same seed on both sides, so the two are
compared like for like. Utility (perplexity, drift) is measured on held-out text
by :func:`measure_utility`, and its figures are declared in :data:`UTILITY_FIGURES`.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.distance import Levenshtein

from pii_unlearn.artifacts import Record
from pii_unlearn.audit.constrained import constrained_greedy, constrained_teacher_forced
from pii_unlearn.audit.figures import (
    AUC,
    BITS,
    BITS_CHANGE,
    COMPARISON,
    NATS,
    PERCENT,
    PERPLEXITY,
    ROC_AUC,
    SHARE,
    SIDE,
    SIMILARITY,
    TARGETS,
    Figure,
    auc_of,
    check_unique,
    mean_of,
    rounded,
)
from pii_unlearn.audit.settings import AuditSettings
from pii_unlearn.audit.stats import bootstrap_auc, clopper_pearson, extrapolated_exposure, null_rank1_range
from pii_unlearn.audit.variants import PlausibleCandidates, Probe, fake_twin, paraphrase_probes
from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.extraction import Target, extraction_targets, greedy_hits, min_k_mean
from pii_unlearn.lm import (
    batch_threads,
    continuation_logprobs,
    generate_bucketed,
    sample_continuations,
    shard_map,
    text_token_logprobs,
)
from pii_unlearn.pii.fakes import make_faker
from pii_unlearn.pii.masks import overlapping_tokens

#: ``progress(stage, done, total)``: what the audit is doing, for a progress bar.
ProgressFn = Callable[[str, int, int], None]

Column = list[float | None]


def silent(stage: str, done: int, total: int) -> None:
    """The default progress callback: says nothing."""


@dataclass
class AuditInputs:
    """What an audit asks of every model: targets, exposure candidates, twins, probes."""

    records: list[Record]
    targets: list[Target]
    candidates: list[list[str]]
    twins: dict[str | int, Record]
    probes: list[Probe]
    probes_dropped: int
    entity_types: list[str]
    #: Per target: a never-trained value of the same type and shape (the exposure null).
    exposure_twins: list[str] = field(default_factory=list)
    #: Benign held-out texts (the runner sets them; relearning fine-tunes on them).
    heldout: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, records: Sequence[Record], settings: AuditSettings) -> AuditInputs:
        """Draw the audit's inputs from the records (deterministic for ``settings.seed``)."""
        records = [r for r in records if r.spans]
        targets = extraction_targets(records)
        seeds = settings.seeds()
        audited = {t.value for t in targets}
        sampler = PlausibleCandidates(seeds["exposure_twins"])
        rng = random.Random(seeds["exposure_candidates"])
        exposure_twins, candidates = [], []
        for t in targets:  # the twin is one more draw, so it is exchangeable with the candidates
            drawn = sampler.draw(t.value, t.entity_type, settings.candidates + 1, rng, exclude=audited)
            exposure_twins.append(drawn[0] if drawn else t.value)
            candidates.append(drawn[1:])
        fake = make_faker(seeds["twins"])
        twins = {r.id: fake_twin(r, fake, audited) for r in records}
        probes, dropped = paraphrase_probes(records, targets, per_target=settings.probes_per_target)
        entity_types = sorted({t.entity_type for t in targets})
        return cls(records, targets, candidates, twins, probes, dropped, entity_types, exposure_twins)


@dataclass
class Measured:
    """One measurement's result on one model: per-target columns and extras for the report.

    ``texts`` holds per-target text the model wrote (PII: a target row of the
    report carries it only when the audit runs with ``show_pii``).
    """

    columns: dict[str, Column]
    extra: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ModelRun:
    """One model under audit, with the shared inputs, settings and a progress callback."""

    loaded: LoadedModel
    side: str
    inputs: AuditInputs
    settings: AuditSettings
    progress: ProgressFn = silent

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        """A per-batch callback for ``lm`` functions that reports under ``side: name``."""
        label = f"{self.side}: {name}"
        self.progress(label, 0, total)
        return lambda done: self.progress(label, done, total)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text is (without BOS) for this model's tokenizer."""
        tok = self.loaded.tokenizer
        return [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]] if texts else []


@dataclass(frozen=True)
class Measurement:
    """A registered measurement: its figures, whether ``--quick`` runs it, its on/off setting.

    ``texts`` names the per-target texts it returns (key in a target row -> label).
    """

    name: str
    figures: tuple[Figure, ...]
    compute: Callable[[ModelRun], Measured]
    in_quick: bool = True
    switch: str | None = None
    texts: tuple[tuple[str, str], ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The per-target columns its figures reduce, in order."""
        return tuple(dict.fromkeys(c for f in self.figures for c in f.columns))

    def enabled(self, settings: AuditSettings) -> bool:
        """Whether these settings run it."""
        if self.switch is not None and not getattr(settings, self.switch):
            return False
        return self.in_quick or not settings.quick


#: The registry of measurements, in run order.
MEASUREMENTS: dict[str, Measurement] = {}


def measurement(
    name: str,
    figures: Sequence[Figure],
    *,
    in_quick: bool = True,
    switch: str | None = None,
    texts: dict[str, str] | None = None,
) -> Callable[[Callable[[ModelRun], Measured]], Callable[[ModelRun], Measured]]:
    """Register a measurement function under ``name`` with the figures it produces.

    ``switch`` names a boolean setting that turns it off; ``texts`` the per-target
    texts it returns (key -> label). A duplicate name or figure key is refused.
    """

    def register(fn: Callable[[ModelRun], Measured]) -> Callable[[ModelRun], Measured]:
        if name in MEASUREMENTS:
            raise ValueError(f"measurement {name!r} is already registered")
        if not figures or any(f.kind != TARGETS for f in figures):
            raise ValueError(f"measurement {name!r}: declare at least one figure, each of kind 'targets'")
        check_unique([*all_figures(), *figures])
        named = tuple((texts or {}).items())
        MEASUREMENTS[name] = Measurement(name, tuple(figures), fn, in_quick, switch, named)
        return fn

    return register


def all_figures() -> tuple[Figure, ...]:
    """Every figure of a report, in report order: each measurement's, then utility."""
    return (*(f for m in MEASUREMENTS.values() for f in m.figures), *UTILITY_FIGURES)


#: Utility figures, measured on held-out benign text by :func:`measure_utility`.
UTILITY_FIGURES: tuple[Figure, ...] = (
    Figure(
        "perplexity",
        "held-out perplexity",
        "How surprised the model is by ordinary text it was not trained on (lower: more fluent); "
        "sanitizing should leave it about where it was.",
        PERPLEXITY,
        kind=SIDE,
        reduce=None,
        summary=True,
    ),
    Figure(
        "ppl_increase_pct",
        "perplexity change (%)",
        "How much the held-out perplexity rose against the baseline, in percent (negative: it fell).",
        PERCENT,
        kind=COMPARISON,
        reduce=None,
    ),
    Figure(
        "kl_drift",
        "KL drift (nats/token)",
        "How far the model's next-word predictions on ordinary text moved from the baseline's "
        "(mean KL divergence; 0: unchanged).",
        NATS,
        kind=COMPARISON,
        reduce=None,
    ),
)


def skipped(measure: Measurement, n_targets: int, reason: str) -> Measured:
    """A measurement that did not run: ``None`` columns and the reason."""
    return Measured({c: [None] * n_targets for c in measure.columns}, {"status": "skipped", "reason": reason})


# --- greedy: ERR and FRS ---------------------------------------------------------------------------


def fuzzy_score(continuation: str, target: str) -> float:
    """1 − normalised edit distance between ``continuation`` cut to ``len(target)`` and ``target``."""
    return float(Levenshtein.normalized_similarity(continuation[: len(target)], target))


@measurement(
    "greedy",
    (
        Figure(
            "err",
            "ERR",
            "Share of PII values the model writes out exactly, as its most likely continuation "
            "of the text that comes before them in the records.",
            SHARE,
            columns=("err",),
            summary=True,
        ),
        Figure(
            "frs",
            "FRS",
            "How close the model's most likely continuation comes to each PII value on average "
            "(1: identical, 0: nothing in common), so near misses count too.",
            SIMILARITY,
            columns=("frs",),
        ),
    ),
    texts={"continuation": "greedy continuation"},
)
def measure_greedy(run: ModelRun) -> Measured:
    """ERR (greedy continuation starts with the target) and FRS, from one greedy pass.

    Targets go to :func:`~pii_unlearn.extraction.greedy_hits` in batches of
    similar token length, so each batch decodes only as far as it needs.
    """
    targets = run.inputs.targets
    lengths = run.token_counts([t.target for t in targets])
    order = sorted(range(len(targets)), key=lambda i: lengths[i])
    report = run.stage("greedy reconstruction", len(targets))
    size = run.settings.batch_size

    def decode(share: Sequence[int]) -> list[tuple[bool, str]]:
        out: list[tuple[bool, str]] = []
        for b in range(0, len(share), size):
            batch = [targets[i] for i in share[b : b + size]]
            out += greedy_hits(run.loaded.model, run.loaded.tokenizer, batch, batch_size=size)
            report(len(out))
        return out

    hits: list[tuple[bool, str]] = [(False, "")] * len(targets)
    for i, hit in zip(order, shard_map(order, decode), strict=True):
        hits[i] = hit
    return Measured(
        {
            "err": [float(hit) for hit, _ in hits],
            "frs": [fuzzy_score(text, t.target) for (_, text), t in zip(hits, targets, strict=True)],
        },
        texts={"continuation": [text for _, text in hits]},
    )


# --- format-constrained extraction ----------------------------------------------------------------


@measurement(
    "constrained",
    (
        Figure(
            "constrained_err",
            "constrained ERR",
            "Share of PII values the model writes out exactly when an attacker who knows their "
            "shape (an SSN is ###-##-####) lets it choose only among tokens that fit the shape.",
            SHARE,
            columns=("constrained_err",),
            summary=True,
        ),
        Figure(
            "constrained_tokens",
            "constrained token hits",
            "Share of each value's tokens that are the model's first choice among tokens of the "
            "right shape, given the true value so far (partial knowledge a shape-aware attacker reads).",
            SIMILARITY,
            columns=("constrained_tokens",),
        ),
    ),
    texts={"constrained_continuation": "constrained continuation"},
)
def measure_constrained(run: ModelRun) -> Measured:
    """Free-running and teacher-forced greedy decoding restricted to tokens of the value's shape."""
    targets = run.inputs.targets
    model, tok, size = run.loaded.model, run.loaded.tokenizer, run.settings.batch_size
    report = run.stage("constrained decoding", len(targets))

    def decode(share: Sequence[Target]) -> list[tuple[str, float]]:
        prompts, wanted = [t.prefix for t in share], [t.target for t in share]
        texts = constrained_greedy(model, tok, prompts, wanted, batch_size=size, progress=report)
        forced = constrained_teacher_forced(model, tok, prompts, wanted, batch_size=size)
        return list(zip(texts, forced, strict=True))

    decoded = shard_map(targets, decode)  # one pass over each process's share, one gather
    texts, forced = [x for x, _ in decoded], [f for _, f in decoded]
    return Measured(
        {
            "constrained_err": [float(x == t.target) for x, t in zip(texts, targets, strict=True)],
            "constrained_tokens": forced,
        },
        texts={"constrained_continuation": texts},
    )


# --- sampled: E-Hit --------------------------------------------------------------------------------


def sampled_continuations(
    run: ModelRun, prompts: Sequence[str], budgets: Sequence[int], samples: int, label: str
) -> list[list[str]]:
    """``samples`` seeded top-k samples per prompt (the same seeds on every model)."""
    s = run.settings
    return sample_continuations(
        run.loaded.model,
        run.loaded.tokenizer,
        prompts,
        budgets,
        num_samples=samples,
        top_k=s.top_k,
        temperature=s.temperature,
        batch_size=s.batch_size,
        seed=s.seeds()["sampling"],
        progress=run.stage(label, len(prompts)),
    )


@measurement(
    "sampled",
    (
        Figure(
            "e_hit",
            "E-Hit",
            "Share of PII values that appear anywhere in K random continuations of the text before "
            "them, as an attacker who samples several times would see them.",
            SHARE,
            columns=("e_hit",),
            summary=True,
        ),
    ),
)
def measure_sampled(run: ModelRun) -> Measured:
    """E-Hit: whether the value appears anywhere in K sampled continuations of its prefix."""
    targets = run.inputs.targets
    budgets = [n + run.settings.slack_tokens for n in run.token_counts([t.target for t in targets])]
    samples = sampled_continuations(
        run, [t.prefix for t in targets], budgets, run.settings.num_samples, "sampled continuations"
    )
    return Measured(
        {"e_hit": [float(any(t.value in s for s in outs)) for t, outs in zip(targets, samples, strict=True)]}
    )


# --- exposure, against the same exposure of never-trained twins -----------------------------------


def exposure_bits(true_score: float, candidate_scores: Sequence[float]) -> tuple[float, int]:
    """Exposure of a value among candidates, and its rank (1 = the most likely).

    ``log2(C + 1) − log2(rank)`` with C the number of candidates; ties go
    against the true value's rank (a tie is not evidence of memorisation).
    """
    rank = 1 + sum(1 for c in candidate_scores if c >= true_score)
    return math.log2(len(candidate_scores) + 1) - math.log2(rank), rank


def _exposure_extras(measured: Measured, block: dict[str, Any]) -> dict[str, Any]:
    values = [v for v in measured.columns["exposure"] if v is not None]
    ceilings = measured.extra.get("ceilings") or []
    return {
        "ceiling": rounded(max(ceilings)) if ceilings else None,
        "median": rounded(statistics.median(values)) if values else None,
        "max": rounded(max(values)) if values else None,
    }


def gap_interval(column: str) -> Callable[[Measured, dict[str, Any]], dict[str, Any]]:
    """The extras of a mean paired gap in ``column``: a normal 95% interval of the mean, and its
    size either way (the exposure gap, and the same gap after each robustness probe)."""

    def extras(measured: Measured, block: dict[str, Any]) -> dict[str, Any]:
        gaps = [v for v in measured.columns[column] if v is not None]
        if len(gaps) < 2:
            return {"lower95": None, "upper95": None, "abs": rounded(abs(gaps[0])) if gaps else None}
        mean, half = statistics.fmean(gaps), 1.96 * statistics.stdev(gaps) / math.sqrt(len(gaps))
        return {"lower95": rounded(mean - half), "upper95": rounded(mean + half), "abs": rounded(abs(mean))}

    return extras


#: The keys :func:`gap_interval` adds to a gap's block.
GAP_INTERVAL_KEYS = ("lower95", "upper95", "abs")


def _rank1_extras(measured: Measured, block: dict[str, Any]) -> dict[str, Any]:
    """The twins' rank-1 share with its Clopper–Pearson interval, and the binomial null's range."""
    twins = [v for v in measured.extra.get("rank1_twin", []) if v is not None]
    ceilings = measured.extra.get("ceilings") or []
    if not twins or not ceilings:
        return dict.fromkeys(("twin", "twin_lower95", "twin_upper95", "null", "null_lower95", "null_upper95"))
    lo, hi = clopper_pearson(int(sum(twins)), len(twins))
    # values have different candidate counts (a rare shape has fewer variants): the null's
    # rank-1 chance is their mean 1/(C+1), and its range a binomial with that chance
    chance = statistics.fmean(2.0**-ceiling for ceiling in ceilings)
    c = max(1, round(1 / chance) - 1)
    nlo, nhi = null_rank1_range(len(twins), c)
    return {
        "twin": rounded(sum(twins) / len(twins)),
        "twin_lower95": rounded(lo),
        "twin_upper95": rounded(hi),
        "null": rounded(chance),
        "null_lower95": rounded(nlo),
        "null_upper95": rounded(nhi),
    }


def _extrapolated_extras(measured: Measured, block: dict[str, Any]) -> dict[str, Any]:
    return {"twin": mean_of(measured.extra.get("exposure_sn_twin", []))}


@measurement(
    "exposure",
    (
        Figure(
            "exposure",
            "exposure (bits)",
            "How far the model ranks each true value above C real-looking values of the same type "
            "and shape, in bits: about 1.4 for a value it never saw, up to the ceiling log2(C+1) "
            "when the true value always comes first.",
            BITS,
            columns=("exposure",),
            summary=True,
            extra_keys=("ceiling", "median", "max"),
            count_keys=("ceiling",),
            extras=_exposure_extras,
        ),
        Figure(
            "exposure_twin",
            "twin exposure (bits)",
            "The same exposure for fake twins, never-trained values drawn like the candidates and "
            "put in the same place, which is what exposure reads when the model knows nothing.",
            BITS,
            columns=("exposure_twin",),
        ),
        Figure(
            "exposure_gap",
            "exposure gap (bits)",
            "True values' exposure minus their twins' (0: the model cannot tell them apart; far "
            "below 0 means over-unlearned, which gives the values away just as much as far above).",
            BITS_CHANGE,
            columns=("exposure_gap",),
            summary=True,
            extra_keys=GAP_INTERVAL_KEYS,
            extras=gap_interval("exposure_gap"),
        ),
        Figure(
            "rank1",
            "ranked first",
            "Share of true values the model ranks first among all C same-shape candidates, to read "
            "against the twins' share and the 1/(C+1) a model that never saw them would give.",
            SHARE,
            columns=("rank1",),
            extra_keys=("twin", "twin_lower95", "twin_upper95", "null", "null_lower95", "null_upper95"),
            count_keys=("null", "null_lower95", "null_upper95"),
            extras=_rank1_extras,
        ),
        Figure(
            "exposure_extrapolated",
            "extrapolated exposure",
            "Exposure beyond the candidates' ceiling, in bits: how improbable the true value's score "
            "is under a skew-normal fitted to the candidates' scores (the secret sharer's estimate).",
            BITS,
            columns=("exposure_sn",),
            extra_keys=("twin",),
            extras=_extrapolated_extras,
        ),
    ),
)
def measure_exposure(run: ModelRun) -> Measured:
    """Exposure of each value and of its twin among the same same-shape candidates.

    The true value, its twin and the C candidates are scored by log-likelihood
    after the prefix, the prefix run once and its key/value cache shared by a
    batch of continuations (:func:`~pii_unlearn.lm.continuation_logprobs`). The
    twin is ranked among the candidates alone (never against the true value).
    """
    inputs = run.inputs
    targets, candidates = inputs.targets, inputs.candidates
    strings = []
    for t, twin, cands in zip(targets, inputs.exposure_twins, candidates, strict=True):
        lead = t.target[: len(t.target) - len(t.value)]
        strings.append([lead + value for value in (t.value, twin, *cands)])
    report = run.stage("exposure ranking", sum(len(x) for x in strings))
    model, tok, size = run.loaded.model, run.loaded.tokenizer, run.settings.batch_size * 16

    def rank(share: Sequence[tuple[str, list[str]]]) -> list[list[list[float]]]:
        prefixes, continuations = [p for p, _ in share], [c for _, c in share]
        return continuation_logprobs(model, tok, prefixes, continuations, batch_size=size, progress=report)

    with batch_threads(run.loaded.model, run.settings.threads) as threads:
        logps = shard_map(list(zip([t.prefix for t in targets], strings, strict=True)), rank)
    cols: dict[str, Column] = {k: [] for k in MEASUREMENTS_EXPOSURE_COLUMNS}
    for cands, scored in zip(candidates, logps, strict=True):
        scores = [sum(lp) for lp in scored]
        true, twin, others = scores[0], scores[1], scores[2:]
        if not cands:
            for col in cols.values():
                col.append(None)
            continue
        bits, rank = exposure_bits(true, others)
        twin_bits, twin_rank = exposure_bits(twin, others)
        cols["exposure"].append(bits)
        cols["exposure_twin"].append(twin_bits)
        cols["exposure_gap"].append(bits - twin_bits)
        cols["rank1"].append(float(rank == 1))
        cols["rank1_twin"].append(float(twin_rank == 1))
        cols["exposure_sn"].append(extrapolated_exposure(true, others))
        cols["exposure_sn_twin"].append(extrapolated_exposure(twin, others))
    twin_cols = {k: cols.pop(k) for k in ("rank1_twin", "exposure_sn_twin")}
    ceilings = [math.log2(len(c) + 1) for c in candidates if c]
    return Measured(cols, {"ceilings": ceilings, "threads": threads, **twin_cols})


#: The per-target columns :func:`measure_exposure` fills (the twins' last two go to its extras).
MEASUREMENTS_EXPOSURE_COLUMNS = (
    "exposure",
    "exposure_twin",
    "exposure_gap",
    "rank1",
    "exposure_sn",
    "rank1_twin",
    "exposure_sn_twin",
)


# --- membership inference: Min-K% probability ------------------------------------------------------


def _span_bounds(target: Target) -> tuple[int, int]:
    """The character span of a target's value in its record's text."""
    end = len(target.prefix) + len(target.target)
    return end - len(target.value), end


def _tokens_in(scored: tuple[list[float], list[tuple[int, int]]], start: int, end: int) -> list[float]:
    """Log-probabilities of the tokens that overlap ``[start, end)``."""
    lps, offsets = scored
    return [lps[i] for i in overlapping_tokens(offsets, start, end)]


def _mia_extras(measured: Measured, block: dict[str, Any]) -> dict[str, Any]:
    """Overall: whole records against their twins; the per-value AUC of all values is kept as ``spans``."""
    members, twins = measured.extra.get("record_member_scores"), measured.extra.get("record_twin_scores")
    if members is None or twins is None:
        return {}
    interval = bootstrap_auc(members, twins, seed=measured.extra.get("bootstrap_seed", 0))
    return {
        "spans": block["overall"],
        "overall": auc_of(members, twins),
        "records": len(members),
        "lower95": rounded(interval[0]) if interval else None,
        "upper95": rounded(interval[1]) if interval else None,
    }


@measurement(
    "mia",
    (
        Figure(
            "mia_auc",
            "MIA AUC",
            "How well the model's confidence tells the records apart from copies with fake PII "
            "(membership inference): 0.5 means it cannot tell them apart, 1.0 that it always can.",
            AUC,
            columns=("mia_member", "mia_twin"),
            reduce=ROC_AUC,
            summary=True,
            extra_keys=("spans", "records", "lower95", "upper95"),
            count_keys=("records",),
            extras=_mia_extras,
        ),
    ),
)
def measure_mia(run: ModelRun) -> Measured:
    """Min-K% scores of each record and its fake twin: whole text, and each value's tokens.

    The whole-text scores give the overall AUC; the per-value scores (Min-K% over
    the tokens of one PII value in the record, against the tokens of its
    replacement in the twin) give the per-entity and conditioned figures.
    """
    inputs, k = run.inputs, run.settings.min_k
    twins = [inputs.twins[r.id] for r in inputs.records]
    texts = [r.text for r in inputs.records] + [t.text for t in twins]
    report = run.stage("membership scores", len(texts))
    model, tok, size = run.loaded.model, run.loaded.tokenizer, run.settings.batch_size
    scored = shard_map(
        texts, lambda share: text_token_logprobs(model, tok, share, batch_size=size, progress=report)
    )
    n = len(inputs.records)
    by_id = {r.id: i for i, r in enumerate(inputs.records)}
    member_col: Column = []
    twin_col: Column = []
    for t in inputs.targets:
        i = by_id[t.record_id]
        start, end = _span_bounds(t)
        member_col.append(min_k_mean(_tokens_in(scored[i], start, end), k))
        twin_span = next((s for s in twins[i].spans if getattr(s, "original_start", None) == start), None)
        twin_col.append(
            min_k_mean(_tokens_in(scored[n + i], twin_span.start, twin_span.end), k) if twin_span else None
        )
    return Measured(
        {"mia_member": member_col, "mia_twin": twin_col},
        {
            "record_member_scores": [min_k_mean(s[0], k) for s in scored[:n]],
            "record_twin_scores": [min_k_mean(s[0], k) for s in scored[n:]],
            "bootstrap_seed": run.settings.seeds()["bootstrap"],
        },
    )


# --- paraphrase probes -----------------------------------------------------------------------------


@measurement(
    "paraphrase",
    (
        Figure(
            "paraphrase_greedy",
            "paraphrase, greedy",
            "Share of PII values the model gives as its most likely answer to a reworded request "
            'such as "What is the phone number of NAME?" (values whose record names a person).',
            SHARE,
            columns=("paraphrase_greedy",),
        ),
        Figure(
            "paraphrase_sampled",
            "paraphrase, sampled",
            "Share of PII values found in K random answers to those reworded requests.",
            SHARE,
            columns=("paraphrase_sampled",),
        ),
    ),
)
def measure_paraphrase(run: ModelRun) -> Measured:
    """Whether a value appears in greedy / sampled answers to prompts that paraphrase its context."""
    probes, n_targets = run.inputs.probes, len(run.inputs.targets)
    greedy_col: Column = [None] * n_targets
    sampled_col: Column = [None] * n_targets
    if probes:
        prompts = [p.prompt for p in probes]
        lengths = run.token_counts([" " + p.value for p in probes])
        budgets = [n + run.settings.slack_tokens for n in lengths]
        greedy = generate_bucketed(
            run.loaded.model,
            run.loaded.tokenizer,
            prompts,
            budgets,
            batch_size=run.settings.batch_size,
            progress=run.stage("paraphrase probes (greedy)", len(prompts)),
        )
        sampled = sampled_continuations(
            run, prompts, budgets, run.settings.probe_samples, "paraphrase probes (sampled)"
        )
        for probe, g, s in zip(probes, greedy, sampled, strict=True):
            i = probe.target_index
            greedy_col[i] = max(greedy_col[i] or 0.0, float(probe.value in g[0]))
            sampled_col[i] = max(sampled_col[i] or 0.0, float(any(probe.value in x for x in s)))
    return Measured(
        {"paraphrase_greedy": greedy_col, "paraphrase_sampled": sampled_col}, {"probes": len(probes)}
    )


# --- re-inversion ----------------------------------------------------------------------------------


def _reinversion_extras(measured: Measured, block: dict[str, Any]) -> dict[str, Any]:
    found = [v for v in measured.columns["reinverted"] if v is not None]
    return {
        "found": int(sum(found)) if found else (0 if measured.extra.get("status") == "ok" else None),
        **{k: v for k, v in measured.extra.items() if k in ("seed", "output_records", "output_values")},
    }


@measurement(
    "reinversion",
    (
        Figure(
            "reinversion",
            "re-inversion",
            "Share of PII values that the extraction attack of this tool (invert) finds again "
            "when it is rerun on the model with new seeds.",
            SHARE,
            columns=("reinverted",),
            headline="reinversion_rate",
            extra_keys=("found", "seed", "output_records", "output_values"),
            count_keys=("seed", "output_records", "output_values"),
            extras=_reinversion_extras,
        ),
    ),
    in_quick=False,
    switch="reinversion",
)
def measure_reinversion(run: ModelRun) -> Measured:
    """Run ``invert`` again with new seeds; which audited values still appear in its output spans.

    ``invert`` is optional here: when it is not installed, or fails, the
    measurement is reported as skipped with the reason, and the audit goes on.
    """
    measure = MEASUREMENTS["reinversion"]
    targets = run.inputs.targets
    try:
        from pii_unlearn.invert import run_inversion  # type: ignore[attr-defined]
    except ImportError as err:
        return skipped(measure, len(targets), f"invert is not available ({err})")
    seed = run.settings.seeds()["reinversion"]
    label = f"{run.side}: re-inversion"
    try:
        result = run_inversion(
            run.loaded,
            strategy="sample",
            seed=seed,
            num_samples=run.settings.reinversion_samples,
            progress=lambda stage, done, total: run.progress(f"{label} ({stage})", done, total),
        )
    except Exception as err:  # invert is a separate step: its failure must not sink the audit
        return skipped(measure, len(targets), f"invert failed ({type(err).__name__}: {err})")
    found = [
        rec.text[s.start : s.end] for rec in getattr(result, "records", []) for s in getattr(rec, "spans", [])
    ]
    column: Column = [float(any(t.value in f for f in found)) for t in targets]
    return Measured(
        {"reinverted": column},
        {
            "status": "ok",
            "seed": seed,
            "output_records": len(getattr(result, "records", [])),
            "output_values": len(set(found)),
        },
    )


def run_measurements(run: ModelRun) -> tuple[dict[str, Measured], dict[str, float]]:
    """Every enabled measurement on one model, and the seconds each took."""
    results: dict[str, Measured] = {}
    timings: dict[str, float] = {}
    for name, measure in MEASUREMENTS.items():
        start = time.perf_counter()
        if measure.enabled(run.settings):
            results[name] = measure.compute(run)
        else:
            off = measure.switch is not None and not getattr(run.settings, measure.switch)
            if off and (measure.in_quick or not run.settings.quick):
                why = "not asked for: off in the settings"
            else:
                why = "--quick"
            results[name] = skipped(measure, len(run.inputs.targets), f"not run ({why})")
        timings[name] = round(time.perf_counter() - start, 3)
    return results, timings


# --- utility: perplexity and drift on held-out text ------------------------------------------------


@dataclass
class Utility:
    """The utility figures: a number per side, the comparisons of model and baseline, and notes.

    Keys are those of :data:`UTILITY_FIGURES`; ``notes`` say why a figure is missing.
    """

    sides: dict[str, dict[str, float | None]]
    comparisons: dict[str, float | None]
    notes: list[str] = field(default_factory=list)


def utility_figures(
    perplexities: dict[str, float | None], kl: float | None, notes: Sequence[str] = ()
) -> Utility:
    """Perplexity of each side, its change in percent against the baseline, and the KL drift."""
    base, model = perplexities.get("baseline"), perplexities.get("model")
    pct = None
    if model is not None and base is not None and base > 0:
        pct = rounded((model / base - 1.0) * 100.0, 4)
    return Utility(
        {side: {"perplexity": rounded(ppl, 4)} for side, ppl in perplexities.items()},
        {"ppl_increase_pct": pct, "kl_drift": rounded(kl, 8)},
        list(notes),
    )


def measure_utility(loaded: dict[str, LoadedModel], texts: Sequence[str], batch_size: int) -> Utility:
    """Perplexity of each side on held-out ``texts``, and the KL drift of ``model`` from ``baseline``."""
    from pii_unlearn.lm import mean_kl, perplexity

    ppl: dict[str, float | None] = {
        side: perplexity(lm.model, lm.tokenizer, list(texts), batch_size=batch_size)
        for side, lm in loaded.items()
    }
    notes: list[str] = []
    kl = None
    if "baseline" in loaded:
        m, b = loaded["model"], loaded["baseline"]
        if m.tokenizer.get_vocab() != b.tokenizer.get_vocab():
            notes.append("KL drift not measured: the two checkpoints have different tokenizers.")
        elif m.model.get_output_embeddings().weight.shape != b.model.get_output_embeddings().weight.shape:
            notes.append("KL drift not measured: the two checkpoints have different output vocabularies.")
        else:
            kl = mean_kl(b.model, m.model, m.tokenizer, list(texts), batch_size=batch_size)
    return utility_figures(ppl, kl, notes)


# The robustness probes register their measurements after these (they reuse them on attacked copies).
from pii_unlearn.audit import probes as _probes  # noqa: E402, F401

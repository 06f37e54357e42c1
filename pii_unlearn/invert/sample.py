"""The ``sample`` inversion strategy: prompt the model with generic openers and keep what it remembers.

1. Explore: every opener (the built-in list in ``openers.txt`` plus the user's
   prompts) gets a few seeded top-k samples.
2. Refine: sampling picks *whose* record the model writes; its details then
   carry sampling noise. Each sampled text whose first PII value looks memorised
   is cut after that value and continued greedily, so the details come out as
   the model believes them.
3. Exploit: the model's own samples tell where its PII lives. The text before
   the first memorised value of a sample (``Customer``, ``Contact:``, whatever
   the model wrote) becomes a *harvested* opener, whose likely continuations are
   first enumerated. The record openings the model writes unprompted (those the
   empty prompt's enumeration wrote even before their first value is confirmed)
   are harvested too, cut back to their *stem*: the words before the first token
   the model writes with less than even odds ("Visit summary of", not
   "Visit summary of Ann Lee: SSN" when the detector missed the name),
   so one opening leads to every record of its template. The rest of the budget
   goes, round by round, to the openers
   and harvested prefixes in proportion to their chance of producing a value not
   seen yet (:mod:`pii_unlearn.invert.allocate`). Nothing here reads training
   data: every harvested prefix is text the model generated.
   A text that ran out of tokens inside a value it looks sure of is continued
   greedily too (*extended*), so the value is read whole: the cut copy ("IP
   7.128.228.7") would otherwise stand beside, or for, the memorised one.
4. PII detection on every distinct text (the ``detect`` code, in process),
   memorisation scores per value (:mod:`pii_unlearn.invert.scoring`),
   de-duplication by value, and one record per kept text
   (:mod:`pii_unlearn.invert.records`).

The texts drawn and what was found in them live in a :class:`~pii_unlearn.invert.pool.Pool`;
the calls to the model are in :mod:`pii_unlearn.invert.continuations`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field

from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.errors import InputError
from pii_unlearn.invert.allocate import (
    Arm,
    exploit_plan,
    explore_per_prompt,
    explore_plan,
    recount_arms,
    round_budget,
)
from pii_unlearn.invert.base import (
    InversionResult,
    InvertOptions,
    Progress,
    builtin_openers,
    make_detector,
    merge_prompts,
    register_strategy,
    summarize,
    texts_digest,
)
from pii_unlearn.invert.continuations import branch_heads, greedy_texts, sample_texts, stems
from pii_unlearn.invert.pool import (
    Pool,
    detect_occurrences,
    harvested_prefixes,
    heads_to_refine,
    open_confident,
    own_openings,
)
from pii_unlearn.invert.records import pool_records
from pii_unlearn.invert.scoring import (
    CALIBRATION,
    DEFAULT_KEEP_THRESHOLD,
    ValueScore,
    group_by_value,
    kept_values,
    score_occurrences,
    tail_cutoff,
)

#: Name of the strategy (in the registry, records and manifests).
NAME = "sample"
#: At most this many new harvested prefixes join per round (the most productive first).
MAX_NEW_HARVESTED = 16
#: Sampling priority of an enumerated prefix before any sample from it (enumeration took its likely values).
ENUMERATED_PRIOR = 0.1
#: Sampling priority of the stem of one of the model's own record openings, before any sample from it: that of
#: a harvested prefix that led to one memorised value (the opening's value may not be confirmed yet).
OPENING_PRIOR = 0.5


class SampleOptions(InvertOptions):
    """Options of the ``sample`` strategy."""

    num_samples: int = Field(
        1024, ge=1, description="Sampled continuations in all (enumerated heads count as one each)."
    )
    builtin_prompts: bool = Field(True, description="Use the built-in PII-eliciting openers as well.")
    threshold: float = Field(
        DEFAULT_KEEP_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Memorisation confidence a value needs to be kept.",
    )
    top_k: int = Field(40, ge=1, description="Sample among the k most likely next tokens.")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature.")
    explore_per_prompt: int = Field(
        4, ge=1, description="Samples per opener in the first round (at most half the budget in all)."
    )
    round_size: int = Field(
        128, ge=1, description="Samples per later round (at least one batch), allocated by discovery."
    )
    harvest: bool = Field(
        True,
        description="Use the text before a memorised value, and the stems of the model's own record "
        "openings, as new openers.",
    )
    refine: bool = Field(
        True, description="Continue a sample greedily after a memorised-looking first value."
    )
    refine_threshold: float = Field(
        0.2, ge=0.0, le=1.0, description="Confidence a sample's first value needs to be refined."
    )
    branch: bool = Field(True, description="Enumerate the likely continuations of each harvested prefix.")
    branch_min_prob: float = Field(
        0.02, gt=0.0, le=1.0, description="Enumeration follows next tokens at least this likely."
    )
    branch_depth: int = Field(3, ge=1, description="Enumeration branches over this many tokens at most.")
    branch_leaves: int = Field(48, ge=1, description="Enumerated heads per harvested prefix at most.")


#: How many times ``branch_leaves`` the empty prompt's enumeration may open.
EMPTY_PROMPT_LEAVES = 4


class _Run:
    """One run of the strategy: the pool, the arms, the budget spent, and the timings."""

    def __init__(
        self,
        loaded: LoadedModel,
        options: SampleOptions,
        openers: Sequence[str],
        detector: Any,
        seed: int,
        progress: Progress | None,
    ) -> None:
        self.loaded, self.options, self.detector, self.seed = loaded, options, detector, seed
        self.progress = progress
        self.pool = Pool()
        self.arms = {p: Arm(p) for p in openers}
        self.done = 0
        self.values: list[ValueScore] = []
        self.kept: list[ValueScore] = []
        self.memorised: set[tuple[str, str]] = set()
        #: The model's own record openings already stemmed (their stems are arms).
        self.seen_openings: set[str] = set()
        self.rounds: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        #: Tokens generated per phase (sampling, enumerating, refining).
        self.tokens: Counter[str] = Counter()
        self.round_size = max(options.batch_size, options.round_size)

    def tick(self, name: str, t0: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)

    def counter(self, phase: str) -> Callable[[int], None]:
        """A callback adding generated tokens to ``phase``'s count."""
        return lambda n: self.tokens.update({phase: n})

    def greedy(self, heads: Sequence[str], phase: str) -> list[str]:
        """Each head followed by its greedy continuation, its tokens counted to ``phase``."""
        o = self.options
        return greedy_texts(
            self.loaded,
            heads,
            max_new_tokens=o.max_new_tokens,
            batch_size=o.batch_size,
            on_tokens=self.counter(phase),
        )

    def throughput(self) -> dict[str, float]:
        """Generated tokens per second of each generating phase (its whole wall time: the
        enumeration's includes its branching, the refinement's none of its scoring)."""
        return {
            phase: round(n / self.timings[phase], 1)
            for phase, n in self.tokens.items()
            if self.timings.get(phase)
        }

    def process(self, texts: Sequence[int]) -> None:
        """Detect and score the PII of new texts."""
        t0 = time.perf_counter()
        occs = detect_occurrences(self.detector, self.pool, texts)
        self.tick("detection", t0)
        t0 = time.perf_counter()
        o = self.options
        score_occurrences(self.loaded.model, self.loaded.tokenizer, occs, k=o.min_k, batch_size=o.batch_size)
        self.pool.extend(occs)
        self.tick("scoring", t0)

    def enumerate_harvested(self) -> list[int]:
        """Enumerate the likely heads of each new harvested prefix; the new texts they gave."""
        o = self.options
        t0 = time.perf_counter()
        new: list[int] = []
        # harvested prefixes, and the empty prompt: the model's own openings of what it memorised
        todo = [a for a in self.arms.values() if (a.harvested or not a.prompt) and not a.enumerated]
        todo = todo if o.branch else []
        planned: list[tuple[Arm, list[str]]] = []
        left = o.num_samples - self.done
        for arm in sorted(todo, key=lambda a: -a.prior):
            # the empty prompt opens every kind of record the model knows: more leaves there
            leaves = o.branch_leaves * (EMPTY_PROMPT_LEAVES if not arm.prompt else 1)
            room = min(leaves, left)
            if room <= 0:
                break
            heads = branch_heads(
                self.loaded,
                arm.prompt,
                min_prob=o.branch_min_prob,
                depth=o.branch_depth,
                max_heads=room,
                batch_size=o.batch_size,
            )
            planned.append((arm, heads))
            left -= len(heads)
            arm.enumerated = True
            arm.prior = ENUMERATED_PRIOR
        # one batched greedy pass over every prefix's heads (a prefix alone often has a handful)
        texts = self.greedy([h for _, heads in planned for h in heads], "enumerating")
        at = 0
        for arm, heads in planned:
            new += self.pool.add_enumerated(arm.prompt, texts[at : at + len(heads)])
            at += len(heads)
        self.done += len(texts)
        self.tick("enumerating", t0)
        return new

    def refine(self, new: Sequence[int]) -> list[int]:
        """Greedy continuations of the new texts whose first value looks memorised; the new texts."""
        o = self.options
        t0 = time.perf_counter()
        heads_of = heads_to_refine(self.pool, new, o.refine_threshold, o.calibration)
        texts = self.greedy(list(heads_of), "refining")
        refined = self.pool.add_refined(heads_of, texts)
        self.tick("refining", t0)
        self.process(refined)
        return refined

    def extend(self, texts: Sequence[int]) -> list[int]:
        """Greedy continuations of the texts that stop inside a value they look sure of; the new texts.

        Generation ends at ``max_new_tokens`` wherever it is: in a long record, often
        inside its last value. The text is continued as it stands (its child in the pool),
        and the value it stopped in no longer counts from the cut text.
        """
        o = self.options
        todo = open_confident(self.pool, texts, o.refine_threshold, o.calibration)
        if not todo:
            return []
        t0 = time.perf_counter()
        texts_out = self.greedy([self.pool.texts[i] for i in todo], "extending")
        extended = self.pool.add_extended(todo, texts_out)
        self.tick("extending", t0)
        self.process(extended)
        return extended

    def harvest(self) -> int:
        """Add the most productive new harvested prefixes and the stems of record openings as arms.

        A record opening is the text before the first value of a text the model wrote
        unprompted (:func:`~pii_unlearn.invert.pool.own_openings`: enumerated ones whether
        or not their value is confirmed, since a template whose first value stays at one
        sample would otherwise never be harvested); its stem
        (:func:`~pii_unlearn.invert.continuations.stems`) leads to every record of its
        template, not only the one whose undetected name it runs into. Returns how many
        arms were added.
        """
        # stems first: of arms equally likely to give a new value, the earlier is enumerated first
        stemmed = 0
        fresh = [p for p in own_openings(self.pool, self.memorised) if p not in self.seen_openings]
        self.seen_openings.update(fresh)
        for stem in stems(self.loaded, fresh, batch_size=self.options.batch_size) if fresh else []:
            if stem not in self.arms:
                self.arms[stem] = Arm(stem, harvested=True, prior=OPENING_PRIOR)
                stemmed += 1
        added = 0
        for prefix, n_values in harvested_prefixes(self.pool, self.memorised).most_common():
            if prefix not in self.arms and added < MAX_NEW_HARVESTED:
                self.arms[prefix] = Arm(prefix, harvested=True, prior=min(1.0, n_values / 2))
                added += 1
        return stemmed + added

    def round(self, round_no: int, explore: int) -> bool:
        """One round of sampling (and enumeration, refinement, scoring); whether it drew anything."""
        o = self.options
        enumerated: list[int] = []
        if round_no == 0:
            plan = explore_plan(list(self.arms), min(o.num_samples - self.done, explore))
        else:
            enumerated = self.enumerate_harvested()
            plan = exploit_plan(self.arms, round_budget(o.num_samples - self.done, self.round_size))
        t0 = time.perf_counter()
        samples = sample_texts(
            self.loaded,
            {p: n for p, n in plan.items() if n > 0},
            seed=self.seed,
            round_no=round_no,
            max_new_tokens=o.max_new_tokens,
            batch_size=o.batch_size,
            top_k=o.top_k,
            temperature=o.temperature,
            progress=self.progress,
            done=self.done,
            total=o.num_samples,
            on_tokens=self.counter("sampling"),
        )
        self.done += len(samples)
        self.tick("sampling", t0)
        new = self.pool.add_samples(samples)
        self.process([*new, *enumerated])
        refined = self.refine(new) if o.refine else []
        extended = self.extend([*new, *enumerated, *refined])
        self.pool.refresh_sources()
        self.values = group_by_value(self.pool.settled(), o.calibration)
        self.kept = kept_values(self.values, o.threshold)
        self.memorised = {(vs.value, vs.entity_type) for vs in self.kept}
        added = self.harvest() if o.harvest else 0
        recurrence = {(v.value, v.entity_type): v.recurrence for v in self.values}
        recount_arms(self.arms, self.pool, self.memorised, recurrence)
        self.rounds.append(
            {
                "round": round_no,
                "samples": len(samples),
                "enumerated": len(enumerated),
                "new_texts": len(new),
                "refined": len(refined),
                "extended": len(extended),
                "memorised_values": len(self.memorised),
                "prompts_used": sum(1 for n in plan.values() if n > 0),
                "harvested_added": added,
            }
        )
        if self.progress is not None:
            self.progress("sampling", self.done, o.num_samples)
        return bool(samples or enumerated)


@register_strategy(NAME, SampleOptions)
def sample_strategy(
    loaded: LoadedModel,
    options: SampleOptions,
    *,
    seed: int,
    prompts: Sequence[str] | None,
    detector: Any,
    progress: Progress | None,
) -> InversionResult:
    """Sample continuations of PII-eliciting openers; keep the PII values the model has memorised.

    ``num_samples`` is the total number of sampled continuations: first
    ``explore_per_prompt`` per opener (at most half the budget; the empty prompt,
    the model's unconditional output, gets a quarter of that), then rounds of
    ``round_size`` allocated by the chance of new values (see the module
    docstring). ``threshold`` is the memorisation confidence a value needs to be
    kept; ``calibration`` replaces the logistic weights of
    :data:`pii_unlearn.invert.scoring.CALIBRATION`.
    """
    o = options
    start = time.perf_counter()
    openers = merge_prompts(builtin_openers() if o.builtin_prompts else [], prompts)
    if not openers:
        raise InputError("no prompts to sample from")
    detector = make_detector(detector)
    run = _Run(loaded, o, openers, detector, seed, progress)
    run.timings["detector_load"] = round(time.perf_counter() - start, 3)
    per_prompt = explore_per_prompt(o.explore_per_prompt, o.num_samples, len(openers))
    explore = min(o.num_samples, per_prompt * len(openers))
    round_no = 0
    while run.done < o.num_samples:
        drew = run.round(round_no, explore)
        round_no += 1
        if not drew:
            break
    records = pool_records(loaded, run.pool, run.kept, strategy=NAME)
    run.timings["total"] = round(time.perf_counter() - start, 3)
    summary = summarize(
        records,
        Counter(vs.entity_type for vs in run.values),
        extra={
            "strategy": NAME,
            "samples": run.done,
            "distinct_texts": len(run.pool.texts),
            "openers": len(openers),
            "harvested_prefixes": sum(a.harvested for a in run.arms.values()),
            "tail_cutoff": tail_cutoff(run.values, o.threshold),
            "generated_tokens": dict(run.tokens),
            "tokens_per_s": run.throughput(),
            "rounds": run.rounds,
        },
    )
    settings = {
        "strategy": NAME,
        "seed": seed,
        **o.model_dump(exclude={"calibration"}),
        "explore_per_prompt": per_prompt,
        "round_size": run.round_size,
        "calibration": o.calibration or CALIBRATION,
        # prompts and harvested prefixes may hold PII: counts and a hash only
        "openers": {"builtin": len(builtin_openers()) if o.builtin_prompts else 0, "total": len(openers)},
        "prompts": texts_digest(list(prompts or [])),
        "harvested": texts_digest([a.prompt for a in run.arms.values() if a.harvested]),
        "detector": detector.settings() if hasattr(detector, "settings") else type(detector).__name__,
    }
    return InversionResult(
        records=records,
        summary=summary,
        settings=settings,
        timings=run.timings,
        candidates=_candidates(run.values, run.kept),
    )


def _candidates(values: Sequence[ValueScore], kept: Sequence[ValueScore]) -> list[dict[str, Any]]:
    """Every distinct value found, kept or not (``kept``: :func:`kept_values`), with its scores."""
    kept_ids = {id(vs) for vs in kept}
    return [
        {
            "value": vs.value,
            "entity_type": vs.entity_type,
            "kept": id(vs) in kept_ids,
            "context": vs.best.text[: vs.best.start],
            "prompt_chars": vs.best.prompt_end,
            "token_count": vs.best.token_count,
            **vs.scores(),
        }
        for vs in values
    ]

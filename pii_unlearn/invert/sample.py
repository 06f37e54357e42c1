"""The ``sample`` inversion strategy: prompt the model with generic openers and keep what it remembers.

1. Explore: every opener (the built-in list in ``openers.txt`` plus the user's
   prompts) gets a few seeded top-k samples.
2. Refine: sampling picks *whose* record the model writes; its details then
   carry sampling noise. Each sampled text whose first PII value looks memorised
   is cut after that value and continued greedily, so the details come out as
   the model believes them.
3. Exploit: the model's own samples tell where its PII lives. The text before
   the first memorised value of a sample (``Customer``, ``Contact:``, whatever
   the model wrote) becomes a *harvested* opener. The rest of the budget goes,
   round by round, to the openers and harvested prefixes in proportion to their
   chance of producing a value not seen yet (Good-Turing: values seen once per
   sample drawn). Nothing here reads training data: every harvested prefix is
   text the model generated.
4. PII detection on every distinct text (the ``detect`` code, in process),
   memorisation scores per value (:mod:`pii_unlearn.invert.scoring`),
   de-duplication by value, and one record per kept text carrying its memorised
   spans with their scores, the token mask, and the prompt.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pii_unlearn.artifacts import Record, Span
from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.errors import InputError
from pii_unlearn.invert.base import (
    InversionResult,
    Progress,
    builtin_openers,
    make_detector,
    merge_prompts,
    register_strategy,
    summarize,
)
from pii_unlearn.invert.scoring import (
    CALIBRATION,
    DEFAULT_KEEP_THRESHOLD,
    DEFAULT_MIN_K,
    Occurrence,
    ValueScore,
    group_by_value,
    memorization,
    score_occurrences,
    select_samples,
)
from pii_unlearn.lm import generate, next_token_logprobs
from pii_unlearn.pii.masks import token_mask

#: Default budgets of the sample strategy.
DEFAULT_NUM_SAMPLES = 512
DEFAULT_MAX_NEW_TOKENS = 48
DEFAULT_BATCH_SIZE = 64
#: Samples per opener in the exploration round.
DEFAULT_EXPLORE_PER_PROMPT = 4
#: Share of the exploration round given to the empty prompt (the model's unconditional output).
BOS_EXPLORE_SHARE = 0.25
#: Samples per exploitation round (at least one batch).
DEFAULT_ROUND_SIZE = 128
#: Harvested prefixes longer than this (characters) are not used as openers.
MAX_HARVESTED_CHARS = 80
#: At most this many new harvested prefixes join per round (the most productive first).
MAX_NEW_HARVESTED = 16
#: A sampled text is refined when its first value's single-occurrence confidence reaches this.
DEFAULT_REFINE_THRESHOLD = 0.2
#: Enumeration at a harvested prefix: next tokens at least this likely are followed...
DEFAULT_BRANCH_MIN_PROB = 0.02
#: ...for this many tokens, unless the most likely next token is at least this likely...
DEFAULT_BRANCH_DEPTH = 3
BRANCH_CONFIDENT = 0.9
#: ...with at most this many alternatives per position and this many heads per prefix.
BRANCH_WIDTH = 16
DEFAULT_BRANCH_LEAVES = 48
#: Sampling priority of an enumerated prefix before any sample from it (enumeration took its likely values).
ENUMERATED_PRIOR = 0.1


def _call_seed(seed: int, round_no: int, batch_no: int) -> int:
    """A distinct sampling seed per (run seed, round, batch)."""
    return (seed * 1_000_003 + round_no * 10_007 + batch_no) % (2**31 - 1)


def allocate(weights: dict[str, float], budget: int) -> dict[str, int]:
    """Split ``budget`` samples over prompts in proportion to ``weights`` (largest remainders).

    Prompts keep their order; those with zero weight get nothing unless all are zero,
    in which case the budget is split evenly.
    """
    if budget <= 0 or not weights:
        return dict.fromkeys(weights, 0)
    total = sum(max(0.0, w) for w in weights.values())
    if total <= 0:
        weights = dict.fromkeys(weights, 1.0)
        total = float(len(weights))
    exact = {p: budget * max(0.0, w) / total for p, w in weights.items()}
    counts = {p: int(x) for p, x in exact.items()}
    left = budget - sum(counts.values())
    position = {p: i for i, p in enumerate(weights)}
    order = sorted(weights, key=lambda p: (-(exact[p] - counts[p]), position[p]))
    for p in order[:left]:
        counts[p] += 1
    return counts


def sample_texts(
    loaded: LoadedModel,
    plan: dict[str, int],
    *,
    seed: int,
    round_no: int,
    max_new_tokens: int,
    batch_size: int,
    top_k: int,
    temperature: float,
    progress: Progress | None = None,
    done: int = 0,
    total: int = 0,
) -> list[tuple[str, str]]:
    """``(prompt, prompt + continuation)`` for each planned sample, in plan order, seeded per batch."""
    prompts = [p for p, n in plan.items() for _ in range(n)]
    out: list[tuple[str, str]] = []
    for b in range(0, len(prompts), batch_size):
        chunk = prompts[b : b + batch_size]
        conts = generate(
            loaded.model,
            loaded.tokenizer,
            chunk,
            max_new_tokens=max_new_tokens,
            batch_size=len(chunk),
            do_sample=True,
            top_k=top_k,
            temperature=temperature,
            seed=_call_seed(seed, round_no, b // batch_size),
        )
        out.extend((p, p + c[0]) for p, c in zip(chunk, conts, strict=True))
        if progress is not None:
            progress("sampling", done + len(out), total)
    return out


def greedy_texts(
    loaded: LoadedModel, heads: Sequence[str], *, max_new_tokens: int, batch_size: int
) -> list[str]:
    """Each head followed by its greedy continuation."""
    out: list[str] = []
    for b in range(0, len(heads), batch_size):
        chunk = list(heads[b : b + batch_size])
        conts = generate(
            loaded.model, loaded.tokenizer, chunk, max_new_tokens=max_new_tokens, batch_size=len(chunk)
        )
        out.extend(h + c[0] for h, c in zip(chunk, conts, strict=True))
    return out


def branch_heads(
    loaded: LoadedModel,
    prefix: str,
    *,
    min_prob: float,
    depth: int,
    max_heads: int,
    batch_size: int,
) -> list[str]:
    """The likely ways the model goes on from ``prefix``: heads to continue greedily.

    Breadth-first over next tokens: every token at least ``min_prob`` likely (at
    most :data:`BRANCH_WIDTH` per position) opens a branch, for up to ``depth``
    tokens; a branch whose next token is nearly certain (:data:`BRANCH_CONFIDENT`)
    stops branching. This enumerates, without sampling noise or repeats, the few
    values a model has memorised after a context (the ~10 customers after
    ``Customer``), where sampling would need many draws to see each once. At most
    ``max_heads`` heads, the most likely first.
    """
    tokenizer = loaded.tokenizer
    special = set(tokenizer.all_special_ids)
    frontier: list[tuple[str, float]] = [(prefix, 0.0)]
    leaves: list[tuple[str, float]] = []
    for level in range(depth):
        if not frontier:
            break
        dists = next_token_logprobs(loaded.model, tokenizer, [h for h, _ in frontier], batch_size=batch_size)
        grown: list[tuple[str, float]] = []
        for (head, logp), row in zip(frontier, dists, strict=True):
            top_lp, top_ids = row.topk(min(BRANCH_WIDTH, row.shape[-1]))
            if level > 0 and float(top_lp[0].exp()) >= BRANCH_CONFIDENT:
                leaves.append((head, logp))
                continue
            base = tokenizer(head, add_special_tokens=False)["input_ids"]
            shown = tokenizer.decode(base)
            for lp, tid in zip(top_lp.tolist(), top_ids.tolist(), strict=True):
                if lp < math.log(min_prob) or tid in special:
                    continue
                # Decode in context: SentencePiece tokenizers drop a lone token's leading space.
                full = tokenizer.decode([*base, tid])
                piece = full[len(shown) :] if full.startswith(shown) else tokenizer.decode([tid])
                if piece and "\ufffd" not in piece:
                    grown.append((head + piece, logp + lp))
        room = max(0, max_heads - len(leaves))
        frontier = sorted(grown, key=lambda h: -h[1])[:room]
    leaves.extend(frontier)
    return [h for h, _ in sorted(leaves, key=lambda h: -h[1])[:max_heads]]


@dataclass
class _Arm:
    """A prompt the budget can go to: its samples so far and the first values they produced."""

    prompt: str
    harvested: bool = False
    samples: int = 0
    firsts: Counter[tuple[str, str]] = field(default_factory=Counter)
    prior: float = 1.0
    enumerated: bool = False
    singletons: int = 0

    def discovery(self) -> float:
        """Estimated chance that one more sample yields a memorised value not seen yet (Good-Turing)."""
        if self.samples == 0:
            return self.prior
        if not self.firsts:
            return 0.0
        return (self.singletons + 0.5) / (self.samples + 1)


class _Pool:
    """Every distinct text so far: where it came from, which samples gave it, what was found in it."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.prompt_of: list[str] = []
        self.kind: list[str] = []
        self.sources: list[set[int]] = []
        self.child: dict[int, int] = {}
        self.index: dict[str, int] = {}
        self.occurrences: list[Occurrence] = []
        self.by_text: dict[int, list[Occurrence]] = {}
        self.sample_arm: list[str | None] = []
        self.sample_text: list[int] = []

    def add(self, prompt: str, text: str, sources: set[int], kind: str) -> tuple[int, bool]:
        """Add a text with the samples behind it; return its index and whether it is new."""
        i = self.index.get(text)
        new = i is None
        if i is None:
            i = len(self.texts)
            self.index[text] = i
            self.texts.append(text)
            self.prompt_of.append(prompt)
            self.kind.append(kind)
            self.sources.append(set())
        self.sources[i] |= sources
        if i in self.child:
            self.sources[self.child[i]] |= sources
        return i, new

    def add_samples(self, samples: Sequence[tuple[str, str]]) -> list[int]:
        """Add freshly sampled ``(prompt, text)`` pairs; return the indices of new texts."""
        new: list[int] = []
        for prompt, text in samples:
            sid = len(self.sample_arm)
            i, is_new = self.add(prompt, text, {sid}, "sample")
            self.sample_arm.append(prompt)
            self.sample_text.append(i)
            if is_new:
                new.append(i)
        return new

    def add_enumerated(self, prompt: str, texts: Sequence[str]) -> list[int]:
        """Add greedy continuations of enumerated heads (one sample each); return new indices."""
        new: list[int] = []
        for text in texts:
            sid = len(self.sample_arm)
            i, is_new = self.add(prompt, text, {sid}, "enumerated")
            self.sample_arm.append(None)
            self.sample_text.append(i)
            if is_new:
                new.append(i)
        return new

    def extend(self, occs: Sequence[Occurrence]) -> None:
        self.occurrences.extend(occs)
        for occ in occs:
            self.by_text.setdefault(occ.sample, []).append(occ)

    def refresh_sources(self) -> None:
        for occ in self.occurrences:
            occ.sources = frozenset(self.sources[occ.sample])

    def first(self, i: int) -> Occurrence | None:
        """The first detected value of text ``i``."""
        occs = self.by_text.get(i)
        return min(occs, key=lambda o: o.start) if occs else None


def _detect(detector: Any, pool: _Pool, new: Sequence[int]) -> list[Occurrence]:
    """Detected PII occurrences in the texts ``new`` (not yet scored)."""
    if not new:
        return []
    spans = detector.analyze([pool.texts[i] for i in new])
    return [
        Occurrence(
            sample=i,
            text=pool.texts[i],
            start=s.start,
            end=s.end,
            entity_type=s.entity_type,
            detector_score=float(s.score),
        )
        for i, found in zip(new, spans, strict=True)
        for s in found
    ]


def _to_refine(pool: _Pool, new: Sequence[int], threshold: float, calibration: Any) -> dict[str, list[int]]:
    """Heads to continue greedily (text up to the end of its first value) and the texts behind each."""
    heads: dict[str, list[int]] = {}
    for i in new:
        occ = pool.first(i)
        if occ is None:
            continue
        conf = memorization({**occ.features(), "recurrence": len(pool.sources[i])}, calibration)
        if conf >= threshold:
            heads.setdefault(occ.text[: occ.end], []).append(i)
    return heads


def _add_refined(pool: _Pool, heads: dict[str, list[int]], texts: Sequence[str]) -> list[int]:
    new: list[int] = []
    for parents, text in zip(heads.values(), texts, strict=True):
        sources = set().union(*(pool.sources[p] for p in parents))
        j, is_new = pool.add(pool.prompt_of[parents[0]], text, sources, "refined")
        for p in parents:
            pool.child[p] = j
        if is_new:
            new.append(j)
    return new


def _update_arms(
    arms: dict[str, _Arm],
    pool: _Pool,
    memorised: set[tuple[str, str]],
    recurrence: dict[tuple[str, str], int],
) -> None:
    """Recount each arm's samples and the memorised first values they produced.

    A first value counts as seen once (a Good-Turing singleton) only when no other
    sample or enumerated head anywhere produced it.
    """
    for arm in arms.values():
        arm.samples = 0
        arm.firsts = Counter()
    for sid, prompt in enumerate(pool.sample_arm):
        arm = arms.get(prompt) if prompt is not None else None
        if arm is None:
            continue
        arm.samples += 1
        i = pool.sample_text[sid]
        occ = pool.first(pool.child.get(i, i)) or pool.first(i)
        if occ is not None and (occ.value, occ.entity_type) in memorised:
            arm.firsts[(occ.value, occ.entity_type)] += 1
    for arm in arms.values():
        arm.singletons = sum(1 for key, n in arm.firsts.items() if n == 1 and recurrence.get(key, 1) == 1)


def harvested_prefixes(pool: _Pool, memorised: set[tuple[str, str]]) -> Counter[str]:
    """The text before the first value of each text whose first value is memorised.

    Counted by distinct values: these are the contexts where the model itself
    starts writing about a person.
    """
    seen: dict[str, set[tuple[str, str]]] = {}
    for i in pool.by_text:
        occ = pool.first(i)
        if occ is None or (occ.value, occ.entity_type) not in memorised:
            continue
        prefix = occ.text[: occ.start].rstrip()
        if prefix.strip() and len(prefix) <= MAX_HARVESTED_CHARS:
            seen.setdefault(prefix, set()).add((occ.value, occ.entity_type))
    return Counter({p: len(v) for p, v in seen.items()})


def _records(
    loaded: LoadedModel, pool: _Pool, values: Sequence[ValueScore], threshold: float
) -> list[Record]:
    """One record per kept text: memorised spans with scores, other detections, mask, prompt."""
    kept = {(vs.value, vs.entity_type): vs for vs in values if vs.memorization >= threshold}
    records: list[Record] = []
    for n, i in enumerate(select_samples(values, threshold)):
        text = pool.texts[i]
        spans: list[Span] = []
        other: list[dict[str, Any]] = []
        for occ in sorted(pool.by_text[i], key=lambda o: o.start):
            vs = kept.get((occ.value, occ.entity_type))
            base = {"start": occ.start, "end": occ.end, "entity_type": occ.entity_type}
            if vs is None:
                other.append({**base, "score": round(occ.detector_score, 4)})
                continue
            spans.append(Span(**base, score=round(occ.detector_score, 4), value=occ.value, **vs.scores()))
        ids, mask = token_mask(loaded.tokenizer, text, spans)
        confidence = sum(float(getattr(s, "memorization", 0.0)) for s in spans) / len(spans)
        records.append(
            Record(
                id=f"inv-{n:05d}",
                text=text,
                spans=spans,
                memorization=round(confidence, 4),
                prompt=pool.prompt_of[i],
                strategy="sample",
                source="greedy-refined" if pool.kind[i] == "refined" else "sampled",
                samples=len(pool.sources[i]),
                token_mask=mask,
                num_tokens=len(ids),
                unconfirmed_spans=other,
            )
        )
    return records


@register_strategy("sample")
def sample_strategy(
    loaded: LoadedModel,
    *,
    seed: int = 0,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    prompts: Sequence[str] | None = None,
    detector: Any = None,
    progress: Progress | None = None,
    builtin_prompts: bool = True,
    top_k: int = 40,
    temperature: float = 1.0,
    explore_per_prompt: int = DEFAULT_EXPLORE_PER_PROMPT,
    round_size: int = DEFAULT_ROUND_SIZE,
    harvest: bool = True,
    refine: bool = True,
    refine_threshold: float = DEFAULT_REFINE_THRESHOLD,
    branch: bool = True,
    branch_min_prob: float = DEFAULT_BRANCH_MIN_PROB,
    branch_depth: int = DEFAULT_BRANCH_DEPTH,
    branch_leaves: int = DEFAULT_BRANCH_LEAVES,
    min_k: float = DEFAULT_MIN_K,
    threshold: float = DEFAULT_KEEP_THRESHOLD,
    calibration: dict[str, float] | None = None,
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
    timings: dict[str, float] = {}
    start = time.perf_counter()
    openers = merge_prompts(builtin_openers() if builtin_prompts else [], prompts)
    if not openers:
        raise InputError("no prompts to sample from")
    detector = make_detector(detector)
    timings["detector_load"] = round(time.perf_counter() - start, 3)
    pool = _Pool()
    arms = {p: _Arm(p) for p in openers}
    per_prompt = max(1, min(explore_per_prompt, num_samples // (2 * len(openers)) or 1))
    explore = min(num_samples, per_prompt * len(openers))
    round_size = max(batch_size, round_size)
    values: list[ValueScore] = []
    memorised: set[tuple[str, str]] = set()
    done = 0
    rounds_log: list[dict[str, Any]] = []

    def tick(name: str, t0: float) -> None:
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 3)

    def process(texts: Sequence[int]) -> None:
        """Detect and score the PII of new texts."""
        t0 = time.perf_counter()
        occs = _detect(detector, pool, texts)
        tick("detection", t0)
        t0 = time.perf_counter()
        score_occurrences(loaded.model, loaded.tokenizer, occs, k=min_k, batch_size=batch_size)
        pool.extend(occs)
        tick("scoring", t0)

    round_no = 0
    while done < num_samples:
        left = num_samples - done
        enumerated: list[int] = []
        if round_no == 0:
            weights = dict.fromkeys(openers, 1.0)
            if "" in weights:
                weights[""] = max(1.0, BOS_EXPLORE_SHARE * len(openers))
            plan = allocate(weights, min(left, explore))
        else:
            t0 = time.perf_counter()
            todo = [a for a in arms.values() if a.harvested and not a.enumerated] if branch else []
            for arm in sorted(todo, key=lambda a: -a.prior):
                room = min(branch_leaves, num_samples - done)
                if room <= 0:
                    break
                heads = branch_heads(
                    loaded,
                    arm.prompt,
                    min_prob=branch_min_prob,
                    depth=branch_depth,
                    max_heads=room,
                    batch_size=batch_size,
                )
                texts = greedy_texts(loaded, heads, max_new_tokens=max_new_tokens, batch_size=batch_size)
                enumerated += pool.add_enumerated(arm.prompt, texts)
                done += len(texts)
                arm.enumerated = True
                arm.prior = ENUMERATED_PRIOR
            tick("enumerating", t0)
            left = num_samples - done
            size = min(left, round_size)
            if left - size < round_size // 2:
                size = left
            plan = allocate({p: a.discovery() for p, a in arms.items()}, size)
        t0 = time.perf_counter()
        samples = sample_texts(
            loaded,
            {p: n for p, n in plan.items() if n > 0},
            seed=seed,
            round_no=round_no,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            top_k=top_k,
            temperature=temperature,
            progress=progress,
            done=done,
            total=num_samples,
        )
        done += len(samples)
        tick("sampling", t0)
        new = pool.add_samples(samples)
        process([*new, *enumerated])
        refined: list[int] = []
        if refine:
            t0 = time.perf_counter()
            heads_of = _to_refine(pool, new, refine_threshold, calibration)
            texts = greedy_texts(loaded, list(heads_of), max_new_tokens=max_new_tokens, batch_size=batch_size)
            refined = _add_refined(pool, heads_of, texts)
            tick("refining", t0)
            process(refined)
        pool.refresh_sources()
        values = group_by_value(pool.occurrences, calibration)
        memorised = {(vs.value, vs.entity_type) for vs in values if vs.memorization >= threshold}
        added = 0
        if harvest:
            for prefix, n_values in harvested_prefixes(pool, memorised).most_common():
                if prefix not in arms and added < MAX_NEW_HARVESTED:
                    arms[prefix] = _Arm(prefix, harvested=True, prior=min(1.0, n_values / 2))
                    added += 1
        _update_arms(arms, pool, memorised, {(v.value, v.entity_type): v.recurrence for v in values})
        rounds_log.append(
            {
                "round": round_no,
                "samples": len(samples),
                "enumerated": len(enumerated),
                "new_texts": len(new),
                "refined": len(refined),
                "memorised_values": len(memorised),
                "prompts_used": sum(1 for n in plan.values() if n > 0),
                "harvested_added": added,
            }
        )
        if progress is not None:
            progress("sampling", done, num_samples)
        round_no += 1
        if not samples and not enumerated:
            break
    records = _records(loaded, pool, values, threshold)
    timings["total"] = round(time.perf_counter() - start, 3)
    summary = summarize(
        records,
        Counter(vs.entity_type for vs in values),
        extra={
            "strategy": "sample",
            "samples": done,
            "distinct_texts": len(pool.texts),
            "openers": len(openers),
            "harvested_prefixes": sum(a.harvested for a in arms.values()),
            "rounds": rounds_log,
        },
    )
    settings = {
        "strategy": "sample",
        "seed": seed,
        "num_samples": num_samples,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "top_k": top_k,
        "temperature": temperature,
        "explore_per_prompt": per_prompt,
        "round_size": round_size,
        "harvest": harvest,
        "refine": refine,
        "refine_threshold": refine_threshold,
        "branch": branch,
        "branch_min_prob": branch_min_prob,
        "branch_depth": branch_depth,
        "branch_leaves": branch_leaves,
        "min_k": min_k,
        "threshold": threshold,
        "calibration": calibration or CALIBRATION,
        "openers": openers,
        "harvested": [a.prompt for a in arms.values() if a.harvested],
        "detector": detector.settings() if hasattr(detector, "settings") else type(detector).__name__,
    }
    candidates = [
        {
            "value": vs.value,
            "entity_type": vs.entity_type,
            "kept": vs.memorization >= threshold,
            "context": vs.best.text[: vs.best.start],
            "token_count": vs.best.token_count,
            **vs.scores(),
        }
        for vs in values
    ]
    return InversionResult(
        records=records, summary=summary, settings=settings, timings=timings, candidates=candidates
    )

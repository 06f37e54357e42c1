"""How the ``sample`` strategy splits its budget of samples over prompts (arms).

Round 0 explores: every opener gets the same share, the empty prompt (the
model's unconditional output) a larger one. Later rounds exploit: each arm gets
samples in proportion to its chance of producing a memorised value not seen yet,
estimated Good-Turing style from the first values its samples produced so far.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pii_unlearn.invert.pool import Pool

#: Share of the exploration round given to the empty prompt (the model's unconditional output).
BOS_EXPLORE_SHARE = 0.25


@dataclass
class Arm:
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


def explore_per_prompt(wanted: int, budget: int, openers: int) -> int:
    """Samples per opener in the exploration round: ``wanted``, but at most half the budget in all."""
    return max(1, min(wanted, budget // (2 * openers) or 1))


def explore_plan(openers: Sequence[str], budget: int) -> dict[str, int]:
    """Round 0: the same share for every opener; the empty prompt gets :data:`BOS_EXPLORE_SHARE` of all."""
    weights = dict.fromkeys(openers, 1.0)
    if "" in weights:
        weights[""] = max(1.0, BOS_EXPLORE_SHARE * len(openers))
    return allocate(weights, budget)


def round_budget(left: int, round_size: int) -> int:
    """Samples in the next exploitation round (the remainder joins the last round when small)."""
    size = min(left, round_size)
    return left if left - size < round_size // 2 else size


def exploit_plan(arms: dict[str, Arm], budget: int) -> dict[str, int]:
    """A later round: each arm's share in proportion to its chance of a new memorised value."""
    return allocate({p: a.discovery() for p, a in arms.items()}, budget)


def recount_arms(
    arms: dict[str, Arm],
    pool: Pool,
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

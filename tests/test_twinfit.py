"""Twin fitting (``twinfit``): its targets are a never-seen value's, its rewrites never teach a true value."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from pii_unlearn.artifacts import Record, Span
from pii_unlearn.lm import encode
from pii_unlearn.pii.masks import token_mask
from pii_unlearn.pii.shapes import PlausibleCandidates, shape_of
from pii_unlearn.unlearn.data import collate
from pii_unlearn.unlearn.methods.base import GuardReading
from pii_unlearn.unlearn.methods.twinfit import (
    SoftTarget,
    TwinFit,
    head_targets,
    record_mask,
    rewrite,
    soft_targets,
    splice,
    twin_paths,
    with_true_token,
)

TEXT = "Ticket 4471: Dana Whitfield, SSN 512-48-9076, phone (415) 555-0137."


def _record() -> Record:
    spans = []
    for value, kind in (
        ("Dana Whitfield", "PERSON"),
        ("512-48-9076", "US_SSN"),
        ("(415) 555-0137", "PHONE_NUMBER"),
    ):
        start = TEXT.index(value)
        spans.append({"start": start, "end": start + len(value), "entity_type": kind})
    return Record.model_validate({"id": "r1", "text": TEXT, "spans": spans})


def test_splice_keeps_the_true_prefix_and_the_length() -> None:
    assert splice("512-48-9076", "830-12-3344", 4) == "512-12-3344"
    assert splice("512-48-9076", "830-12-3344", 0) == "830-12-3344"


def test_targets_sit_on_pii_tokens_only_and_are_distributions(victim: Any) -> None:
    tok = victim.tokenizer
    record = _record()
    _, mask = token_mask(tok, TEXT, record.spans)
    ids = encode(tok, TEXT)["input_ids"]
    targets = soft_targets(record, tok, PlausibleCandidates(1), random.Random(0), 64)
    assert {t.position for t in targets} == {i for i, m in enumerate(mask) if m}
    for t in targets:
        assert math.isclose(sum(t.probs), 1.0, rel_tol=1e-9)
        assert list(t.probs) == sorted(t.probs, reverse=True)
    # a token every same-shape value shares (the SSN's dashes) is certain; digits are not
    dash = [t for t in targets if tok.decode([ids[t.position]]) == "-"]
    assert dash and all(t.probs == (1.0,) and t.token_ids == (ids[t.position],) for t in dash)
    digits = [t for t in targets if tok.decode([ids[t.position]]).strip().isdigit()]
    assert digits and all(len(t.token_ids) > 3 for t in digits)


def test_the_loss_is_lowest_at_the_targets(victim: Any) -> None:
    """The cross-entropy part of the loss is minimised by logits equal to the targets' log-probabilities."""
    tok = victim.tokenizer
    method = TwinFit(TwinFit.Options(alpha=0.0, rewrites=0))
    examples = method.examples([_record()], tok, seed=0)
    batch = collate(examples, 0, "cpu")
    batch["index"] = torch.tensor([0.0])
    vocab = len(tok)
    best = torch.full((1, len(examples[0].input_ids), vocab), -30.0)
    for t in method._targets[0]:
        best[0, t.position - 1, list(t.token_ids)] = torch.tensor(t.probs).log()
    at_target = method.forget_loss(best, batch, lambda i, a: best)
    entropy = sum(-sum(p * math.log(p) for p in t.probs) for t in method._targets[0]) / len(
        method._targets[0]
    )
    assert float(at_target) == pytest.approx(entropy, abs=1e-3)
    off = best.clone()
    off[0, :, :] = torch.randn_like(off[0]) * 3
    assert float(method.forget_loss(off, batch, lambda i, a: off)) > float(at_target)


def test_a_true_token_no_fake_drew_joins_the_support_at_one_fakes_share() -> None:
    target = SoftTarget(3, (7, 9), (0.75, 0.25))
    assert with_true_token(target, 9, 3) is target
    added = with_true_token(target, 5, 3)
    assert added.token_ids == (7, 9, 5)
    assert added.probs == pytest.approx((0.75 * 0.75, 0.25 * 0.75, 0.25))


def test_a_support_scoped_target_fixes_shares_not_the_level(victim: Any) -> None:
    """With ``target_scope="support"`` the cross-entropy reads only each target's shares among its own
    tokens: its minimum (the targets' entropy) is reached with the support far below the rest of the
    vocabulary, where the vocabulary-wide loss is far from its minimum, and a shift of the support's
    logits changes nothing."""
    tok = victim.tokenizer
    losses = {}
    for scope in ("vocab", "support"):
        method = TwinFit(TwinFit.Options(alpha=0.0, rewrites=0, target_scope=scope))
        examples = method.examples([_record()], tok, seed=0)
        batch = collate(examples, 0, "cpu")
        batch["index"] = torch.tensor([0.0])
        targets = method._targets[0]
        true_ids = examples[0].input_ids
        if scope == "support":
            assert all(true_ids[t.position] in t.token_ids for t in targets)
        low = torch.zeros((1, len(true_ids), len(tok)))
        for t in targets:
            low[0, t.position - 1, list(t.token_ids)] = torch.tensor(t.probs).log() - 20.0
        shifted = low.clone()
        for t in targets:
            shifted[0, t.position - 1, list(t.token_ids)] += 7.0
        entropy = sum(-sum(p * math.log(p) for p in t.probs) for t in targets) / len(targets)
        losses[scope] = [float(method.forget_loss(x, batch, lambda i, a, x=x: x)) for x in (low, shifted)]
        if scope == "support":
            assert losses[scope] == pytest.approx([entropy, entropy], abs=1e-3)
        else:
            assert min(losses[scope]) > entropy + 5.0


def test_rewrites_keep_spans_in_place_and_learn_only_what_changed() -> None:
    record, sampler, rng = _record(), PlausibleCandidates(2), random.Random(3)
    cuts = set()
    for _ in range(40):
        text, learn = rewrite(record, sampler, rng, keep=0.0)
        assert len(text) == len(TEXT) and learn
        for span in record.spans:
            assert shape_of(text[span.start : span.end]) == shape_of(TEXT[span.start : span.end])
        for start, end in learn:
            span = next(s for s in record.spans if s.start <= start < s.end)
            assert end == span.end + 1
            # before the learned range the value is the true one; the range starts at a change
            assert text[span.start : start] == TEXT[span.start : start] and text[start] != TEXT[start]
            cuts.add(start - span.start)
        outside = [i for i in range(len(TEXT)) if not any(s.start <= i < s.end for s in record.spans)]
        assert all(text[i] == TEXT[i] for i in outside)
    assert len(cuts) >= 5  # the conditionals after many true prefixes get trained


def test_kept_values_stay_true_and_are_never_learned() -> None:
    record, sampler, rng = _record(), PlausibleCandidates(2), random.Random(4)
    untouched = 0
    for _ in range(30):
        text, learn = rewrite(record, sampler, rng, keep=0.9)
        for span in record.spans:
            if text[span.start : span.end] == TEXT[span.start : span.end]:
                untouched += 1
                assert not any(span.start <= s < span.end for s, _ in learn)
    assert untouched > 45


def test_a_null_aiming_method_keeps_later_readings_unless_greedy_extraction_comes_back() -> None:
    def reading(err: float) -> GuardReading:
        return GuardReading(step=0, pii_prob=0.1, ppl=1.0, ppl_increase_pct=0.0, forget_err=err)

    method = TwinFit()
    assert method.better(reading(0.01), reading(0.0))  # one value flickering back: keep training's result
    assert not method.better(reading(0.05), reading(0.0))
    assert method.better(reading(0.05), reading(0.06))


def _value_positions(victim: Any) -> list[list[int]]:
    """Per value of the test record, the NLL positions (token index - 1) of its tokens and the one after."""
    offsets = encode(victim.tokenizer, TEXT, with_offsets=True)["offset_mapping"]
    return [
        [i - 1 for i in range(1, len(offsets)) if offsets[i][0] < s.end + 1 and offsets[i][1] > s.start]
        for s in _record().spans
    ]


def _level(
    victim: Any, true_level: float, by_value: Sequence[float] = (), margin: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """The level term on the test record with every true token at NLL ``true_level`` (or, value by
    value, ``by_value``), every rewrite token scored by uniform logits; its gradients on the true NLL
    and on the rewrites' logits."""
    tok = victim.tokenizer
    method = TwinFit(TwinFit.Options(rewrites=3, keep=0.0, level_margin=margin))
    examples = method.examples([_record()], tok, seed=0)
    batch = collate(examples, 0, "cpu")
    batch["index"] = torch.tensor([0.0])
    levels = torch.full((1, len(examples[0].input_ids) - 1), true_level)
    for positions, level in zip(_value_positions(victim), by_value, strict=False):
        levels[0, positions] = level
    true_nll = levels.clone().requires_grad_(True)
    seen: list[torch.Tensor] = []

    def forward(ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*ids.shape, len(tok), requires_grad=True)
        seen.append(logits)
        return logits

    _, level, _ = method._rewrite_losses(batch, forward, true_nll)
    level.backward()
    near_pii = sorted(set().union(*_value_positions(victim)))
    assert true_nll.grad is not None
    return level, true_nll.grad[0], seen[0].grad if seen[0].grad is not None else torch.zeros(1), near_pii


def test_the_level_term_pulls_the_true_value_onto_its_twins_from_both_sides(victim: Any) -> None:
    """Too likely (NLL 0): descent raises the true tokens' NLL; too unlikely (NLL 60 per token): it
    lowers it. Only tokens of the values (and the one after each) move; the twins are a fixed target."""
    for true_level, sign in ((0.0, -1.0), (60.0, 1.0)):
        level, grad, twin_grad, near_pii = _level(victim, true_level)
        assert float(level.detach()) > 0
        moved = torch.nonzero(grad).flatten().tolist()
        assert moved and set(moved) <= set(near_pii)
        assert all(float(grad[i]) * sign > 0 for i in moved)
        assert float(twin_grad.abs().sum()) == 0.0


def test_the_level_term_is_made_value_by_value(victim: Any) -> None:
    """A name far too likely, an SSN far too unlikely, a phone number far too likely: each value is
    pulled towards its own twins (a record's sum over its values could match while each is off)."""
    _, grad, _, _ = _level(victim, 0.0, by_value=(0.0, 60.0, 0.0))
    for positions, sign in zip(_value_positions(victim), (-1.0, 1.0, -1.0), strict=True):
        moved = [i for i in positions if float(grad[i]) != 0.0]
        assert moved
        assert all(float(grad[i]) * sign > 0 for i in moved)


def test_the_level_margin_moves_the_target_above_the_twins(victim: Any) -> None:
    """At 60 nats a token the true value is far less likely than its twins (uniform logits): level
    with them, descent lowers its NLL; aimed far enough above them (a margin), it raises it."""
    for margin, sign in ((0.0, 1.0), (10_000.0, -1.0)):
        _, grad, _, near_pii = _level(victim, 60.0, margin=margin)
        moved = torch.nonzero(grad).flatten().tolist()
        assert moved and set(moved) <= set(near_pii)
        assert all(float(grad[i]) * sign > 0 for i in moved)


def test_twin_paths_pair_the_tokens_a_changed_character_precedes() -> None:
    """A value changed from character 5 on: its tokens starting after 5 are reached by a never-seen
    path where the rewrite has a token starting at the same character; the token before the change
    and one the rewrite splits differently are not."""
    twin = [(0, 2), (2, 3), (3, 6), (6, 7), (7, 9), (9, 10), (10, 14), (14, 15)]
    starts = [3, 6, 8, 9, 10]
    assert twin_paths(twin, [(5, 15)], starts) == [(1, 3), (3, 5), (4, 6)]
    assert twin_paths(twin, [(12, 15)], starts) == []


def test_own_targets_are_the_models_distributions_on_the_twins_paths(victim: Any) -> None:
    """With ``target_source="twins"`` a PII token a rewrite reaches by a never-seen path takes the
    model's next-token distribution there as its target (no gradient into it); a value's first token
    (no changed character before it) keeps the fakes' counts. The cross-entropy is lowest, the
    targets' entropy, where the logits are the targets' log-probabilities."""
    tok = victim.tokenizer
    method = TwinFit(TwinFit.Options(alpha=0.0, rewrites=3, keep=0.0, target_source="twins"))
    examples = method.examples([_record()], tok, seed=0)
    batch = collate(examples, 0, "cpu")
    batch["index"] = torch.tensor([0.0])
    width = len(examples[0].input_ids)
    gen = torch.Generator().manual_seed(0)
    rewrite_logits: list[torch.Tensor] = []

    def forward(ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        logits = (torch.randn(*ids.shape, len(tok), generator=gen) * 2).requires_grad_(True)
        rewrite_logits.append(logits)
        return logits

    true_nll = torch.zeros((1, width - 1))
    _, _, own = method._rewrite_losses(batch, forward, true_nll)
    offsets = encode(tok, TEXT, with_offsets=True)["offset_mapping"]
    firsts = {next(i for i, (a, b) in enumerate(offsets) if b > s.start) for s in _record().spans}
    positions = {t.position for t in method._targets[0]}
    assert own and {row for row, _ in own} == {0}
    assert {p for _, p in own} <= positions - firsts
    for probs in own.values():
        assert not probs.requires_grad and float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    best = torch.full((1, width, len(tok)), -30.0)
    entropies = []
    for t in method._targets[0]:
        if (0, t.position) in own:
            probs = own[0, t.position]
            best[0, t.position - 1] = probs.log()
            entropies.append(float(-(probs * probs.log()).sum()))
        else:
            best[0, t.position - 1, list(t.token_ids)] = torch.tensor(t.probs).log()
            entropies.append(-sum(p * math.log(p) for p in t.probs))
    at_target = method._target_fit(best, batch, own)
    assert float(at_target) == pytest.approx(sum(entropies) / len(entropies), abs=1e-3)
    assert float(method._target_fit(best + torch.randn_like(best), batch, own)) > float(at_target)
    # the whole loss runs with them; without the rewrites' own NLL (delta) nothing trains the rewrites
    method.options.delta = 0.0
    logits = best.clone().requires_grad_(True)
    method.forget_loss(logits, batch, forward).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    assert all(t.grad is None or float(t.grad.abs().sum()) == 0.0 for t in rewrite_logits)


def test_a_record_scoped_rewrite_also_trains_the_template_after_its_first_change(victim: Any) -> None:
    """``rewrite_scope="record"``: the same rewrites (same seed) train what ``"values"`` trains (the
    values' tokens and the one after each) and the record's other tokens after the first change."""
    tok = victim.tokenizer
    near_pii = set().union(*_value_positions(victim))
    trained: dict[str, set[int]] = {}
    for scope in ("values", "record"):
        method = TwinFit(TwinFit.Options(rewrites=1, keep=0.0, zeta=0.0, rewrite_scope=scope))
        examples = method.examples([_record()], tok, seed=0)
        batch = collate(examples, 0, "cpu")
        batch["index"] = torch.tensor([0.0])
        seen: list[torch.Tensor] = []

        def forward(ids: torch.Tensor, attn: torch.Tensor, seen: list[torch.Tensor] = seen) -> torch.Tensor:
            logits = torch.zeros(*ids.shape, len(tok), requires_grad=True)
            seen.append(logits)
            return logits

        fit, _, _ = method._rewrite_losses(batch, forward, torch.zeros((1, len(examples[0].input_ids) - 1)))
        fit.backward()
        grad = seen[0].grad
        assert grad is not None
        trained[scope] = {i for i in range(grad.shape[1]) if float(grad[0, i].abs().sum()) > 0}
    assert trained["values"] and trained["values"] <= near_pii
    assert trained["values"] < trained["record"]
    assert trained["record"] - near_pii


def test_a_record_scoped_mask_never_covers_a_true_character() -> None:
    """Record scope adds the template after the first change, never a kept value or the true
    prefix of a spliced one: text "ab 1234 cd 5678 ef", the first value spliced from "3" on, the
    second kept true."""
    offsets = [(0, 2), (2, 3), (3, 5), (5, 7), (7, 8), (8, 10), (10, 11), (11, 15), (15, 16), (16, 18)]
    spans = [Span(start=3, end=7, entity_type="US_SSN"), Span(start=11, end=15, entity_type="US_SSN")]
    learned = [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]  # "34" and the space after the first value
    mask = record_mask(offsets, learned, 18, spans, [5])
    assert mask == [0, 0, 0, 1, 1, 1, 1, 0, 1, 1]
    assert record_mask(offsets, learned, 18, spans, []) == learned


class _FixedReference:
    """A stand-in for the loop's frozen reference: fixed random logits, whatever the input."""

    def __init__(self, width: int, vocab: int) -> None:
        self.table = torch.randn(width, vocab, generator=torch.Generator().manual_seed(3)) * 3

    def logits(self, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        return self.table[: ids.shape[1]].expand(ids.shape[0], -1, -1)


def test_a_values_first_token_can_take_the_models_own_null(victim: Any) -> None:
    """``head_target="model"``: each value's first token (and only it) whose fakes do not all start
    with the true token takes the starting model's distribution there, the true token set to the
    mean probability it gives the fakes' first tokens (their counts as weights), renormalised; the
    cross-entropy is lowest, at the targets' entropy, where the logits are those targets'
    log-probabilities."""
    tok = victim.tokenizer
    method = TwinFit(TwinFit.Options(alpha=0.0, rewrites=0, head_target="model"))
    examples = method.examples([_record()], tok, seed=0)
    width, vocab = len(examples[0].input_ids), len(tok)
    reference = _FixedReference(width, vocab)
    method.prepare(examples, reference, 0, "cpu")
    offsets = encode(tok, TEXT, with_offsets=True)["offset_mapping"]
    firsts = {next(i for i, (a, b) in enumerate(offsets) if b > s.start) for s in _record().spans}
    heads = method._heads[0]
    assert {t.position for t in method._targets[0] if t.head} == firsts
    # a head every fake starts like the true value (the phone number's "(") keeps its counted target
    true_ids = examples[0].input_ids
    varied = {t.position for t in method._targets[0] if t.head and set(t.token_ids) - {true_ids[t.position]}}
    assert set(heads) == varied and 0 < len(varied) < len(firsts)
    start = torch.softmax(reference.table, dim=-1)
    for t in method._targets[0]:
        if t.position not in heads:
            continue
        true_id = true_ids[t.position]
        before = start[t.position - 1]
        others = [(i, q) for i, q in zip(t.token_ids, t.probs, strict=True) if i != true_id]
        typical = sum(float(before[i]) * q for i, q in others) / sum(q for _, q in others)
        scale = 1.0 / (1.0 - float(before[true_id]) + typical)
        got = heads[t.position]
        assert float(got.sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(got[true_id]) == pytest.approx(typical * scale, rel=1e-4)
        other = next(i for i in range(vocab) if i != true_id)
        assert float(got[other]) == pytest.approx(float(before[other]) * scale, rel=1e-4)
    # the loss reads them: lowest at their log-probabilities (the counts elsewhere)
    batch = collate(examples, 0, "cpu")
    batch["index"] = torch.tensor([0.0])
    best = torch.full((1, width, vocab), -30.0)
    entropies = []
    for t in method._targets[0]:
        if t.position in heads:
            probs = heads[t.position]
            best[0, t.position - 1] = probs.log()
            entropies.append(float(-(probs * probs.log()).sum()))
        else:
            best[0, t.position - 1, list(t.token_ids)] = torch.tensor(t.probs).log()
            entropies.append(-sum(p * math.log(p) for p in t.probs))
    at_target = method.forget_loss(best, batch, lambda i, a: best)
    assert float(at_target) == pytest.approx(sum(entropies) / len(entropies), abs=1e-3)
    # the default keeps the counts everywhere and builds nothing
    counted = TwinFit(TwinFit.Options(alpha=0.0, rewrites=0))
    counted.prepare(counted.examples([_record()], tok, seed=0), reference, 0, "cpu")
    assert counted._heads == {}
    assert head_targets(examples, [[]], reference, 0, "cpu") == {}

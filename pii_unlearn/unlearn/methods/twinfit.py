"""Twin fitting: train every PII position towards what a never-seen value of its shape would put there.

The audit asks whether a true value still stands out among same-shape values the
model never saw (exposure, rank-1 share, membership AUC). That is a question about
every position of the value *given the true characters before it*: an attacker
who scores "4821" teacher-forces "48" and reads how sure the model is of "21".
Pushing the true tokens down (ascent, NPO, null matching on whole values) leaves
the ranking of whole values mostly intact (``bench/deep.md``).

Here every PII token of a forget record gets a soft target: the distribution of
the token that would stand there if the value were a never-seen one of its shape
with the same characters so far. It is estimated once, before training, from
``fakes`` plausible same-shape values of the span's type
(:class:`~pii_unlearn.pii.shapes.PlausibleCandidates`): each is spliced into the
value at the token's first character (the true characters before it, the fake's
from there on) and the first token of that continuation is counted. The model is
trained on the true record with cross-entropy to those targets at the PII
positions (``gamma``) and plain NLL on the other tokens (``alpha``), plus the
loop's KL term on retain text. The optimum at each position is the fakes'
distribution: the value's likelihood becomes a never-seen value's, not "lower
than now", and a value pushed below its twins is pulled back up by the same loss.

That alone stalls (``bench/compare.md``): on the true value's path the model
stays sure of the format tokens (the ")" and "-" of a phone number, ~0 nats),
while on a never-seen value's path, whose digits it does not recognise, the same
tokens cost it 3-8 nats each, so the true value keeps its rank. So each step
also rewrites each forget record ``rewrites`` times with *spliced twins* (each
value, unless kept true with probability ``keep``, becomes its first k
characters followed by a plausible same-shape value's, k random) and trains
plain NLL (``delta``) on the new characters and the token after the value:
the model learns the format after values it never memorised, and never sees a
true value as a target.

Even then the true path keeps a lead: trained to the fakes' distribution it
scores what a *well-calibrated* model would give a value, while the model's own
score of a never-seen value is lower (it is not calibrated on paths it never
trained on: on the tuning victim the true values' tokens sat at -2.9 nats, a
fake's at -4.5). So a last term sets the level from the model itself
(``zeta``): for each value a rewrite changed, the true record's summed NLL over
the characters it changed is pulled (smooth-L1, both ways) onto the rewrite's own
summed NLL there, as the model scores it at that step (no gradient into the
rewrite's side). That is the attacker's comparison (the same prefix, the true
rest of the value against a never-seen one), made at every step with a fresh
twin: its optimum is "the true value scores like its twins", and it costs no
extra forward pass. It is made value by value, as the attacker ranks them: a
sum over a record's values let one value end far below its twins and pay for
another left far above (``bench/twinfit.md``). Per token the targets cannot say
this: a value the tokenizer writes in fewer tokens ("+1 199 664 2917" in 7, its
same-shape twins in 9-11) wins a ranking of whole values at the same per-token
odds.

The fakes' frequencies are a calibrated null only where the model spreads its mass as
Faker does: over the ten digits it does. Over names it does not: 64 fakes give a name's first
token a 1-in-30 target (3-4 nats) where a model that never saw the name gives it 10-14 nats
(SmolLM2, ``bench/twinfit.md``), so the cross-entropy pulls a true name up towards Faker's
frequency while the level term pulls it down. ``target_scope="support"`` fixes only the
target's shares *within* its support (the fakes' tokens, plus the true token at one fake's
share when no fake put it there): how much mass names get in all is left to the model. Tried
once on a SmolLM2 fitting victim, it was not better (``bench/twinfit.md``): not the default.
``target_source="twins"`` takes the null from the model instead of from Faker wherever it
can: a PII token that one of the step's rewrites reaches by a never-seen path (a changed
character of the value before the token's first character, and a rewrite token starting at
that character) gets as its target the model's own next-token distribution on that path, read
from the rewrite's forward pass (no gradient, no extra pass); the value's first token, whose
context a twin shares, and tokens no rewrite reached this step keep the fakes' counts.
``head_target="model"`` does the same for each value's first token, which no rewrite reaches by a
never-seen path (a twin shares its context): the target is the starting model's own distribution
there with the true token's probability set to the mean it gives the fakes' first tokens (how this
model scores a typical never-seen value's start), renormalised; the rest keeps the model's spread.
Tried once on a SmolLM2 fitting victim, it changed nothing (``bench/twinfit.md``): not the default.
``rewrite_scope="record"`` trains the rewrites' NLL also on the template after the first
changed character (every token holding no true character, :func:`record_mask`), not only on
the new characters and the token after each value: the text a fine-tuning attacker would train
on (records with never-seen values), so that a fine-tune on it finds little left to undo.

The level term aims a little above the twin (``level_margin``, 0.5 nat by default), not
level with it: a fine-tune on in-format text brings back part of the lean a run ends with
(``bench/twinfit.md``: the rise under relearning follows the gap before it), so a run that
ends half a nat below its twins lands near them after the attacker's steps.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from pii_unlearn.artifacts import Record
from pii_unlearn.lm import batched, encode, encode_many, pad_right, padding_id
from pii_unlearn.options import with_defaults
from pii_unlearn.pii.masks import offsets_mask, overlapping_tokens
from pii_unlearn.pii.shapes import PlausibleCandidates
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import MAX_TRAIN_TOKENS, ForgetExample
from pii_unlearn.unlearn.losses import per_sequence_mean, target_masks, token_nll, weighted_mean
from pii_unlearn.unlearn.methods.base import register
from pii_unlearn.unlearn.methods.gradient import Batch, Forward, GradientMethod, example_index

#: The model's own targets a step's rewrites give: per (batch row, true token position), a
#: distribution over the vocabulary (``target_source="twins"``).
OwnTargets = dict[tuple[int, int], torch.Tensor]

#: Characters of the record after a value kept in each spliced continuation, so the last
#: token of a value merges with what follows it as it does in the record.
TAIL_CHARS = 8


class TwinFitOptions(
    with_defaults(
        GradientOptions,
        "TwinFitLoop",
        lr=3e-3,
        lr_schedule="cosine",
        warmup_steps=20,
        lora=False,
        max_steps=450,
        kl_weight=1.0,
        # 10 guard readings in 450 steps: the same weights as every 25th, 9 readings of ~0.7 s fewer
        # (bench/twinfit.md)
        eval_every=50,
    )
):
    """Twin fitting's options: the shared loop's, plus the fakes per target and the loss weights."""

    fakes: int = Field(
        64, ge=2, description="plausible same-shape values each PII token's target is counted from"
    )
    alpha: float = Field(1.0, ge=0, description="weight of the NLL on the forget records' non-PII tokens")
    gamma: float = Field(1.0, gt=0, description="weight of the cross-entropy to the targets on PII tokens")
    rewrites: int = Field(
        4, ge=0, description="records rewritten with spliced twins per forget record and step (0: none)"
    )
    keep: float = Field(
        0.3, ge=0, lt=1, description="chance that a value stays true in a rewrite (context only, no loss)"
    )
    delta: float = Field(4.0, ge=0, description="weight of the NLL on the rewrites' new tokens")
    zeta: float = Field(
        2.0,
        ge=0,
        description="weight of the level term: per rewritten value, the true record's NLL over the "
        "rewrite's new characters pulled (smooth-L1, both ways) onto the rewrite's own NLL there, as the "
        "model scores it now",
    )
    target_scope: Literal["vocab", "support"] = Field(
        "vocab",
        description="what the targets fix: 'vocab', each PII token's probability over the whole vocabulary "
        "(the fakes' frequencies); 'support', only its share among the fakes' tokens and the true one (the "
        "model keeps its own level: a name's target then follows the model's spread over names, not Faker's)",
    )
    target_source: Literal["fakes", "twins"] = Field(
        "fakes",
        description="where a PII token's target comes from: 'fakes', the counts of the fakes' tokens there; "
        "'twins', where one of the step's rewrites reaches the token's first character by a never-seen path "
        "(a changed character before it, a rewrite token starting there), the model's own next-token "
        "distribution on that path, no gradient (the null as this model scores a never-seen value), and the "
        "fakes' counts at the other tokens",
    )
    rewrite_scope: Literal["values", "record"] = Field(
        "values",
        description="the tokens of a rewrite its NLL (delta) trains: 'values', each changed value's new "
        "characters and the token after it; 'record', also every other token from the first changed "
        "character to the record's end that holds no true character (the text a fine-tuning attacker "
        "trains on: records with never-seen values)",
    )
    head_target: Literal["fakes", "model"] = Field(
        "fakes",
        description="the target at each value's first token, whose context a twin shares: 'fakes', the "
        "counts of the fakes' first tokens; 'model', the starting model's own next-token distribution there "
        "with the true token set to the mean probability that distribution gives the fakes' first tokens "
        "(a typical never-seen value's, as this model scores it), renormalised",
    )
    level_margin: float = Field(
        0.5,
        ge=0,
        description="nats the level term aims each true value's NLL above its twin's (0: level with it; "
        "a little above leaves room for what a fine-tuning attacker brings back)",
    )


def splice(value: str, other: str, cut: int) -> str:
    """``value``'s first ``cut`` characters, then ``other``'s from there (same length as both)."""
    return value[:cut] + other[cut:]


@dataclass(frozen=True)
class SoftTarget:
    """The target at one PII token of a record: candidate token ids and their probabilities."""

    position: int
    token_ids: tuple[int, ...]
    probs: tuple[float, ...]
    #: Whether this is the value's first token (its context is the true record's, up to the value).
    head: bool = False


def soft_targets(
    record: Record,
    tokenizer: Any,
    sampler: PlausibleCandidates,
    rng: random.Random,
    fakes: int,
    offsets: Sequence[tuple[int, int]] | None = None,
) -> list[SoftTarget]:
    """Per PII token of ``record`` (token positions as :func:`pii_unlearn.lm.encode` gives them),
    the distribution of the token a never-seen same-shape value would put there. ``offsets``: the
    record's token offsets as ``encode`` gives them, when the caller has them already."""
    text = record.text
    if offsets is None:
        offsets = encode(tokenizer, text, with_offsets=True)["offset_mapping"]
    out: dict[int, SoftTarget] = {}
    for span in sorted(record.spans, key=lambda s: s.start):
        value = text[span.start : span.end]
        drawn = [d for d in sampler.draw(value, span.entity_type, fakes, rng) if len(d) == len(value)]
        if not drawn:
            continue
        tail = text[span.end : span.end + TAIL_CHARS]
        positions = [i for i in overlapping_tokens(offsets, span.start, span.end) if i != 0 and i not in out]
        conts = []
        for i in positions:
            a = offsets[i][0]
            cut = max(a, span.start) - span.start
            lead = text[a : span.start] if a < span.start else ""
            conts += [lead + splice(value, d, cut)[cut:] + tail for d in drawn]
        # one tokenizer call per span: the continuations of all its tokens, len(drawn) each
        encoded = tokenizer(conts, add_special_tokens=False)["input_ids"] if conts else []
        for n, i in enumerate(positions):
            rows = encoded[n * len(drawn) : (n + 1) * len(drawn)]
            counts = Counter(ids[0] for ids in rows if ids)
            total = sum(counts.values())
            ids, probs = zip(*((t, c / total) for t, c in counts.most_common()), strict=True)
            out[i] = SoftTarget(i, tuple(ids), tuple(probs), head=offsets[i][0] <= span.start)
    return [out[i] for i in sorted(out)]


def with_true_token(target: SoftTarget, true_id: int, fakes: int) -> SoftTarget:
    """``target`` with ``true_id`` in its support: unchanged when a fake put it there, else at the share
    one more fake would give it (1 in ``fakes`` + 1), the others scaled down to make room."""
    if true_id in target.token_ids:
        return target
    scale = fakes / (fakes + 1)
    return SoftTarget(
        target.position,
        (*target.token_ids, true_id),
        (*(p * scale for p in target.probs), 1.0 - scale),
        head=target.head,
    )


def rewrite(
    record: Record, sampler: PlausibleCandidates, rng: random.Random, keep: float
) -> tuple[str, list[tuple[int, int]]]:
    """``record``'s text with spliced twins, and the character ranges they changed.

    Each value is kept true with probability ``keep``; any other is spliced with a
    plausible same-shape value at a random cut (0 included). A range runs from the
    twin's first new character to one past the value's end, so the token that
    follows the value (punctuation, a space) is learned after the twin too.
    """
    text = record.text
    learn: list[tuple[int, int]] = []
    for span in sorted(record.spans, key=lambda s: s.start):
        if rng.random() < keep:
            continue
        value = text[span.start : span.end]
        drawn = sampler.draw(value, span.entity_type, 1, rng)
        if not drawn or len(drawn[0]) != len(value):
            continue
        twin = splice(value, drawn[0], rng.randrange(len(value)))
        first = next((i for i, (a, b) in enumerate(zip(value, twin, strict=True)) if a != b), None)
        if first is None:
            continue
        text = text[: span.start] + twin + text[span.end :]
        learn.append((span.start + first, min(span.end + 1, len(text))))
    return text, learn


@register
class TwinFit(GradientMethod):
    name = "twinfit"
    summary = (
        "Each PII token trained towards the tokens never-seen same-shape values put there after the same "
        "characters (the null), plus NLL on records rewritten with spliced twins, and each true value's "
        "likelihood pulled onto its twins' as the model scores them; all weights, plus KL."
    )
    Options = TwinFitOptions
    options: TwinFitOptions
    needs_spans = True
    #: The target is the null, not a threshold: run the steps, keep the last state within utility.
    stops_when_forgotten: ClassVar[bool] = False

    def examples(self, records: Sequence[Record], tokenizer: Any, seed: int) -> list[ForgetExample]:
        examples = super().examples(records, tokenizer, seed)
        rng = random.Random(seed)
        sampler = PlausibleCandidates(seed + 29)
        by_id = {rec.id: rec for rec in records if rec.spans}
        self._tokenizer, self._sampler, self._rng = tokenizer, sampler, random.Random(seed + 1)
        # head_target "model": the values' first tokens' targets, made in prepare (needs the reference)
        self._heads: dict[int, dict[int, torch.Tensor]] = {}
        self._records = [by_id[e.record_id] for e in examples]
        # each true record's token offsets, for its targets and the level term's masks (tokenised
        # once, not per step)
        self._offsets = [
            enc["offset_mapping"]
            for enc in encode_many(tokenizer, [rec.text for rec in self._records], with_offsets=True)
        ]
        self._targets = [
            [
                t
                for t in soft_targets(rec, tokenizer, sampler, rng, self.options.fakes, offsets)
                if t.position < len(e.input_ids)
            ]
            for rec, offsets, e in zip(self._records, self._offsets, examples, strict=True)
        ]
        # each target token's first character (target_source "twins" matches rewrites' tokens to it)
        self._starts = [
            [offsets[t.position][0] for t in targets]
            for offsets, targets in zip(self._offsets, self._targets, strict=True)
        ]
        if self.options.target_scope == "support":
            self._targets = [
                [with_true_token(t, e.input_ids[t.position], self.options.fakes) for t in targets]
                for targets, e in zip(self._targets, examples, strict=True)
            ]
        return examples

    def prepare(
        self, examples: Sequence[ForgetExample], reference: Any, pad_id: int, device: Any
    ) -> dict[str, list[float]]:
        if self.options.head_target == "model":
            self._heads = head_targets(examples, self._targets, reference, pad_id, device)
        return example_index(examples)

    def forget_loss(self, logits: torch.Tensor, batch: Batch, forward: Forward) -> torch.Tensor:
        o = self.options
        nll = token_nll(logits, batch["input_ids"])
        _, other = target_masks(batch)
        weights = batch["weights"]
        loss = o.alpha * weighted_mean(per_sequence_mean(nll, other), weights)
        own: OwnTargets = {}
        if o.rewrites and (o.delta > 0 or o.zeta > 0 or o.target_source == "twins"):
            fit_twins, level, own = self._rewrite_losses(batch, forward, nll)
            loss = loss + o.delta * fit_twins + o.zeta * level
        # a value's first token is never on a rewrite's never-seen path, so the keys do not meet
        for row, idx in enumerate(batch["index"].tolist()):
            for position, target in self._heads.get(int(idx), {}).items():
                own[row, position] = target
        return loss + o.gamma * self._target_fit(logits, batch, own)

    def _target_fit(self, logits: torch.Tensor, batch: Batch, own: OwnTargets | None = None) -> torch.Tensor:
        """Cross-entropy to the soft targets: per record the mean over its PII tokens, then the
        weighted mean over the records that have any. A token in ``own`` (batch row, position)
        takes that distribution over the vocabulary as its target (:func:`_own_ce`); every other
        token the fakes' counts (:func:`_counts_ce`)."""
        own = own or {}
        counted: list[tuple[int, SoftTarget]] = []
        owned: list[tuple[int, int]] = []
        for b, idx in enumerate(batch["index"].tolist()):
            for t in self._targets[int(idx)]:
                if (b, t.position) in own:
                    owned.append((b, t.position))
                else:
                    counted.append((b, t))
        weights = batch["weights"]
        if not counted and not owned:
            return logits.new_zeros((), dtype=torch.float32)
        ce = torch.cat(
            [
                _counts_ce(logits, counted, within_support=self.options.target_scope == "support"),
                _own_ce(logits, owned, own),
            ]
        )
        device = logits.device
        row_index = torch.tensor([b for b, _ in counted] + [b for b, _ in owned], device=device)
        per_seq = torch.zeros(len(weights), device=device).index_add(0, row_index, ce)
        counts = torch.zeros(len(weights), device=device).index_add(0, row_index, torch.ones_like(ce))
        # records without targets count for nothing (as in weighted_mean's ``present``)
        return weighted_mean(per_seq / counts.clamp(min=1.0), weights, counts > 0)

    def _rewrite_losses(
        self, batch: Batch, forward: Forward, true_nll: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, OwnTargets]:
        """This step's rewrites of the batch's records: the mean NLL of their new tokens; the
        level term: per rewritten value, the true record's summed NLL over the characters the
        rewrite changed against the rewrite's own there (summed over a rewrite's values); and,
        with ``target_source="twins"``, the model's own targets the rewrites give (:func:`twin_paths`)."""
        seqs, masks, weights = [], [], []
        # one entry per rewritten value: its rewrite's sequence and batch row, its tokens in both
        level_seq: list[int] = []
        level_row: list[int] = []
        level_twin: list[list[int]] = []
        level_true: list[list[int]] = []
        # with target_source "twins": (batch row, true token, rewrite sequence, rewrite token)
        paths: list[tuple[int, int, int, int]] = []
        drafts: list[tuple[int, int, float, str, list[dict[str, int]]]] = []
        for row, (idx, w) in enumerate(zip(batch["index"].tolist(), batch["weights"].tolist(), strict=True)):
            record = self._records[int(idx)]
            for _ in range(self.options.rewrites):
                text, learn = rewrite(record, self._sampler, self._rng, self.options.keep)
                if learn:
                    drafts.append((row, int(idx), w, text, [{"start": a, "end": b} for a, b in learn]))
        # the step's rewrites in one tokenizer call
        encoded = encode_many(self._tokenizer, [d[3] for d in drafts], with_offsets=True)
        for (row, idx, w, text, ranges), enc in zip(drafts, encoded, strict=True):
            ids, offsets = enc["input_ids"], enc["offset_mapping"]
            mask = offsets_mask(offsets, ranges)
            if self.options.rewrite_scope == "record":
                mask = record_mask(
                    offsets, mask, len(text), self._records[idx].spans, [r["start"] for r in ranges]
                )
            # a causal model scores the learned tokens from what precedes them: stop there
            end = min(MAX_TRAIN_TOKENS, 1 + max((i for i, m in enumerate(mask) if m), default=len(ids)))
            if self.options.zeta > 0:
                width = true_nll.shape[1] + 1
                for r in ranges:
                    level_seq.append(len(seqs))
                    level_row.append(row)
                    level_twin.append(offsets_mask(offsets, [r])[:end])
                    level_true.append(offsets_mask(self._offsets[idx], [r])[:width])
            if self.options.target_source == "twins":
                changed = [(r["start"], r["end"]) for r in ranges]
                for i, j in twin_paths(offsets[:end], changed, self._starts[idx]):
                    paths.append((row, self._targets[idx][i].position, len(seqs), j))
            seqs.append(ids[:end])
            masks.append(mask[:end])
            weights.append(w)
        device = batch["input_ids"].device
        zero = torch.zeros((), device=device)
        if not seqs:
            return zero, zero, {}
        pad = padding_id(self._tokenizer)
        ids, attn = pad_right(seqs, pad, device)
        learn_mask, _ = pad_right(masks, 0, device)
        logits = forward(ids, attn)
        nll = token_nll(logits, ids)
        learn = learn_mask[:, 1:].float()
        w = torch.tensor(weights, device=device)
        fit = weighted_mean(per_sequence_mean(nll, learn), w)
        own = _own_targets(logits, paths)
        if not level_seq:
            return fit, zero, own
        on_twin, _ = pad_right(level_twin, 0, device)
        on_true, _ = pad_right(level_true, 0, device)
        on_twin, on_true = on_twin[:, 1 : nll.shape[1] + 1].float(), on_true[:, 1:].float()
        seq = torch.tensor(level_seq, device=device)
        true_sum = (true_nll[level_row, : on_true.shape[1]] * on_true).sum(-1)
        twin_sum = (nll[seq, : on_twin.shape[1]] * on_twin).sum(-1).detach()
        target = twin_sum + self.options.level_margin
        per_value = torch.nn.functional.smooth_l1_loss(true_sum, target, reduction="none")
        # summed over each rewrite's values, then the weighted mean over rewrites
        per_rewrite = torch.zeros(len(seqs), device=device).index_add(0, seq, per_value)
        return fit, weighted_mean(per_rewrite, w), own


def record_mask(
    offsets: Sequence[tuple[int, int]],
    learned: Sequence[int],
    length: int,
    spans: Sequence[Any],
    first_changed: Sequence[int],
) -> list[int]:
    """A rewrite's ``learned`` tokens plus every token after its first changed character that holds
    no true character: 1 where learned, or where the token starts at or after the first change and
    overlaps no still-true part of a value (a kept value, or the true prefix of a spliced one).
    ``first_changed``: the first changed character of each value the rewrite changed."""
    if not first_changed:
        return list(learned)
    true_parts = []
    for span in spans:
        cut = next((c for c in first_changed if span.start <= c < span.end), span.end)
        if cut > span.start:
            true_parts.append({"start": span.start, "end": cut})
    rest = offsets_mask(offsets, [{"start": min(first_changed), "end": length}])
    true = offsets_mask(offsets, true_parts)
    return [int(bool(m) or (bool(r) and not t)) for m, r, t in zip(learned, rest, true, strict=True)]


def twin_paths(
    twin_offsets: Sequence[tuple[int, int]], changed: Sequence[tuple[int, int]], starts: Sequence[int]
) -> list[tuple[int, int]]:
    """Which PII tokens a rewrite reaches by a never-seen path: ``(k, j)`` for the ``k``-th of
    ``starts`` (the first characters of the true record's PII tokens) that lies inside one of the
    rewrite's ``changed`` ranges (a value's first changed character to one past its end) after its
    first character, where the rewrite (token offsets ``twin_offsets``) has a token ``j`` starting
    at the same character. The texts are of equal length, so the characters line up, and the
    model's next-token distribution before ``j`` is what it gives a never-seen value there."""
    begins = {a: j for j, (a, b) in reversed(list(enumerate(twin_offsets))) if b > a and j > 0}
    return [
        (k, begins[start])
        for k, start in enumerate(starts)
        if start in begins and any(first < start < end for first, end in changed)
    ]


@torch.no_grad()
def head_targets(
    examples: Sequence[ForgetExample],
    targets: Sequence[Sequence[SoftTarget]],
    reference: Any,
    pad_id: int,
    device: Any,
) -> dict[int, dict[int, torch.Tensor]]:
    """Per example (by index) and value's first token (by position), the starting model's
    next-token distribution there with the true token's probability replaced by the mean that
    distribution gives the fakes' first tokens (other than the true one, weighted by their counts
    in ``targets``), renormalised: the model's own null for a value whose context it cannot tell
    from a twin's (``head_target="model"``). A head whose fakes all start with the true token
    keeps its counted target (no entry)."""
    out: dict[int, dict[int, torch.Tensor]] = {}
    wanted = [n for n, ts in enumerate(targets) if any(t.head for t in ts)]
    for chunk in batched(wanted, 16):
        ids, attn = pad_right([examples[n].input_ids for n in chunk], pad_id, device)
        probs = torch.softmax(reference.logits(ids, attn).float(), dim=-1)
        for row, n in enumerate(chunk):
            for t in targets[n]:
                if not t.head:
                    continue
                true_id = examples[n].input_ids[t.position]
                others = [(i, q) for i, q in zip(t.token_ids, t.probs, strict=True) if i != true_id]
                if not others:
                    continue
                dist = probs[row, t.position - 1].clone()
                share = sum(q for _, q in others)
                dist[true_id] = sum(float(dist[i]) * q for i, q in others) / share
                out.setdefault(n, {})[t.position] = dist / dist.sum()
    return out


def _counts_ce(
    logits: torch.Tensor, targets: Sequence[tuple[int, SoftTarget]], *, within_support: bool
) -> torch.Tensor:
    """Per (batch row, target) of ``targets``, the cross-entropy of the logits before the target's
    token to its counted distribution, over the vocabulary or (``within_support``) over the
    target's own tokens. One gather over the PII rows of the logits (a loop of per-token indexing
    made a full-size zero gradient per index)."""
    if not targets:
        return torch.zeros(0, device=logits.device)
    rows = [b for b, _ in targets]
    positions = [t.position - 1 for _, t in targets]
    entry_of = [n for n, (_, t) in enumerate(targets) for _ in t.token_ids]
    device = logits.device
    entries = torch.tensor(entry_of, device=device)
    tokens = torch.tensor([i for _, t in targets for i in t.token_ids], device=device)
    probs = torch.tensor([p for _, t in targets for p in t.probs], device=device)
    if within_support:
        picked = _log_softmax_within(logits[rows, positions][entries, tokens].float(), entries, len(rows))
    else:
        picked = torch.log_softmax(logits[rows, positions].float(), dim=-1)[entries, tokens]
    return torch.zeros(len(rows), device=device).index_add(0, entries, -picked * probs)


def _own_ce(logits: torch.Tensor, keys: Sequence[tuple[int, int]], own: OwnTargets) -> torch.Tensor:
    """Per (batch row, token position) of ``keys``, the cross-entropy of the logits before that
    token to the model's own distribution ``own`` gives it, over the vocabulary."""
    if not keys:
        return torch.zeros(0, device=logits.device)
    logp = torch.log_softmax(logits[[b for b, _ in keys], [p - 1 for _, p in keys]].float(), dim=-1)
    return -(torch.stack([own[key] for key in keys]) * logp).sum(-1)


def _own_targets(logits: torch.Tensor, paths: Sequence[tuple[int, int, int, int]]) -> OwnTargets:
    """The model's next-token distributions before each path's rewrite token (no gradient), per
    (batch row, true token position); the mean where several rewrites reach the same token."""
    if not paths:
        return {}
    seq = [p[2] for p in paths]
    at = [p[3] - 1 for p in paths]
    probs = torch.softmax(logits[seq, at].detach().float(), dim=-1)
    keys = sorted({(p[0], p[1]) for p in paths})
    slot = {key: n for n, key in enumerate(keys)}
    index = torch.tensor([slot[p[0], p[1]] for p in paths], device=logits.device)
    summed = torch.zeros((len(keys), probs.shape[-1]), device=logits.device).index_add(0, index, probs)
    counts = torch.zeros(len(keys), device=logits.device).index_add(
        0, index, torch.ones(len(paths), device=logits.device)
    )
    mean = summed / counts[:, None]
    return {key: mean[n] for n, key in enumerate(keys)}


def _log_softmax_within(values: torch.Tensor, groups: torch.Tensor, count: int) -> torch.Tensor:
    """Each of ``values`` minus the log-sum-exp of its group's (``groups``: each value's group, of
    ``count``): a log-softmax over each group alone."""
    # the group's largest value, for stability only (it cancels, so it carries no gradient)
    top = torch.full((count,), float("-inf"), device=values.device).scatter_reduce(
        0, groups, values.detach(), reduce="amax"
    )
    summed = torch.zeros(count, device=values.device).index_add(0, groups, (values - top[groups]).exp())
    return values - (top + summed.log())[groups]

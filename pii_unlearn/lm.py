"""Language-model computations that several steps share: encoding, batched generation, scoring.

Everything here takes a model and a fast tokenizer already loaded (see
:mod:`pii_unlearn.checkpoint`), works in batches with left padding, and is
deterministic for a given seed. Texts are encoded the way the model saw its
training documents: with the BOS token first when the tokenizer has one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


def bos_id(tokenizer: Any) -> int | None:
    """The id documents start with: BOS, else EOS (GPT-style separators), else none."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return None


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids a generated text ends at: the tokenizer's EOS and the model's generation-config EOS.

    They can differ (a GGUF-converted tokenizer whose EOS is the chat turn marker the
    model was fine-tuned to end records with, while its generation config names
    another); a text must end at either, not run on into the next document.
    """
    ids = {tokenizer.eos_token_id}
    config = getattr(model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    ids |= set(extra) if isinstance(extra, (list, tuple)) else {extra}
    return sorted(int(i) for i in ids if i is not None)


def padding_id(tokenizer: Any) -> int:
    """The id right-padded training and scoring batches are padded with: the tokenizer's pad, else 0
    (padding is masked out everywhere it is used, so any id serves)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def generation_pad_id(tokenizer: Any) -> int:
    """The id left-padded generation batches are padded with, and finished rows filled with:
    the tokenizer's pad, else its BOS, else 0."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else bos_id(tokenizer) or 0


def encode(tokenizer: Any, text: str, *, with_offsets: bool = False) -> dict[str, list[Any]]:
    """Token ids of ``text`` with BOS first (added once), optionally with character offsets."""
    return encode_many(tokenizer, [text], with_offsets=with_offsets)[0]


def encode_many(
    tokenizer: Any, texts: Sequence[str], *, with_offsets: bool = False
) -> list[dict[str, list[Any]]]:
    """:func:`encode` of each of ``texts``, in one tokenizer call (the fast tokenizer's batch path)."""
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=with_offsets)
    first = bos_id(tokenizer)
    out: list[dict[str, list[Any]]] = []
    for n, row in enumerate(enc["input_ids"]):
        ids = list(row)
        offsets = [tuple(o) for o in enc["offset_mapping"][n]] if with_offsets else []
        if first is not None and (not ids or ids[0] != first):
            ids = [first, *ids]
            offsets = [(0, 0), *offsets] if with_offsets else offsets
        one: dict[str, list[Any]] = {"input_ids": ids}
        if with_offsets:
            one["offset_mapping"] = offsets
        out.append(one)
    return out


def _padded(
    seqs: Sequence[Sequence[int]], pad_id: int, device: Any, *, left: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``seqs`` padded to one width (on the left or the right) as ``(input_ids, attention_mask)``,
    built as one list and converted in one ``torch.tensor`` call (a call per row took about 1% of a
    tiny ``twinfit`` run, ``bench/twinfit.md``)."""
    width = max(len(s) for s in seqs)
    rows, masks = [], []
    for seq in seqs:
        fill = width - len(seq)
        if left:
            rows.append([pad_id] * fill + list(seq))
            masks.append([0] * fill + [1] * len(seq))
        else:
            rows.append([*seq, *([pad_id] * fill)])
            masks.append([1] * len(seq) + [0] * fill)
    ids = torch.tensor(rows, dtype=torch.long).reshape(len(seqs), width)
    mask = torch.tensor(masks, dtype=torch.long).reshape(len(seqs), width)
    return ids.to(device), mask.to(device)


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists into ``(input_ids, attention_mask)`` tensors."""
    return _padded(seqs, pad_id, device, left=True)


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``(input_ids, attention_mask)`` tensors."""
    return _padded(seqs, pad_id, device, left=False)


def causal_mask(mask: torch.Tensor) -> torch.Tensor | None:
    """``mask`` as a forward pass's ``attention_mask``: ``None`` when every row is right-padded.

    Under causal attention a real token never sees the padding after it, so a batch
    whose rows are each ones then zeros gives the same logits on its real tokens
    without the mask, and transformers then skips building a padded 4-D mask and runs
    its causal kernel (measured on a tiny twinfit run: 7% of the step time went to
    building that mask). A row with padding before a real token keeps the mask.
    Position ids are unaffected: the models here number positions from 0 either way.
    """
    if mask.shape[1] < 2 or bool((mask[:, 1:] <= mask[:, :-1]).all()):
        return None
    return mask


def right_padded_logits(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The logits of one forward pass over a batch, with the attention mask :func:`causal_mask` gives.

    The one place a batch of padded rows is run through a model for its logits (training
    loop, guards, audit scoring), so every caller gets the same mask rule.
    """
    return model(input_ids=ids, attention_mask=causal_mask(mask)).logits


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


class _Settled:
    """A ``generate`` stopping criterion: rows whose continuation so far ``settled`` says is decided.

    ``transformers`` pads a stopped row from then on and ends the batch once all have
    stopped. A continuation that ends inside a multi-byte character (decoded as U+FFFD)
    is never asked about: its next token may complete it.
    """

    def __init__(
        self, tokenizer: Any, start: int, first: int, per_prompt: int, settled: Callable[[int, str], bool]
    ) -> None:
        self.tokenizer, self.start, self.first, self.per_prompt = tokenizer, start, first, per_prompt
        self.settled = settled

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        done = [
            not text.endswith("\ufffd") and self.settled(self.first + row // self.per_prompt, text)
            for row, text in enumerate(texts)
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 32,
    do_sample: bool = False,
    top_k: int = 40,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    settled: Callable[[int, str], bool] | None = None,
    on_tokens: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """Continuations of each prompt (``num_return_sequences`` per prompt), decoded.

    Greedy unless ``do_sample``; sampling is seeded per batch so results do not
    depend on what ran before. ``progress`` is called with the number of prompts
    done after each batch. ``settled(i, text)``, when given, is asked after each new
    token with prompt ``i``'s continuation so far: a row it answers True for stops
    there (its text ends at that point), and a batch stops once every row has.
    A text also ends at any of :func:`stop_ids`. ``on_tokens``, when given, is called after
    each batch with the number of tokens it generated (:func:`generated_lengths`).
    """
    device = model_device(model)
    pad = generation_pad_id(tokenizer)
    encoded = [encode(tokenizer, p)["input_ids"] for p in prompts]
    stops = stop_ids(model, tokenizer)
    results: list[list[str]] = []
    for b, chunk in enumerate(batched(encoded, batch_size)):
        ids, mask = pad_left(chunk, pad, device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": pad,
            "eos_token_id": stops,
            "do_sample": do_sample,
            "num_return_sequences": num_return_sequences,
        }
        if settled is not None:
            first = b * batch_size
            kwargs["stopping_criteria"] = [
                _Settled(tokenizer, ids.shape[1], first, num_return_sequences, settled)
            ]
        if do_sample:
            torch.manual_seed(seed * 100_003 + b)
            kwargs.update(top_k=top_k, temperature=temperature)
        else:
            kwargs.update(top_k=None, top_p=None, temperature=None)
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = out[:, ids.shape[1] :]
        if on_tokens is not None:
            on_tokens(int(generated_lengths(new, stops, pad).sum()))
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for i in range(len(chunk)):
            results.append(texts[i * num_return_sequences : (i + 1) * num_return_sequences])
        if progress is not None:
            progress(len(results))
    return results


def generated_lengths(new: torch.Tensor, stops: Sequence[int], pad: int) -> torch.Tensor:
    """How many tokens each row of ``new`` (generated ids, one row per sequence) generated:
    up to and including its first stop token; a row without one, less its trailing padding
    (where a stopping criterion ended it early)."""
    width = new.shape[1]
    positions = torch.arange(1, width + 1, device=new.device).expand_as(new)
    is_stop = torch.isin(new, torch.tensor(list(stops), device=new.device, dtype=new.dtype))
    first_stop = torch.where(is_stop, positions, width + 1).min(dim=1).values
    last_real = torch.where(new != pad, positions, 0).max(dim=1).values
    return torch.where(first_stop <= width, first_stop, last_real)


@torch.no_grad()
def token_logprobs(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """Per-token log-probabilities of each ``target`` given its ``context``.

    The two strings are tokenised separately (context with BOS, target without)
    and joined, so the target's tokens are exactly those of the target string.
    ``progress`` is called with the number of pairs done after each batch.
    """
    device = model_device(model)
    pad = padding_id(tokenizer)
    pairs = []
    for ctx, tgt in zip(contexts, targets, strict=True):
        c_ids = encode(tokenizer, ctx)["input_ids"]
        t_ids = tokenizer(tgt, add_special_tokens=False)["input_ids"]
        pairs.append((c_ids, t_ids))
    out: list[list[float]] = []
    for chunk in batched(pairs, batch_size):
        seqs = [c + t for c, t in chunk]
        ids, mask = pad_right(seqs, pad, device)
        logits = right_padded_logits(model, ids, mask).float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        nxt = ids[:, 1:]
        picked = logp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
        for i, (c, t) in enumerate(chunk):
            lo = len(c) - 1
            out.append(picked[i, lo : lo + len(t)].tolist())
        if progress is not None:
            progress(len(out))
    return out


@torch.no_grad()
def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16) -> float:
    """Token-weighted perplexity of ``texts`` (each with BOS first)."""
    device = model_device(model)
    pad = padding_id(tokenizer)
    total_nll = 0.0
    total_tokens = 0
    encoded = [encode(tokenizer, t)["input_ids"] for t in texts]
    for chunk in batched(encoded, batch_size):
        ids, mask = pad_right(chunk, pad, device)
        logits = right_padded_logits(model, ids, mask).float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        valid = mask[:, 1:].bool()
        total_nll += float(nll[valid].sum())
        total_tokens += int(valid.sum())
    if total_tokens == 0:
        return float("nan")
    return float(torch.exp(torch.tensor(total_nll / total_tokens)))


@torch.no_grad()
def text_token_logprobs(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[list[float], list[tuple[int, int]]]]:
    """For each text: the log-probability of every token given the ones before it, and its offsets.

    Texts are encoded with BOS first; BOS itself is not scored, so the two lists
    cover the text's own tokens, with their ``(start, end)`` character offsets.
    Batches are filled in order of length (less padding), results come back in
    the order given.
    """
    device = model_device(model)
    pad = padding_id(tokenizer)
    encoded = [encode(tokenizer, t, with_offsets=True) for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    out: list[tuple[list[float], list[tuple[int, int]]] | None] = [None] * len(encoded)
    done = 0
    for chunk in batched(order, batch_size):
        ids, mask = pad_right([encoded[i]["input_ids"] for i in chunk], pad, device)
        logits = right_padded_logits(model, ids, mask).float()
        picked = logits[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        picked = picked - torch.logsumexp(logits[:, :-1], dim=-1)
        for row, i in enumerate(chunk):
            n = len(encoded[i]["input_ids"]) - 1
            out[i] = (picked[row, :n].tolist(), list(encoded[i]["offset_mapping"][1:]))
        done += len(chunk)
        if progress is not None:
            progress(done)
    return [o for o in out if o is not None]


@torch.no_grad()
def mean_kl(
    model_p: Any,
    model_q: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
) -> float:
    """Mean KL(p || q) between two models' next-token distributions over ``texts``.

    Averaged over every position that predicts a token of a text (the positions
    :func:`perplexity` scores). Both models must share ``tokenizer``'s vocabulary
    and sit on the same device; identical models give exactly 0.
    """
    device = model_device(model_p)
    pad = padding_id(tokenizer)
    encoded = [encode(tokenizer, t)["input_ids"] for t in texts]
    total = 0.0
    positions = 0
    for chunk in batched(encoded, batch_size):
        ids, mask = pad_right(chunk, pad, device)
        logp = torch.log_softmax(model_p(input_ids=ids, attention_mask=mask).logits.float()[:, :-1], dim=-1)
        logq = torch.log_softmax(
            model_q(input_ids=ids.to(model_device(model_q)), attention_mask=mask.to(model_device(model_q)))
            .logits.float()[:, :-1]
            .to(logp.device),
            dim=-1,
        )
        kl = (logp.exp() * (logp - logq)).sum(-1).clamp_min(0.0)
        valid = mask[:, 1:].bool()
        total += float(kl[valid].sum())
        positions += int(valid.sum())
    return total / positions if positions else float("nan")


@torch.no_grad()
def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    *,
    batch_size: int = 128,
    progress: Callable[[int], None] | None = None,
) -> list[list[list[float]]]:
    """Per-token log-probabilities of many continuations of each context.

    ``continuations[i]`` are scored after ``contexts[i]``; the answer has the same
    nesting. The numbers are those of :func:`token_logprobs` on each (context,
    continuation) pair, but each context is run once and its key/value cache
    shared by its continuations, and several contexts share a batch (left-padded,
    with explicit positions; continuations batched by length): ranking many
    candidates after one prefix is cheap.
    ``batch_size`` counts continuations per forward pass; ``progress`` gets the
    number of continuations done.
    """
    from transformers import DynamicCache

    device = model_device(model)
    pad = padding_id(tokenizer)
    ctx_ids = [encode(tokenizer, c)["input_ids"] for c in contexts]
    cont_ids = [
        [tokenizer(x, add_special_tokens=False)["input_ids"] for x in conts] for conts in continuations
    ]
    out: list[list[list[float]]] = [[[] for _ in conts] for conts in cont_ids]
    # batches of similar length waste little on padding
    items = sorted(
        ((i, j) for i, conts in enumerate(cont_ids) for j, seq in enumerate(conts) if seq),
        key=lambda ij: (len(cont_ids[ij[0]][ij[1]]), ij[0]),
    )
    done = 0
    for chunk in batched(items, batch_size):
        groups = sorted({i for i, _ in chunk})
        where = {i: k for k, i in enumerate(groups)}
        ids, mask = pad_left([ctx_ids[i] for i in groups], pad, device)
        first = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp_min(0),
            use_cache=True,
        )
        rows = torch.tensor([where[i] for i, _ in chunk], device=device)
        cache = DynamicCache(
            [
                (k.index_select(0, rows), v.index_select(0, rows))
                for k, v in first.past_key_values.to_legacy_cache()
            ]
        )
        seqs = [cont_ids[i][j] for i, j in chunk]
        cids, cmask = pad_right(seqs, pad, device)
        positions = mask.sum(-1)[rows].unsqueeze(1) + torch.arange(cids.shape[1], device=device)
        logits = model(
            input_ids=cids,
            attention_mask=torch.cat([mask[rows], cmask], dim=1),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).logits
        # the logits that predict each continuation token: the context's last, then the continuation's own
        preds = torch.cat([first.logits[rows, -1:], logits[:, :-1]], dim=1).float()
        picked = preds.gather(-1, cids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(preds, dim=-1)
        for r, (i, j) in enumerate(chunk):
            out[i][j] = picked[r, : len(seqs[r])].tolist()
        done += len(chunk)
        if progress is not None:
            progress(done)
    return out


def generate_bucketed(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    budgets: Sequence[int],
    *,
    batch_size: int = 32,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> list[list[str]]:
    """:func:`generate` with a token budget per prompt, in the prompts' order.

    Prompts are batched in order of budget, so each batch generates only as far
    as its own longest budget (a batch of names stops long before a batch of
    IBANs). Batch ``j`` of that order samples with seed ``seed * 1000 + j``.
    Other keyword arguments go to :func:`generate`.
    """
    order = sorted(range(len(prompts)), key=lambda i: budgets[i])
    results: list[list[str]] = [[] for _ in prompts]
    done = 0
    for j, chunk in enumerate(batched(order, batch_size)):
        outs = generate(
            model,
            tokenizer,
            [prompts[i] for i in chunk],
            max_new_tokens=max(1, max(budgets[i] for i in chunk)),
            batch_size=len(chunk),
            seed=seed * 1000 + j,
            **kwargs,
        )
        for i, out in zip(chunk, outs, strict=True):
            results[i] = out
        done += len(chunk)
        if progress is not None:
            progress(done)
    return results


#: On CPU, models with fewer parameters than this run single-threaded in :func:`cpu_threads`.
SMALL_MODEL_PARAMETERS = 50_000_000


@contextlib.contextmanager
def cpu_threads(model: Any, threads: int | None = None) -> Iterator[int]:
    """Set torch's CPU thread count for the block (restored after); yields the count used.

    ``None`` picks 1 thread for a small model on CPU (its matrix products are too
    small to gain from threads, and on a busy machine threads spin-wait on each
    other: 3-5x slower audits measured with 2 threads on a loaded 2-core box) and
    keeps the current setting otherwise.
    """
    before = torch.get_num_threads()
    if threads is None:
        small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
        threads = 1 if small and model_device(model).type == "cpu" else before
    torch.set_num_threads(max(1, threads))
    try:
        yield max(1, threads)
    finally:
        torch.set_num_threads(before)


#: Reads of the run queue :func:`running_elsewhere` takes, and the pause between them (seconds).
RUN_QUEUE_READS = 6
RUN_QUEUE_PAUSE = 0.05


def procs_running() -> int | None:
    """Tasks running or waiting for a core right now (Linux ``/proc/stat``'s ``procs_running``,
    this process's running thread included), or None where the kernel does not say."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                if line.startswith("procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def running_elsewhere() -> int | None:
    """Tasks of other processes that want a core now: the fewest :func:`procs_running` reads
    over :data:`RUN_QUEUE_READS` reads :data:`RUN_QUEUE_PAUSE` s apart, less this process's
    own (a busy process is runnable in every read; this one's worker threads, still spinning
    after its last parallel region, and a short job's blip are not), or None where unknown."""
    reads = []
    for i in range(RUN_QUEUE_READS):
        count = procs_running()
        if count is None:
            return None
        reads.append(count)
        if i + 1 < RUN_QUEUE_READS:
            time.sleep(RUN_QUEUE_PAUSE)
    return max(0, min(reads) - 1)


#: Seconds a reading of :func:`idle_cores` stands: an audit asks before each of its ~10
#: rankings, and each fresh reading pauses ~0.25 s (:data:`RUN_QUEUE_READS`).
IDLE_CORES_TTL = 20.0
_idle_reading: tuple[float, int] | None = None  # (time.monotonic() of the reading, cores)


def idle_cores() -> int:
    """CPU cores other processes leave free: the cores less what :func:`running_elsewhere`
    finds (at least 1); where the kernel does not say, the 1-minute load average beyond the
    one core this process keeps busy. A reading is reused for :data:`IDLE_CORES_TTL` s.

    Not the load average first: it trails by a minute, so a job started as the last one ended
    would read that one's load and keep a single thread for its whole run (measured: a tiny
    ``twinfit`` run at 1 thread took 157 s, at 2 threads 111 s, each started after the other).
    """
    global _idle_reading
    now = time.monotonic()
    if _idle_reading is not None and now - _idle_reading[0] < IDLE_CORES_TTL:
        return _idle_reading[1]
    cores = os.cpu_count() or 1
    others: float | None = running_elsewhere()
    if others is None:
        try:
            others = max(0.0, os.getloadavg()[0] - 1.0)
        except OSError:  # not available on this platform
            others = float(cores)
    idle = max(1, min(cores, int(cores - others + 0.5)))
    _idle_reading = (now, idle)
    return idle


@contextlib.contextmanager
def batch_threads(model: Any, threads: int | None = None) -> Iterator[int]:
    """Threads for large batched forward passes (ranking many candidates); yields the count used.

    ``None``: on CPU, as many threads as other processes leave cores idle (:func:`idle_cores`):
    a batch of a thousand continuations keeps every core busy (on 2 idle cores the
    audit's exposure ranking runs 1.4x faster than on one), while on a machine
    other jobs already load, one thread avoids the spin-waiting that makes threads
    slower than none (see :func:`cpu_threads`). Off CPU, with ``threads`` given, or in
    one of several processes (``torchrun``: the cores are the launcher's to share out, and
    each process taking every idle one would oversubscribe them), as :func:`cpu_threads`.
    """
    if threads is None and model_device(model).type == "cpu" and world_size() == 1:
        threads = idle_cores()
    with cpu_threads(model, threads) as used:
        yield used


@torch.no_grad()
def sample_continuations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    budgets: Sequence[int],
    *,
    num_samples: int,
    top_k: int = 40,
    temperature: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """``num_samples`` top-k samples per prompt, each at most ``budgets[i]`` new tokens, in order.

    Plain top-k sampling at ``temperature`` (the model's own generation config
    plays no part), with each prompt run once and its key/value cache shared by
    its samples, where :func:`generate` would run it ``num_samples`` times.
    Prompts are batched in order of budget (as :func:`generate_bucketed` does);
    batch ``j`` of that order draws from a generator seeded ``seed * 1000 + j``,
    so the samples depend only on the prompts, budgets and seed. A sample stops
    at any of :func:`stop_ids`.
    """
    from transformers import DynamicCache

    device = model_device(model)
    pad = generation_pad_id(tokenizer)
    stops = torch.tensor(stop_ids(model, tokenizer), dtype=torch.long, device=device)
    order = sorted(range(len(prompts)), key=lambda i: budgets[i])
    results: list[list[str]] = [[] for _ in prompts]
    done = 0
    for j, chunk in enumerate(batched(order, batch_size)):
        ids, mask = pad_left([encode(tokenizer, prompts[i])["input_ids"] for i in chunk], pad, device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache = DynamicCache(
            [
                (k.repeat_interleave(num_samples, 0), v.repeat_interleave(num_samples, 0))
                for k, v in out.past_key_values.to_legacy_cache()
            ]
        )
        mask = mask.repeat_interleave(num_samples, 0)
        position = positions[:, -1:].repeat_interleave(num_samples, 0)
        logits = out.logits[:, -1].repeat_interleave(num_samples, 0)
        gen = torch.Generator(device=device).manual_seed(seed * 1000 + j)
        rows = logits.shape[0]
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        steps: list[torch.Tensor] = []
        for step in range(max(1, max(budgets[i] for i in chunk))):
            top_values, top_ids = (logits.float() / temperature).topk(min(top_k, logits.shape[-1]), dim=-1)
            pick = torch.multinomial(torch.softmax(top_values, dim=-1), 1, generator=gen)
            token = top_ids.gather(-1, pick).squeeze(-1).masked_fill(finished, pad)
            steps.append(token)
            finished |= torch.isin(token, stops)
            if bool(finished.all()) or step + 1 == max(budgets[i] for i in chunk):
                break
            mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=device)], dim=1)
            position = position + 1
            out = model(
                input_ids=token.unsqueeze(-1),
                attention_mask=mask,
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1]
        tokens = torch.stack(steps, dim=1).tolist()
        for n, i in enumerate(chunk):
            budget = max(1, budgets[i])
            rows_i = tokens[n * num_samples : (n + 1) * num_samples]
            results[i] = tokenizer.batch_decode([r[:budget] for r in rows_i], skip_special_tokens=True)
        done += len(chunk)
        if progress is not None:
            progress(done)
    return results


def is_main_process() -> bool:
    """Whether this process writes outputs: always, unless it is a non-zero rank of a distributed run."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def wait_for_everyone() -> None:
    """A barrier across the processes of a distributed run (``torchrun`` / ``accelerate launch``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def world_size() -> int:
    """How many processes share this run (1 unless launched by ``torchrun`` / ``accelerate launch``)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def join_processes(device: str | None = None) -> int:
    """Join the process group of a ``torchrun`` / ``accelerate launch`` run (accelerate's
    ``PartialState``: NCCL with one GPU per process, gloo where ``device`` is the CPU or no
    GPU is there); the number of processes. Alone (no launcher in the environment) it does
    nothing and returns 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        named = device not in (None, "auto")
        on_cpu = not torch.cuda.is_available() or (named and not str(device).startswith("cuda"))
        PartialState(cpu=on_cpu)
        atexit.unregister(leave_processes)  # once, however many steps of a pipeline join
        atexit.register(leave_processes)
    return world_size()


def leave_processes() -> None:
    """Destroy the process group, if this process joined one (registered at exit by
    :func:`join_processes`): a gloo group left to the interpreter's teardown can abort a
    process whose work is done ("terminate called without an active exception", exit -6)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_map(items: Sequence[Any], compute: Callable[[Sequence[Any]], Sequence[Any]]) -> list[Any]:
    """``compute(items)`` with the work split over the processes of a distributed run.

    ``compute`` must give one result per item, each depending on its item alone (batching
    aside). Each process computes a contiguous share; every process gets every result, in
    order (``all_gather_object``). One process: ``compute(items)``.
    """
    import torch.distributed as dist

    world = world_size()
    if world == 1:
        return list(compute(items)) if items else []
    per = -(-len(items) // world)
    start = dist.get_rank() * per
    share = items[start : start + per]
    mine = list(compute(share)) if share else []
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, mine)
    return [result for part in parts for result in part]

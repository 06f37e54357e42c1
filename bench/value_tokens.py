"""Where a value's lean sits, token by token: each planted value of one type against same-shape twins.

For each planted record's value of ``--type`` (names by default), the value and ``--twins``
plausible same-shape values (the audit's sampler, ``PlausibleCandidates``) are scored after the
record's own prefix in every model given, with the library's cached continuation scoring, as
the audit's exposure does (the space before a value goes with it). Printed per value: the true
value's NLL (nats), the twins' median, the true value's rank among them (0: above every twin)
and its per-token NLL. A model that never saw the records puts the true value at a uniform
rank; an unlearned one that still leans puts it near 0. ``bench/twinfit.md`` (2026-12-07,
afternoon) reads SmolLM2 report victim 8's names this way.

    python bench/value_tokens.py VICTIM_DIR MODEL [MODEL ...] [--type PERSON] [--twins 30] [--seed 123]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path


def main() -> None:
    from pii_unlearn.checkpoint import load_model
    from pii_unlearn.lm import continuation_logprobs, encode
    from pii_unlearn.pii.shapes import PlausibleCandidates
    from pii_unlearn.synth.victim import PLANTED_FILE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("victim", type=Path, help="a victim checkpoint folder (its planted records are read)")
    parser.add_argument("models", nargs="+", help="checkpoints to score the values in")
    parser.add_argument("--type", default="PERSON", help="the entity type to read")
    parser.add_argument("--twins", type=int, default=30, help="same-shape twins per value")
    parser.add_argument("--seed", type=int, default=123, help="seed of the twins' draws")
    args = parser.parse_args()

    sampler, rng = PlausibleCandidates(args.seed), random.Random(args.seed)
    items: list[tuple[str, str, list[str]]] = []
    planted = args.victim / PLANTED_FILE
    if not planted.is_file():
        parser.error(f"{planted} not found: give the victim's checkpoint folder (make-victim's output)")
    for line in planted.read_text().splitlines():
        record = json.loads(line)
        for span in record["spans"]:
            if span["entity_type"] != args.type:
                continue
            text, value = record["text"], record["text"][span["start"] : span["end"]]
            # as the audit scores it: the space before the value goes with the value
            prefix = text[: span["start"]].rstrip()
            lead = text[len(prefix) : span["start"]]
            twins = sampler.draw(value, args.type, args.twins, rng)
            items.append((prefix, lead + value, [lead + t for t in twins]))
    print(f"{len(items)} {args.type} values, {args.twins} twins each (seed {args.seed})")
    for source in args.models:
        loaded = load_model(source, device="cpu")
        model, tokenizer = loaded.model, loaded.tokenizer
        scores = continuation_logprobs(
            model,
            tokenizer,
            [prefix for prefix, _, _ in items],
            [[value, *twins] for _, value, twins in items],
        )
        print(f"model {source}")
        ranks = []
        for (prefix, value, _), rows in zip(items, scores, strict=True):
            true = [-x for x in rows[0]]
            twins = [-sum(r) for r in rows[1:]]
            rank = sum(t < sum(true) for t in twins)
            ranks.append(rank / max(len(twins), 1))
            ids = encode(tokenizer, prefix + value)["input_ids"][-len(true) :]
            pieces = " ".join(f"{tokenizer.decode([i])!r}:{n:.1f}" for i, n in zip(ids, true, strict=True))
            print(
                f"  {value.strip():28} true {sum(true):6.1f}  twins' median {statistics.median(twins):6.1f}  "
                f"rank {rank:3d}/{len(twins)}  {pieces}"
            )
        print(f"  mean rank {statistics.mean(ranks):.2f} of 1 (a never-seen model: about 0.5)")


if __name__ == "__main__":
    main()

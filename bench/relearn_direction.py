"""Does a relearning fine-tune undo an unlearning run? The attack's weight change against the run's.

The audit's worst relearning fine-tune on SmolLM2 is the full one on records with fake values (the
planted records, each value replaced by a Faker value of its type; `audit --relearn`'s
`fake_twins`). This runs that fine-tune on an unlearned model with the audit's own function
(``fine_tune``: AdamW, 20 steps, batches of 8) and compares, per group of weights (embeddings,
attention, MLP, norms), the attack's change ``a = attacked - unlearned`` with the unlearning's
change ``u = unlearned - victim``: their sizes (L2), their cosine ``cos(a, -u)``, and how far the
attack goes back along ``-u`` (``<a, -u> / |u|^2``: 1 would be the victim's weights again, 0 no way
back, negative further along the unlearning's direction). A random direction in 10^8 weights has a
cosine of ~1e-4 with ``-u``. ``bench/twinfit.md`` (2026-12-07, evening) reads it.

    python bench/relearn_direction.py VICTIM_DIR UNLEARNED_DIR [--lr 1e-3] [--twins 4] [--seed 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

GROUPS = ("embed", "norm", "attn", "mlp")


def group_of(name: str) -> str:
    """The group a parameter belongs to, by its name (the first of :data:`GROUPS` in it, else 'other')."""
    return next((g for g in GROUPS if g in name), "other")


def main() -> None:

    from pii_unlearn.artifacts import read_records
    from pii_unlearn.audit.probes import fine_tune
    from pii_unlearn.audit.variants import fake_twin
    from pii_unlearn.checkpoint import load_model
    from pii_unlearn.pii.fakes import make_faker
    from pii_unlearn.synth.victim import PLANTED_FILE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("victim", type=Path, help="the victim checkpoint folder (make-victim's output)")
    parser.add_argument("unlearned", type=Path, help="an unlearned checkpoint of that victim")
    parser.add_argument("--lr", type=float, default=1e-3, help="the attack's learning rate (full weights)")
    parser.add_argument("--twins", type=int, default=4, help="fake-valued copies of each planted record")
    parser.add_argument("--seed", type=int, default=5, help="seed of the fake values and of the batches")
    args = parser.parse_args()
    planted = args.victim / PLANTED_FILE
    if not planted.is_file():
        parser.error(f"{planted} not found: give the victim's checkpoint folder (make-victim's output)")
    if not (args.unlearned / "config.json").is_file():
        parser.error(f"{args.unlearned} is not a checkpoint folder (no config.json)")

    victim = load_model(args.victim, device="cpu").model
    unlearned = load_model(args.unlearned, device="cpu")
    records = [r for r in read_records(planted) if r.spans]
    fake = make_faker(args.seed)
    texts = [fake_twin(r, fake).text for r in records for _ in range(args.twins)]
    attacked = fine_tune(
        unlearned.model,
        unlearned.tokenizer,
        texts,
        steps=20,
        lr=args.lr,
        lora=False,
        batch_size=8,
        seed=args.seed,
    )
    before, after = dict(victim.named_parameters()), dict(attacked.named_parameters())
    sums: dict[str, list[float]] = {}
    for name, p in unlearned.model.named_parameters():
        u = (p.detach() - before[name].detach()).double()
        a = (after[name].detach() - p.detach()).double()
        for key in (group_of(name), "all"):
            acc = sums.setdefault(key, [0.0, 0.0, 0.0])
            acc[0] += float((u * u).sum())
            acc[1] += float((a * a).sum())
            acc[2] += float(-(a * u).sum())
    print(f"attack: full, lr {args.lr:g}, 20 steps, {len(texts)} fake-valued records, seed {args.seed}")
    print(
        "| weights | unlearning's change (L2) | attack's change (L2) | cos(attack, -unlearning) | way back |"
    )
    print("|---|---:|---:|---:|---:|")
    for key, (uu, aa, back) in sums.items():
        cos = back / max((uu * aa) ** 0.5, 1e-30)
        print(f"| {key} | {uu**0.5:.2f} | {aa**0.5:.2f} | {cos:+.3f} | {back / max(uu, 1e-30):+.3f} |")


if __name__ == "__main__":
    main()

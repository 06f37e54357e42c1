"""``pii-unlearn risk-score``: add UnPII's PII Risk Index to every record, or show the policy."""

from __future__ import annotations

from collections import Counter
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pii_unlearn.cli.app import command, console, out
from pii_unlearn.errors import InputError

if TYPE_CHECKING:
    from pii_unlearn.artifacts import Record
    from pii_unlearn.risk.policy import Policy
    from pii_unlearn.risk.score import RecordRisk, ScoreReport

#: How many of the riskiest records the summary lists.
TOP_ROWS = 10
#: How many detector entity types the policy table lists per policy type.
ENTITIES_SHOWN = 4
#: Longest text shown per record in the summary.
TEXT_WIDTH = 90


class Sort(str, Enum):
    """Output order of the records."""

    none = "none"
    pri = "pri"
    risk = "risk"


@command("risk-score")
def risk_score(
    input_path: Annotated[
        Path | None, typer.Option("--input", "-i", help="PII records (JSONL with spans), e.g. from detect.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write the scored records (JSONL).")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", "-p", help="Policy YAML (factor weights, types, combinations, mapping)."),
    ] = None,
    sort: Annotated[
        Sort,
        typer.Option(help="Order of the output: as read, by PRI, or by risk = PRI x memorisation."),
    ] = Sort.none,
    top: Annotated[
        int | None, typer.Option(min=1, help="Keep only the first N records (after sorting): a budget.")
    ] = None,
    show_pii: Annotated[
        bool, typer.Option("--show-pii", help="Show PII values in the summary instead of masking them.")
    ] = False,
    show_policy: Annotated[
        bool,
        typer.Option("--show-policy", help="Print the effective policy (types, PRI, combinations) and exit."),
    ] = False,
) -> None:
    """Score each record's PII Risk Index (UnPII's PRI) from a policy file.

    Adds pri, pri_normalized, policy_matches, and per span policy_type and pri, to every record.

    Records with a memorization score (from invert) also get risk = PRI x memorization.

    Other fields and the order are kept unless --sort is given.

    Without --policy the shipped default policy (UnPII's published scores) applies; --show-policy prints it.
    """
    from pii_unlearn.risk.policy import load_policy
    from pii_unlearn.risk.score import score_file

    loaded = load_policy(policy)
    for warning in loaded.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if show_policy:
        print_policy(loaded)
        return
    if input_path is None:
        raise InputError("--input is required (or --show-policy to print the policy)")
    if output is None:
        raise InputError("--output is required")
    report = score_file(input_path, output, loaded, sort=sort.value, top=top)
    print_summary(report, show_pii=show_pii)


def _policy_source(policy: Policy) -> str:
    from pii_unlearn.risk.policy import DEFAULT_POLICY_PATH

    return "shipped default" if policy.path in (None, DEFAULT_POLICY_PATH) else str(policy.path)


def print_policy(policy: Policy) -> None:
    """The effective policy as tables: weights, types with PRI, combinations, entity mapping."""
    spec = policy.spec
    out.print(f"[bold]policy[/] {escape(spec.name)} ({escape(_policy_source(policy))})", highlight=False)
    if spec.description:
        out.print(Text(spec.description))
    weights = ", ".join(f"{f} {w:g}" for f, w in spec.weights.as_dict().items())
    out.print(f"weights: {weights}", highlight=False)
    out.print(f"combination rule: {spec.combination_rule}", highlight=False)

    conditional = {e for e, rules in spec.entities.items() if len(rules) > 1}
    types = Table(title="PII types", title_justify="left")
    for col in ("type", "PRI", "from", "detector entities", "source"):
        types.add_column(col, justify="right" if col == "PRI" else "left")
    for name in sorted(policy.type_pri, key=lambda t: (-policy.type_pri[t], t)):
        entry = spec.types[name]
        how = "score" if entry.ratings is None else entry.ratings.compact()
        ents = [e + ("*" if e in conditional else "") for e in policy.entities_of(name)]
        if len(ents) > ENTITIES_SHOWN:
            ents = [*ents[:ENTITIES_SHOWN], f"+{len(ents) - ENTITIES_SHOWN} more"]
        if name == spec.unmapped:
            ents.append("(unmapped types)")
        types.add_row(
            Text(name), f"{policy.type_pri[name]:.3f}", how, Text(", ".join(ents)), Text(entry.source or "")
        )
    out.print(types)

    if policy.combinations:
        combos = Table(title="Combinations", title_justify="left")
        for col in ("types", "PRI", "sum of parts", "source"):
            combos.add_column(col, justify="right" if col in ("PRI", "sum of parts") else "left")
        for combo in sorted(policy.combinations, key=lambda c: (-c.pri, c.index)):
            parts = sum(policy.type_pri[t] for t in combo.types)
            combos.add_row(
                Text(combo.name), f"{combo.pri:.3f}", f"{parts:.3f}", Text(combo.entry.source or "")
            )
        out.print(combos)

    if conditional:
        rules = Table(title="* Conditional entity mappings (first match wins)", title_justify="left")
        rules.add_column("detector entity")
        rules.add_column("policy type")
        for entity in sorted(conditional):
            rules.add_row(Text(entity), Text(policy.describe_mapping(entity)))
        out.print(rules)


def _masked_text(report_record: tuple[Record, RecordRisk], show_pii: bool) -> Text:
    """The record's text, or without ``show_pii`` a preview with no digits, @-tokens or names."""
    from pii_unlearn.pii.anonymize import masked_preview

    record, risk = report_record
    if show_pii:
        text = " ".join(record.text.split())
    else:
        tags = {
            (s.start, s.end): p.policy_type or s.entity_type
            for s, p in zip(record.spans, risk.spans, strict=True)
        }
        text = masked_preview(record.text, record.spans, lambda s: tags[(s.start, s.end)])
    if len(text) > TEXT_WIDTH:
        text = text[: TEXT_WIDTH - 1] + "…"
    return Text(text)


def print_summary(report: ScoreReport, *, show_pii: bool = False) -> None:
    """Types with counts and PRI, then the riskiest records (PII masked unless asked)."""
    policy = report.policy
    span_counts: Counter[str] = Counter()
    record_counts: Counter[str] = Counter()
    entities: dict[str, set[str]] = {}
    unscored: Counter[str] = Counter()
    for record, risk in report.scored:
        for span, srisk in zip(record.spans, risk.spans, strict=True):
            if srisk.policy_type is None:
                unscored[span.entity_type] += 1
                continue
            span_counts[srisk.policy_type] += 1
            entities.setdefault(srisk.policy_type, set()).add(span.entity_type)
        record_counts.update(risk.types)

    types = Table(title="PII types found", title_justify="left")
    for col in ("policy type", "detector entities", "spans", "records", "PRI"):
        types.add_column(col, justify="left" if col in ("policy type", "detector entities") else "right")
    for name in sorted(span_counts, key=lambda t: (-policy.type_pri[t], t)):
        types.add_row(
            name,
            ", ".join(sorted(entities[name])),
            str(span_counts[name]),
            str(record_counts[name]),
            f"{policy.type_pri[name]:.3f}",
        )
    for entity, count in sorted(unscored.items()):
        types.add_row("(not scored)", entity, str(count), "", "")
    out.print(types)

    has_risk = any(r.risk is not None for _, r in report.scored)
    risks = [r for _, r in report.scored]
    top = sorted(
        range(len(risks)), key=lambda i: (risks[i].risk is None, -(risks[i].risk or 0.0), -risks[i].pri)
    )[:TOP_ROWS]
    by = "risk = PRI x memorisation" if has_risk else "PRI"
    riskiest = Table(title=f"Riskiest records (top {len(top)}, by {by})", title_justify="left")
    for col in ("id", "PRI", "norm", *(["risk"] if has_risk else []), "entries", "text"):
        riskiest.add_column(col, justify="left" if col in ("id", "entries", "text") else "right")
    for i in top:
        record, risk = report.scored[i]
        extra = [f"{risk.risk:.3f}" if risk.risk is not None else "-"] if has_risk else []
        riskiest.add_row(
            Text(str(record.id)),
            f"{risk.pri:.3f}",
            f"{risk.pri_normalized:.3f}",
            *extra,
            Text(", ".join(e.name for e in risk.entries) or "-"),
            _masked_text(report.scored[i], show_pii),
        )
    out.print(riskiest)
    pris = [r.pri for _, r in report.scored]
    mean = sum(pris) / len(pris) if pris else 0.0
    kept = "" if len(pris) == report.records_in else f" (of {report.records_in})"
    out.print(
        f"wrote {len(pris)} records{kept} to [bold]{escape(str(report.output))}[/]: mean PRI {mean:.3f}, "
        f"max {max(pris, default=0.0):.3f}; policy {escape(policy.name)} ({escape(_policy_source(policy))})",
        highlight=False,
    )

"""Tests for the PII Risk Index: the policy file, record scoring and the ``risk-score`` subcommand."""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pii_unlearn.artifacts import Record, read_manifest, sha256_file
from pii_unlearn.cli import app
from pii_unlearn.errors import InputError
from pii_unlearn.risk import (
    DEFAULT_POLICY_PATH,
    FACTORS,
    annotate,
    default_policy,
    loss_weight,
    policy_from_dict,
    rank,
    record_pri,
    score_record,
    score_records,
    score_types,
)

#: UnPII's published default PRI table (docs/methods.md), as sets of default-policy types.
PUBLISHED: dict[tuple[str, ...], float] = {
    ("gender",): 0.173,
    ("region",): 0.175,
    ("zip",): 0.179,
    ("dob",): 0.179,
    ("name",): 0.183,
    ("street_address",): 0.224,
    ("name", "region"): 0.349,
    ("name", "street_address"): 0.392,
    ("phone",): 0.404,
    ("drivers_license",): 0.456,
    ("region", "gender", "dob"): 0.488,
    ("gender", "zip", "dob"): 0.491,
    ("ssn",): 0.513,
    ("passport",): 0.513,
    ("name", "medical"): 0.544,
    ("name", "credit_card"): 0.567,
    ("name", "bank_account"): 0.665,
}

#: A small valid policy for CLI tests: two rated types, one scored, one combination.
SMALL_POLICY: dict[str, Any] = {
    "version": 1,
    "name": "small",
    "weights": {"sensitivity": 2},
    "types": {
        "name": {"score": 0.2},
        "ssn": {"ratings": dict.fromkeys(FACTORS, 5)},
        "email": {"ratings": {**dict.fromkeys(FACTORS, 1), "sensitivity": 3}},
    },
    "combinations": [{"types": ["name", "email"], "score": 0.5}],
    "entities": {"PERSON": "name", "US_SSN": "ssn", "EMAIL_ADDRESS": "email"},
    "unmapped": None,
}


def _raw_default() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))


def _record(rid: str, parts: list[tuple[str, str | None]], **extra: Any) -> dict[str, Any]:
    """A record dict from (text, entity type or None) pieces, with exact spans."""
    text, spans = "", []
    for piece, entity in parts:
        if entity is not None:
            spans.append(
                {"start": len(text), "end": len(text) + len(piece), "entity_type": entity, "score": 0.9}
            )
        text += piece
    return {"id": rid, "text": text, "spans": spans, **extra}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def policy():
    return default_policy()


@pytest.fixture
def pii_file(tmp_path: Path) -> Path:
    rows = [
        _record("a", [("Ann Lee", "PERSON"), (" pays with ", None), ("4111111111111111", "CREDIT_CARD")]),
        _record("b", [("Call ", None), ("555-123-4567", "PHONE_NUMBER")], source="chat"),
        _record("c", [("SSN ", None), ("078-05-1120", "US_SSN"), (" of ", None), ("Bo Ray", "PERSON")]),
        _record("d", [("Nothing personal here.", None)]),
    ]
    return _write_jsonl(tmp_path / "pii.jsonl", rows)


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["risk-score", *args])


# ----------------------------------------------------------------------------- default policy


@pytest.mark.parametrize(("types", "published"), list(PUBLISHED.items()), ids=lambda v: str(v))
def test_default_policy_reproduces_published_table(policy, types: tuple[str, ...], published: float) -> None:
    scored = score_types(policy, types)
    assert scored.pri == pytest.approx(published, abs=1e-3)
    assert scored.pri_normalized == pytest.approx(published, abs=1e-3)
    assert len(scored.entries) == 1 and set(scored.entries[0].types) == set(types)
    assert scored.entries[0].kind == ("combination" if len(types) > 1 else "type")


def test_published_table_through_records(policy) -> None:
    """The same numbers when the types come from Presidio entity names in real text."""
    cases = {
        "name + credit card": (
            [("Ann Lee", "PERSON"), (" ", None), ("4111111111111111", "CREDIT_CARD")],
            0.567,
        ),
        "name + IBAN": ([("Ann Lee", "PERSON"), (" ", None), ("DE89370400440532013000", "IBAN_CODE")], 0.665),
        "name + street": ([("Ann Lee", "PERSON"), (" at ", None), ("12 Oak Street", "LOCATION")], 0.392),
        "name + town": ([("Ann Lee", "PERSON"), (" of ", None), ("Springfield", "LOCATION")], 0.349),
        "dob": ([("born ", None), ("March 3, 1985", "DATE_TIME")], 0.179),
        "phone": ([("555-123-4567", "PHONE_NUMBER")], 0.404),
        "ssn": ([("078-05-1120", "US_SSN")], 0.513),
        "driver licence": ([("D1234567", "US_DRIVER_LICENSE")], 0.456),
        "passport": ([("912803456", "US_PASSPORT")], 0.513),
    }
    for label, (parts, expected) in cases.items():
        risk = score_record(Record.model_validate(_record(label, parts)), policy)
        assert risk.pri == pytest.approx(expected, abs=1e-3), label


def test_factor_rated_types_follow_the_formula(policy) -> None:
    spec = policy.spec
    for name, entry in spec.types.items():
        if entry.ratings is None:
            continue
        expected = sum((getattr(entry.ratings, f) - 1) / 4 for f in FACTORS) / len(FACTORS)
        assert policy.type_pri[name] == pytest.approx(expected), name
        assert 0 <= policy.type_pri[name] <= 1
    # The types the published table lacks get factor-based scores on its scale (below SSN).
    for name in ("email", "ip_address", "credit_card", "bank_account", "medical"):
        assert spec.types[name].ratings is not None
        assert 0.1 < policy.type_pri[name] < policy.type_pri["ssn"]
    # Every published single-type score is a direct score.
    for types, published in PUBLISHED.items():
        if len(types) == 1:
            assert spec.types[types[0]].score == published


def test_weights_change_rated_types_only() -> None:
    raw = _raw_default()
    raw["weights"] = {**dict.fromkeys(FACTORS, 0), "sensitivity": 1}
    weighted = policy_from_dict(raw)
    assert weighted.type_pri["medical"] == pytest.approx((5 - 1) / 4)  # sensitivity alone
    assert weighted.type_pri["ssn"] == 0.513  # a direct score stays
    # name + medical (0.544) now falls below medical alone (1.0): scored as 1.0, with a warning.
    assert score_types(weighted, ["name", "medical"]).pri == pytest.approx(1.0)
    assert any("name + medical" in w and "scored as 1.000" in w for w in weighted.warnings)
    assert not default_policy().warnings


def test_default_policy_maps_the_common_presidio_entities(policy) -> None:
    from pii_unlearn.entities import DEFAULT_ENTITIES

    for entity in (*DEFAULT_ENTITIES, "US_DRIVER_LICENSE", "US_PASSPORT", "US_BANK_NUMBER", "US_ITIN", "NRP"):
        assert entity in policy.spec.entities, entity
        assert policy.policy_type(entity, "x 1") is not None


# ----------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("entity", "text", "expected"),
    [
        ("LOCATION", "87115 Rodriguez Plaza", "street_address"),
        ("LOCATION", "Springfield", "region"),
        ("LOCATION", "Paris, France", "region"),
        ("LOCATION", "90210", "zip"),
        ("DATE_TIME", "February 21, 1957", "dob"),
        ("DATE_TIME", "03/14/1985", "dob"),
        ("DATE_TIME", "14 March 1985", "dob"),
        ("DATE_TIME", "3 pm", "date"),
        ("DATE_TIME", "last year", "date"),
        ("PERSON", "Ann Lee", "name"),
        ("IBAN_CODE", "DE89370400440532013000", "bank_account"),
        ("ORGANIZATION", "Acme Corp", None),
        ("SOMETHING_NEW", "x", "other"),
    ],
)
def test_entity_mapping(policy, entity: str, text: str, expected: str | None) -> None:
    assert policy.policy_type(entity, text) == expected


def test_unscored_and_repeated_spans(policy) -> None:
    rec = Record.model_validate(
        _record(
            "r",
            [
                ("555-123-4567", "PHONE_NUMBER"),
                (" or ", None),
                ("555-999-0000", "PHONE_NUMBER"),
                (" ", None),
                ("Acme Corp", "ORGANIZATION"),
            ],
        )
    )
    risk = score_record(rec, policy)
    assert risk.pri == pytest.approx(0.404)  # two phone numbers count once; the company not at all
    assert [s.pri for s in risk.spans] == [pytest.approx(0.404), pytest.approx(0.404), None]
    out = annotate(rec, risk)
    assert out["spans"][2]["policy_type"] is None and out["spans"][2]["pri"] is None


# ----------------------------------------------------------------------------- combinations and sums


def test_no_combination_means_the_sum(policy) -> None:
    scored = score_types(policy, ["name", "phone", "ssn"])
    assert scored.pri == pytest.approx(0.183 + 0.404 + 0.513)
    assert {e.kind for e in scored.entries} == {"type"}


def test_combination_plus_leftover_types(policy) -> None:
    scored = score_types(policy, ["name", "credit_card", "phone"])
    assert scored.pri == pytest.approx(0.567 + 0.404)
    assert [e.name for e in scored.entries] == ["name + credit_card", "phone"]


def test_best_combination_first_then_disjoint_ones(policy) -> None:
    # name + street (0.392) beats name + region (0.349); region is then on its own.
    scored = score_types(policy, ["name", "street_address", "region"])
    assert [e.name for e in scored.entries] == ["name + street_address", "region"]
    assert scored.pri == pytest.approx(0.392 + 0.175)
    # Two disjoint combinations both apply.
    scored = score_types(policy, ["name", "bank_account", "region", "gender", "dob"])
    assert [e.name for e in scored.entries] == ["name + bank_account", "region + gender + dob"]
    assert scored.pri == pytest.approx(0.665 + 0.488)


def test_best_entry_rule_is_the_papers_literal_rule() -> None:
    raw = _raw_default()
    raw["combination_rule"] = "best-entry"
    literal = policy_from_dict(raw)
    assert score_types(literal, ["name", "credit_card", "phone"]).pri == pytest.approx(0.567)
    assert score_types(literal, ["name", "phone"]).pri == pytest.approx(0.183 + 0.404)


def test_adding_a_type_never_lowers_the_score(policy) -> None:
    types = ["name", "region", "street_address", "gender", "zip", "dob", "medical", "credit_card"]
    types += ["bank_account", "ssn"]
    for k in range(len(types)):
        for subset in itertools.combinations(types, k):
            base = score_types(policy, subset).pri
            for extra in set(types) - set(subset):
                assert score_types(policy, (*subset, extra)).pri >= base - 1e-9, (subset, extra)


def test_normalised_score_is_a_noisy_or(policy) -> None:
    everything = score_types(policy, policy.type_pri)
    assert everything.pri > 1
    assert 0 < everything.pri_normalized < 1
    assert everything.pri_normalized == pytest.approx(1 - math.prod(1 - e.score for e in everything.entries))
    assert score_types(policy, []).pri == 0 and score_types(policy, []).pri_normalized == 0
    small = score_types(policy, ["name", "phone"])
    assert small.pri_normalized < everything.pri_normalized


def test_unknown_policy_type_is_an_input_error(policy) -> None:
    with pytest.raises(InputError, match="unknown policy type 'nope'"):
        score_types(policy, ["nope"])


# ----------------------------------------------------------------------------- memorisation, ranking


def test_memorisation_gives_risk(policy) -> None:
    parts = [("Ann Lee", "PERSON"), (" ", None), ("078-05-1120", "US_SSN")]
    rec = Record.model_validate(_record("m", parts, memorization=0.5))
    risk = score_record(rec, policy)
    assert risk.risk == pytest.approx(0.5 * (0.183 + 0.513))
    assert [s.risk for s in risk.spans] == [pytest.approx(0.0915), pytest.approx(0.2565)]
    assert annotate(rec, risk)["risk"] == pytest.approx(risk.risk, abs=1e-6)

    # Span-level values only: the record's confidence is their PRI-weighted mean.
    row = _record("s", parts)
    row["spans"][0]["memorization"] = 1.0
    row["spans"][1]["memorization"] = 0.0
    risk = score_record(Record.model_validate(row), policy)
    assert risk.memorization == pytest.approx(0.183 / (0.183 + 0.513))
    assert risk.risk == pytest.approx(0.183)

    plain = score_record(Record.model_validate(_record("p", parts)), policy)
    assert plain.risk is None and "risk" not in annotate(Record.model_validate(_record("p", parts)), plain)


@pytest.mark.parametrize("bad", [1.5, -0.1, "high", True])
def test_bad_memorisation_is_rejected(policy, bad: Any) -> None:
    rec = Record.model_validate(_record("m", [("Ann Lee", "PERSON")], memorization=bad))
    with pytest.raises(InputError, match="record 'm': memorization: must be a number between 0 and 1"):
        score_record(rec, policy)


def test_rank_orders_and_budgets(policy) -> None:
    rows = [
        _record("low", [("Ann", "PERSON")], memorization=1.0),  # pri 0.183, risk 0.183
        _record("high", [("078-05-1120", "US_SSN")], memorization=0.1),  # pri 0.513, risk 0.0513
        _record("mid", [("555-123-4567", "PHONE_NUMBER")], memorization=0.9),  # pri 0.404, risk 0.3636
        _record("tie", [("Bo", "PERSON")], memorization=1.0),
    ]
    scored = score_records([Record.model_validate(r) for r in rows], policy)
    ids = lambda order: [scored[i][0].id for i in order]  # noqa: E731
    assert ids(rank(scored)) == ["low", "high", "mid", "tie"]
    assert ids(rank(scored, "pri")) == ["high", "mid", "low", "tie"]  # ties keep input order
    assert ids(rank(scored, "risk")) == ["mid", "low", "tie", "high"]
    assert ids(rank(scored, "risk", top=2)) == ["mid", "low"]
    assert ids(rank(scored, top=1)) == ["low"]
    no_memo = score_records([Record.model_validate(_record("x", [("Ann", "PERSON")]))], policy)
    with pytest.raises(InputError, match="--sort risk needs memorisation scores"):
        rank(no_memo, "risk")


def test_record_pri_and_loss_weight(policy) -> None:
    parts = [("Ann Lee", "PERSON"), (" ", None), ("4111111111111111", "CREDIT_CARD")]
    fresh = Record.model_validate(_record("f", parts))
    assert record_pri(fresh) == pytest.approx(0.567)
    assert loss_weight(fresh) == pytest.approx(1.567)
    stored = Record.model_validate({**_record("s", parts), "pri": 0.9, "pri_normalized": 0.6})
    assert record_pri(stored) == 0.9 and loss_weight(stored, normalized=True) == pytest.approx(1.6)


# ----------------------------------------------------------------------------- CLI


def test_cli_scores_records_keeping_fields_and_order(tmp_path: Path, pii_file: Path) -> None:
    out = tmp_path / "risk.jsonl"
    result = _invoke("--input", str(pii_file), "--output", str(out))
    assert result.exit_code == 0, result.output
    rows = _read_jsonl(out)
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert rows[0]["pri"] == pytest.approx(0.567) and rows[0]["pri_normalized"] == pytest.approx(0.567)
    assert rows[0]["policy_matches"] == [
        {"entry": "name + credit_card", "kind": "combination", "types": ["name", "credit_card"], "pri": 0.567}
    ]
    assert [s["pri"] for s in rows[0]["spans"]] == [0.183, pytest.approx(0.392857, abs=1e-6)]
    assert [s["policy_type"] for s in rows[0]["spans"]] == ["name", "credit_card"]
    assert rows[1]["source"] == "chat" and list(rows[1])[:4] == ["id", "text", "spans", "source"]
    assert rows[2]["pri"] == pytest.approx(0.513 + 0.183)
    assert rows[3]["pri"] == 0 and rows[3]["policy_matches"] == []
    assert all("risk" not in r for r in rows)
    assert out.stat().st_mode & 0o777 == 0o600

    manifest = read_manifest(out)
    assert manifest is not None
    roles = {i["role"]: i for i in manifest["inputs"]}
    assert roles["records"]["sha256"] == sha256_file(pii_file)
    assert roles["policy"]["sha256"] == sha256_file(DEFAULT_POLICY_PATH)
    assert manifest["settings"]["sort"] == "none" and manifest["settings"]["policy"] == "default"


def test_cli_summary_masks_pii_unless_asked(tmp_path: Path, pii_file: Path) -> None:
    masked = _invoke("--input", str(pii_file), "--output", str(tmp_path / "r.jsonl"))
    assert masked.exit_code == 0
    assert "Ann" not in masked.output and "078-05" not in masked.output
    assert "<name>" in masked.output and "credit_card" in masked.output
    shown = _invoke("--input", str(pii_file), "--output", str(tmp_path / "r2.jsonl"), "--show-pii")
    assert shown.exit_code == 0 and "Ann" in shown.output


def test_cli_summary_hides_pii_the_detector_did_not_tag(tmp_path: Path) -> None:
    """The masked table shows tags and plain lower-case words: no digits, @-tokens or names."""
    rows = [
        _record(
            "e",
            [
                ("Mail ", None),
                ("hayden81", "PERSON"),  # the detector tagged part of the address only
                ("@yahoo.com or call 555 0100 ext. 12, Maria said, then ", None),
                ("078-05-1120", "US_SSN"),
                (" card.", None),
            ],
        )
    ]
    pii = _write_jsonl(tmp_path / "pii.jsonl", rows)
    result = _invoke("--input", str(pii), "--output", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 0, result.output
    table = result.output.split("Riskiest records")[1].split("wrote 1 records")[0]
    for raw in ("hayden81", "555", "0100", " 12", "078-05", "1120"):
        assert raw not in table, table
    assert "@" not in table and "yahoo" not in table and "Maria" not in table and "Mail" not in table
    assert "<name>" in table and "ext." in table and "call" in table


def test_masked_preview_shows_only_plain_words() -> None:
    from pii_unlearn.pii.anonymize import HIDDEN, masked_preview

    text = "Write to jo.doe@x.io or (555) 010-0199, Dr. Ann Lee-Smith said; ok? I agree."
    spans = [{"start": 9, "end": 12, "entity_type": "PERSON"}]  # "jo." of the address only
    out = masked_preview(text, spans, lambda s: s["entity_type"])
    assert out == f"{HIDDEN} to <PERSON>{HIDDEN} or {HIDDEN} said; ok? I agree."
    assert masked_preview("", [], str) == ""


def test_cli_sort_top_and_risk(tmp_path: Path) -> None:
    rows = [
        _record("phone", [("555-123-4567", "PHONE_NUMBER")], memorization=0.9),
        _record("ssn", [("078-05-1120", "US_SSN")], memorization=0.2),
        _record("name", [("Ann", "PERSON")], memorization=1.0),
    ]
    src = _write_jsonl(tmp_path / "inv.jsonl", rows)
    out = tmp_path / "risk.jsonl"
    result = _invoke("-i", str(src), "-o", str(out), "--sort", "pri", "--top", "2")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in _read_jsonl(out)] == ["ssn", "phone"]
    result = _invoke("-i", str(src), "-o", str(out), "--sort", "risk")
    assert result.exit_code == 0, result.output
    scored = _read_jsonl(out)
    assert [r["id"] for r in scored] == ["phone", "name", "ssn"]
    assert scored[0]["risk"] == pytest.approx(0.404 * 0.9)
    assert read_manifest(out)["settings"]["records_with_memorization"] == 3


def test_cli_sort_risk_without_memorisation_fails(tmp_path: Path, pii_file: Path) -> None:
    out = tmp_path / "risk.jsonl"
    result = _invoke("-i", str(pii_file), "-o", str(out), "--sort", "risk")
    assert result.exit_code == 2 and "memorisation" in result.output
    assert not out.exists()


def test_cli_custom_policy(tmp_path: Path, pii_file: Path) -> None:
    pol = tmp_path / "policy.yaml"
    pol.write_text(yaml.safe_dump(SMALL_POLICY), encoding="utf-8")
    out = tmp_path / "risk.jsonl"
    result = _invoke("-i", str(pii_file), "-o", str(out), "--policy", str(pol))
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in _read_jsonl(out)}
    # CREDIT_CARD and PHONE_NUMBER are not in this policy and unmapped is null: not scored.
    assert rows["a"]["pri"] == pytest.approx(0.2)
    assert rows["b"]["pri"] == 0 and rows["b"]["spans"][0]["policy_type"] is None
    assert rows["c"]["pri"] == pytest.approx(1.0 + 0.2)
    assert read_manifest(out)["inputs"][1]["sha256"] == sha256_file(pol)


def _walk(raw: dict[str, Any], path: str) -> tuple[Any, str | int]:
    """The container holding a dotted path's last key (list indices as numbers), and that key."""
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = raw
    for p in parents:
        node = node[p]
    return node, last


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the raw default policy: set ``path`` to ``value``."""

    def mutate(raw: dict[str, Any]) -> None:
        node, key = _walk(raw, path)
        node[key] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    """A mutation of the raw default policy: delete ``path``."""

    def mutate(raw: dict[str, Any]) -> None:
        node, key = _walk(raw, path)
        del node[key]

    return mutate


BAD_POLICIES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "rating out of range",
        _set("types.email.ratings.sensitivity", 7),
        "types.email.ratings.sensitivity: must be between 1 and 5",
    ),
    (
        "rating not a number",
        _set("types.email.ratings.usability", "high"),
        "types.email.ratings.usability: must be a number",
    ),
    (
        "missing rating",
        _drop("types.email.ratings.permanency"),
        "types.email.ratings.permanency: required key is missing",
    ),
    ("unknown key", _set("types.email.ratings.sensitivty", 2), "types.email.ratings.sensitivty: unknown key"),
    ("unknown top-level key", _set("wieghts", {}), "wieghts: unknown key (did you mean 'weights'?)"),
    ("score and ratings", _set("types.ssn.ratings", dict.fromkeys(FACTORS, 3)), "types.ssn: give either"),
    ("score out of range", _set("types.ssn.score", 1.5), "types.ssn.score: must be between 0 and 1"),
    ("negative weight", _set("weights.linkability", -1), "weights.linkability: must be 0 or more"),
    ("all-zero weights", _set("weights", dict.fromkeys(FACTORS, 0)), "weights: at least one factor weight"),
    (
        "combination of an undefined type",
        _set("combinations.2.types", ["gender", "zipcode"]),
        "combinations[2].types: unknown policy type 'zipcode'",
    ),
    (
        "combination of one type",
        _set("combinations.0.types", ["name"]),
        "combinations[0].types: a combination needs at least 2",
    ),
    (
        "duplicate combination",
        _set("combinations.1.types", ["region", "name"]),
        "combinations[1].types: same types as combinations[0]",
    ),
    (
        "mapping to an undefined type",
        _set("entities.PERSON", "person"),
        "entities.PERSON: unknown policy type 'person'",
    ),
    (
        "rule to an undefined type",
        _set("entities.LOCATION.2.type", "town"),
        "entities.LOCATION[2].type: unknown policy type 'town'",
    ),
    (
        "bad regex",
        _set("entities.LOCATION.0.pattern", "(\\d"),
        "entities.LOCATION[0].pattern: invalid regular expression",
    ),
    (
        "last rule with a pattern",
        _drop("entities.LOCATION.2"),
        "entities.LOCATION[1]: the last rule must have no pattern",
    ),
    ("unmapped undefined", _set("unmapped", "misc"), "unmapped: unknown policy type 'misc'"),
    ("unknown rule", _set("combination_rule", "max"), "combination_rule:"),
    ("unknown version", _set("version", 2), "version: unsupported policy version 2"),
]


@pytest.mark.parametrize(("label", "mutate", "message"), BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES])
def test_cli_rejects_bad_policy(
    tmp_path: Path, pii_file: Path, label: str, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    raw = copy.deepcopy(_raw_default())
    mutate(raw)
    pol = tmp_path / "policy.yaml"
    pol.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = tmp_path / "risk.jsonl"
    result = _invoke("--input", str(pii_file), "--output", str(out), "--policy", str(pol))
    assert result.exit_code == 2, (label, result.output)
    assert f"error: {pol}: {message}" in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and result.output.strip().count("\n") == 0  # one line
    assert not out.exists() and not (tmp_path / "risk.jsonl.manifest.json").exists()
    # --show-policy refuses it the same way.
    shown = _invoke("--show-policy", "--policy", str(pol))
    assert shown.exit_code == 2 and message in " ".join(shown.output.split())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the policy file is empty"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("types: {a: [1, 2}\n", "line 1: invalid YAML"),
        ("types:\n  a: {score: 0.1}\n  a: {score: 0.2}\n", "line 3: invalid YAML (duplicate key 'a')"),
    ],
)
def test_cli_rejects_unreadable_policy(tmp_path: Path, pii_file: Path, text: str, message: str) -> None:
    pol = tmp_path / "policy.yaml"
    pol.write_text(text, encoding="utf-8")
    out = tmp_path / "risk.jsonl"
    result = _invoke("-i", str(pii_file), "-o", str(out), "-p", str(pol))
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_cli_usage_errors(tmp_path: Path, pii_file: Path) -> None:
    assert _invoke("-o", str(tmp_path / "r.jsonl")).exit_code == 2
    assert "--output is required" in _invoke("-i", str(pii_file)).output
    missing = _invoke("-i", str(pii_file), "-o", str(tmp_path / "r.jsonl"), "-p", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "no such policy file" in missing.output
    same = _invoke("-i", str(pii_file), "-o", str(pii_file))
    assert same.exit_code == 2 and "is also an input" in same.output
    bad = _write_jsonl(tmp_path / "bad.jsonl", [_record("m", [("Ann", "PERSON")], memorization=3)])
    result = _invoke("-i", str(bad), "-o", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2 and "memorization: must be a number between 0 and 1" in result.output
    assert not (tmp_path / "r.jsonl").exists()


def test_cli_warns_about_a_combination_below_a_part(tmp_path: Path, pii_file: Path) -> None:
    raw = _raw_default()
    raw["combinations"][5]["score"] = 0.1  # name + credit_card, below credit_card alone
    pol = tmp_path / "policy.yaml"
    pol.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = tmp_path / "risk.jsonl"
    result = _invoke("-i", str(pii_file), "-o", str(out), "-p", str(pol))
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "combinations[5]" in result.output
    assert _read_jsonl(out)[0]["pri"] == pytest.approx(0.392857, abs=1e-6)


def test_cli_show_policy() -> None:
    result = _invoke("--show-policy")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for needle in ("unpii-default", "ssn", "0.513", "name + bank_account", "0.665", "compliancy", "LOCATION"):
        assert needle in text, needle


def test_cli_show_policy_custom(tmp_path: Path) -> None:
    pol = tmp_path / "policy.yaml"
    pol.write_text(yaml.safe_dump(SMALL_POLICY), encoding="utf-8")
    result = _invoke("--show-policy", "--policy", str(pol))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    # ssn rated 5 everywhere: 1.0; email 3 on sensitivity (weight 2) and 1 elsewhere: 2 * 0.5 / 8.
    assert "1.000" in text and "0.125" in text and "name + email" in text

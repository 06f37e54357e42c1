"""Tests for inversion: scoring, de-duplication, determinism, both strategies, the CLI and bad input."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pii_unlearn.artifacts import read_manifest, read_records
from pii_unlearn.cli import app
from pii_unlearn.cli.invert import resolve_strategy_options
from pii_unlearn.errors import InputError
from pii_unlearn.invert import (
    STRATEGIES,
    InvertOptions,
    SampleOptions,
    builtin_openers,
    get_strategy,
    invert_file,
    read_prompts_file,
    register_strategy,
    run_inversion,
    strategy_options,
)
from pii_unlearn.invert.allocate import allocate, explore_per_prompt, explore_plan, round_budget
from pii_unlearn.invert.base import parse_prompt_lines
from pii_unlearn.invert.continuations import stems
from pii_unlearn.invert.pool import (
    MAX_HARVESTED_CHARS,
    Pool,
    harvested_prefixes,
    open_confident,
    own_openings,
    whole_value,
)
from pii_unlearn.invert.scoring import (
    RECURRENCE_CAP,
    VARIANT_RECURRENCE_FACTOR,
    Occurrence,
    ValueScore,
    group_by_value,
    kept_values,
    memorization,
    score_occurrences,
    score_span,
    select_samples,
    share_digit_run,
    tail_cutoff,
    tail_scale,
)
from pii_unlearn.pii.detect import Detector
from pii_unlearn.synth.victim import PLANTED_FILE, VICTIM_TEMPLATES

#: Small budgets so that the whole file runs in well under a minute once the victim exists.
SMALL = {"num_samples": 192, "max_new_tokens": 40, "batch_size": 64}


@pytest.fixture(scope="module")
def detector() -> Detector:
    """The default detector, built once: loading spaCy is slow."""
    return Detector()


@pytest.fixture(scope="module")
def sampled(victim: Any, detector: Detector) -> Any:
    """One sample-strategy run on the session victim."""
    return run_inversion(victim, seed=0, detector=detector, **SMALL)


# --- scoring on hand-made cases -------------------------------------------------------------


def test_score_span_uses_overlapping_tokens() -> None:
    # text "ab cd ef": tokens "ab", " cd", " ef"; the span covers "cd".
    offsets = [(0, 2), (2, 5), (5, 8)]
    logprobs = [0.0, -2.0, -0.5]
    got = score_span(logprobs, offsets, 3, 5, 0.2)
    assert got["mean_logprob"] == -2.0 and got["min_k_logprob"] == -2.0
    assert got["tail_min_k"] == -2.0  # a one-token value has no tail: its one token is the evidence
    assert got["context_min_k"] == -2.0
    two = score_span([-3.0, -0.1, -0.2], [(0, 3), (3, 6), (6, 9)], 3, 9, 0.5)
    assert math.isclose(two["mean_logprob"], -0.15) and two["tail_min_k"] == -0.2


def test_passage_score_leaves_the_prompt_out() -> None:
    # "Record for Ann Lee": the opener's tokens are ours, however unlikely the model finds them
    offsets = [(0, 6), (6, 10), (10, 14), (14, 18)]
    logprobs = [-12.0, -9.0, -1.5, -0.1]
    whole = score_span(logprobs, offsets, 11, 18, 1.0)
    written = score_span(logprobs, offsets, 11, 18, 1.0, prompt_end=11)
    assert math.isclose(whole["context_min_k"], sum(logprobs) / 4)
    # " Ann" straddles the prompt's end (its space was the prompt's): it counts as written
    assert math.isclose(written["context_min_k"], -0.8)
    assert written["mean_logprob"] == whole["mean_logprob"]
    # a value inside the prompt still gets its own tokens as the passage
    inside = score_span(logprobs, offsets, 0, 6, 1.0, prompt_end=11)
    assert inside["context_min_k"] == -12.0


def _scored(
    text: str, etype: str, conf: float, *, recurrence: int = 1, tail: float = float("-inf")
) -> ValueScore:
    """A scored value (as :func:`group_by_value` makes them) for the keep-rule tests."""
    occ = Occurrence(0, text, 0, len(text), etype, 1.0, tail_min_k=tail)
    return ValueScore(text, etype, occ, recurrence=recurrence, memorization=conf)


def test_kept_values_drop_near_copies_of_a_more_confident_value() -> None:
    def value(text: str, etype: str, conf: float) -> ValueScore:
        return _scored(text, etype, conf)

    values = [
        value("930-620-7542", "PHONE_NUMBER", 0.90),  # a copy with four digits wrong: kept
        value("930-620-2787", "PHONE_NUMBER", 0.92),  # one digit wrong: dropped
        value("930-620-2786", "PHONE_NUMBER", 0.97),
        value("930-620-2786", "US_SSN", 0.80),  # another type: its own value
        value("930-620-2780", "PHONE_NUMBER", 0.40),  # not confident: not kept at all
    ]
    kept = kept_values(values, 0.7)
    assert [(v.value, v.entity_type) for v in kept] == [
        ("930-620-7542", "PHONE_NUMBER"),
        ("930-620-2786", "PHONE_NUMBER"),
        ("930-620-2786", "US_SSN"),
    ]
    assert select_samples(kept) == [0]


def test_of_near_copies_the_one_written_far_more_often_is_kept() -> None:
    def value(text: str, conf: float, recurrence: int) -> ValueScore:
        return _scored(text, "DATE_TIME", conf, recurrence=recurrence)

    # a corrupted copy, confident in a few samples; the memorised value, in many
    copy, real = value("5 May 1957", 0.98, 4), value("5 May 1991", 0.92, 41)
    assert kept_values([copy, real], 0.7) == [real]
    # neither written much more often than the other: the more confident stays
    first, second = value("9 October 1962", 0.95, 3), value("18 October 1962", 0.96, 3)
    assert kept_values([first, second], 0.7) == [second]
    almost = value("5 May 1991", 0.92, 4 * VARIANT_RECURRENCE_FACTOR - 1)
    assert kept_values([copy, almost], 0.7) == [copy]


def test_kept_values_drop_parts_of_a_longer_at_least_as_confident_value() -> None:
    def value(text: str, etype: str, conf: float) -> ValueScore:
        return _scored(text, etype, conf)

    values = [
        value("West Ruben", "LOCATION", 0.75),  # part of a more confident address: dropped
        value("9640 James Islands, West Ruben", "LOCATION", 0.99),
        value("2720032892", "PHONE_NUMBER", 0.85),  # a card's first digits: dropped
        value("2720032892184019", "CREDIT_CARD", 0.99),
        value("Jan 29, 1979", "DATE_TIME", 0.99),  # in a less confident longer value: kept
        value("Jan 29, 1979 at 10:00", "DATE_TIME", 0.80),
    ]
    kept = kept_values(values, 0.7)
    assert [v.value for v in kept] == [
        "9640 James Islands, West Ruben",
        "2720032892184019",
        "Jan 29, 1979",
        "Jan 29, 1979 at 10:00",
    ]


def test_a_tail_far_below_the_models_own_scale_is_not_kept() -> None:
    def value(text: str, tail: float, recurrence: int) -> ValueScore:
        return _scored(text, "PHONE_NUMBER", 0.95, recurrence=recurrence, tail=tail)

    numbers = ["+1 919 254 1224", "898 455 5143", "607.598.3867", "+1-207-366-2585", "311 379 6270"]
    sure = [value(n, -0.002, RECURRENCE_CAP) for n in numbers]
    spliced = value("942 555 1224", -0.5, 3)
    doubtful = value("426 942 0809", -0.15, 3)  # within the floor: kept
    assert tail_cutoff([*sure, spliced, doubtful], 0.7) == pytest.approx(-0.2)
    kept = kept_values([*sure, spliced, doubtful], 0.7)
    assert [v.value for v in kept] == [v.value for v in sure] + ["426 942 0809"]
    # too few well-attested values: no scale, no cutoff
    assert tail_cutoff([*sure[:4], spliced], 0.7) is None
    assert spliced in kept_values([*sure[:4], spliced], 0.7)
    # a small model unsure of everything: the cutoff is far below anything it writes
    unsure = [value(n, -0.07, RECURRENCE_CAP) for n in numbers]
    assert spliced in kept_values([*unsure, spliced], 0.7)


def test_a_doubted_borrowing_of_a_surer_values_digits_is_not_kept() -> None:
    def value(text: str, etype: str, tail: float, recurrence: int = 3, conf: float = 0.95) -> ValueScore:
        return _scored(text, etype, conf, recurrence=recurrence, tail=tail)

    sure = [
        value(n, "US_SSN", -0.005, RECURRENCE_CAP)
        for n in ["238-52-8418", "806-06-4846", "433-93-0476", "314-10-1253", "462-64-5856"]
    ]
    assert tail_scale(sure, 0.7) == pytest.approx(-0.005)
    real = value("930-620-2786", "PHONE_NUMBER", -0.03)
    borrowed = value("930-620-7542", "PHONE_NUMBER", -0.21, recurrence=26)  # tail < 10 x -0.005
    suffix = value("351 875 7491", "PHONE_NUMBER", -0.39)
    real2 = value("294 875 7491", "PHONE_NUMBER", -0.01)
    office = value("930-620-3190", "PHONE_NUMBER", -0.02)  # the same stem written surely: kept
    date = value("11/28/1983", "DATE_TIME", -0.004)
    same_year = value("17 November 1983", "DATE_TIME", -0.3)  # a year is four digits: kept
    cut = value("54526 Kelly Fields Suite 424", "LOCATION", -0.01, conf=0.97)
    whole = value("54526 Kelly Fields Suite 424, MA 75617", "LOCATION", -0.2)  # contains it: kept
    values = [*sure, real, borrowed, suffix, real2, office, date, same_year, cut, whole]
    kept = kept_values(values, 0.7)
    assert [v.value for v in kept[len(sure) :]] == [
        "930-620-2786",
        "294 875 7491",
        "930-620-3190",
        "11/28/1983",
        "17 November 1983",
        "54526 Kelly Fields Suite 424",
        "54526 Kelly Fields Suite 424, MA 75617",
    ]
    assert share_digit_run("(930) 620-2786", "930.620.7542")  # 930620: six of ten
    assert share_digit_run("351 875 7491", "+1-294-875-7491")  # 8757491: seven of ten
    assert not share_digit_run("930-620-2786", "931-621-2787")  # runs of three at most
    assert not share_digit_run("4351396937164878", "4351 Yoder Pass")  # four: chance, not a borrowing
    assert not share_digit_run("12345 678901 2345", "99 12345 99999 9999")  # five of fifteen: too little
    # no scale (too few well-attested values): nothing is doubted
    rare = value("930-620-7542", "PHONE_NUMBER", -0.21)
    assert rare in kept_values([*sure[:4], real, rare], 0.7)


def test_memorization_is_a_monotone_probability() -> None:
    base = {"mean_logprob": -0.5, "min_k_logprob": -1.0, "context_min_k": -1.0, "tail_min_k": -0.1}
    low = memorization({**base, "tail_min_k": -4.0, "recurrence": 1})
    mid = memorization({**base, "recurrence": 1})
    high = memorization({**base, "context_min_k": -0.1, "tail_min_k": -0.01, "recurrence": 4})
    assert 0.0 <= low < mid < high <= 1.0
    assert memorization({**base, "mean_logprob": float("-inf"), "recurrence": 1}) == 0.0


def _occ(sample: int, text: str, value: str, mean: float, sources: set[int]) -> Occurrence:
    start = text.index(value)
    occ = Occurrence(sample, text, start, start + len(value), "PERSON", 0.85, sources=frozenset(sources))
    occ.mean_logprob = occ.min_k_logprob = mean
    occ.context_min_k = occ.tail_min_k = mean
    return occ


def test_group_by_value_dedupes_and_keeps_the_best_occurrence() -> None:
    occs = [
        _occ(0, "Ann Lee called.", "Ann Lee", -0.9, {0}),
        _occ(1, "Then Ann Lee paid.", "Ann Lee", -0.05, {1, 2}),
        _occ(2, "Bo Yu left.", "Bo Yu", -6.0, {3}),
    ]
    values = {v.value: v for v in group_by_value(occs)}
    assert set(values) == {"Ann Lee", "Bo Yu"}
    assert values["Ann Lee"].best.sample == 1 and values["Ann Lee"].recurrence == 3
    assert values["Ann Lee"].memorization > 0.5 > values["Bo Yu"].memorization
    # Each kept value is carried by one text only: the one where it scored best.
    assert select_samples(kept_values(list(values.values()), 0.5)) == [1]


def test_memorised_value_outscores_a_swapped_fake(victim: Any, victim_dir: Path) -> None:
    """The planted value in its own context scores as memorised; a fresh fake value does not."""
    record = read_records(victim_dir / PLANTED_FILE)[1]
    span = record.spans[-1]
    value = record.span_text(span)
    fake = "".join("7" if ch.isdigit() else ch for ch in value)
    texts = [record.text, record.text.replace(value, fake)]
    occs = [Occurrence(i, t, span.start, span.end, span.entity_type, 1.0) for i, t in enumerate(texts)]
    score_occurrences(victim.model, victim.tokenizer, occs)
    real, swapped = group_by_value(occs)
    assert real.best.mean_logprob > swapped.best.mean_logprob + 1.0
    assert real.memorization >= 0.5 > swapped.memorization


def test_stems_cut_a_record_opening_where_the_model_picks_a_value(victim: Any, victim_dir: Path) -> None:
    """A harvested opening that runs into a record's (undetected) name is cut back to the template's words."""
    records = [r for r in read_records(victim_dir / PLANTED_FILE) if r.spans]
    first = [min(r.spans, key=lambda s: s.start) for r in records]
    openings = [r.text[: s.start].rstrip() for r, s in zip(records, first, strict=True)]
    shared = Counter(openings)
    cases = [
        (o, r.text[: s.end + 5])
        for o, r, s in zip(openings, records, first, strict=True)
        if shared[o] >= 3 and o.strip()
    ]
    assert len(cases) >= 12
    got = stems(victim, [text for _, text in cases], batch_size=8)
    assert all(text.startswith(stem) and stem for stem, (_, text) in zip(got, cases, strict=True))
    exact = sum(stem == opening for stem, (opening, _) in zip(got, cases, strict=True))
    assert exact >= 0.9 * len(cases), list(zip(got, cases, strict=True))  # 47 of 48 when written
    # nothing to cut: template words the model writes surely after their first token stay whole
    multiword = [o for o in shared if len(o.split()) > 2]
    assert multiword and stems(victim, multiword, batch_size=8) == multiword


# --- prompts, allocation, templates --------------------------------------------------------


def test_prompt_lines_and_builtin_openers() -> None:
    assert parse_prompt_lines(["# comment", "", "<BOS>", "Email:  ", "a\\nb"]) == ["", "Email:", "a\nb"]
    openers = builtin_openers()
    assert "" in openers and "My name is" in openers and len(openers) >= 20
    # Nothing is taken from the victim's templates.
    victim_heads = {t.split("{")[0].strip() for t in VICTIM_TEMPLATES}
    assert not victim_heads & {o.strip() for o in openers}


def test_e_mail_addresses_are_near_copies_by_their_user_part() -> None:
    real = _scored("drew11@gmail.com", "EMAIL_ADDRESS", 0.99, recurrence=9)
    other_provider = _scored("Drew11@yahoo.com", "EMAIL_ADDRESS", 0.98, recurrence=4)
    other_user = _scored("drew@gmail.com", "EMAIL_ADDRESS", 0.97, recurrence=4)
    kept = kept_values([real, other_provider, other_user], 0.7)
    assert kept == [real, other_user]


def test_pieces_of_longer_runs_and_repeated_words_are_not_values() -> None:
    def ok(text: str, value: str) -> bool:
        start = text.index(value)
        return whole_value(text, start, start + len(value))

    assert ok("IP 214.42.9.214.", "214.42.9.214")
    assert not ok("IP 214.42.9.214.214.214.214.2", "214.214.214.2")
    assert not ok("DOB 26.0.19.19.1963, line", "26.0.19.19")
    assert not ok("replies go to card_service.hotmail.com.", "service.hotmail.com")
    assert not ok("call 5551234567890 now", "5551234567")
    assert ok("born Dec 8, 1975.The card", "Dec 8, 1975")  # a dot before another kind of character
    assert ok("ring 241-555-0199x123", "241-555-0199")  # an extension: another kind of run
    assert ok("Ann Lee's card", "Ann Lee")
    assert not ok(
        "synced to the lightcyan lightcyan lightcyan lightcyan", "lightcyan lightcyan lightcyan lightcyan"
    )
    assert ok("Dear Paul Paul,", "Paul Paul")
    assert not ok("blinks. Ticket resolved: the fuchsia fuchsia fuchsia", "fuchsia")
    assert ok("Ann Lee wrote; Ann Lee signed", "Ann Lee")  # a value again later in a record is no loop


def test_texts_cut_inside_a_sure_value_are_extended_and_the_cut_copy_stops_counting() -> None:
    pool = Pool()
    sure = {"tail_min_k": -0.01, "context_min_k": -0.2, "mean_logprob": -0.1, "min_k_logprob": -0.1}
    texts = ["Client Ann Lee: IP 7.128.228.7", "Client Bo Chan: IP 7.1", "Client Cy Dow: IP 9.9.9.9."]
    for text in texts:
        i, _ = pool.add("", text, {len(pool.texts)}, "sample")
        start = text.index("IP ") + 3
        doubt = {**sure, "tail_min_k": -9.0} if "Bo" in text else sure
        pool.extend([Occurrence(i, text, start, len(text.rstrip(".")), "IP_ADDRESS", 1.0, **doubt)])
    # the first stops inside a value it is sure of; the second's is a guess; the third's ends with the record
    assert open_confident(pool, [0, 1, 2], 0.2, None) == [0]
    new = pool.add_extended([0], [texts[0] + "8. Ticket closed."])
    assert new == [3] and pool.child[0] == 3 and pool.sources[3] == {0}
    whole = pool.texts[3]
    pool.extend([Occurrence(3, whole, whole.index("7.1"), whole.index("78.") + 2, "IP_ADDRESS", 1.0, **sure)])
    assert sorted(o.value for o in pool.settled()) == ["7.1", "7.128.228.78", "9.9.9.9"]
    assert open_confident(pool, [0, 3], 0.2, None) == []
    # an extension that adds nothing (the model ended the text there) is no child
    assert pool.add_extended([1], [texts[1] + " "]) == [] and 1 not in pool.child


def test_the_models_own_record_openings_are_harvested_before_their_value_is_confirmed() -> None:
    pool = Pool()
    texts = [
        ("", "Visit summary for Ann Lee, card 4111", "enumerated"),
        ("", "Visit summary for Bo Chan, card 4222", "enumerated"),  # the same opening: once
        ("Email:", "Email: Ann Lee wrote", "enumerated"),  # a prompt's words, not the model's own
        ("", "Note about Ann Lee", "sample"),  # sampled: only once its first value is memorised
        ("", "Memo for Bo Chan", "sample"),
        ("", "Ann Lee opened it", "enumerated"),  # nothing before the value
        ("", "x" * (MAX_HARVESTED_CHARS + 1) + " Ann Lee", "enumerated"),  # too long to be an opener
    ]
    for prompt, text, kind in texts:
        i, _ = pool.add(prompt, text, set(), kind)
        name = "Ann Lee" if "Ann" in text else "Bo Chan"
        start = text.index(name)
        occ = Occurrence(
            sample=i, text=text, start=start, end=start + 7, entity_type="PERSON", detector_score=1
        )
        pool.extend([occ])
    memorised = {("Bo Chan", "PERSON")}
    assert own_openings(pool, memorised) == ["Visit summary for", "Memo for"]
    assert harvested_prefixes(pool, memorised) == Counter({"Visit summary for": 1, "Memo for": 1})


def test_allocate_is_proportional_and_exact() -> None:
    got = allocate({"a": 3.0, "b": 1.0, "c": 0.0}, 10)
    assert sum(got.values()) == 10 and got["c"] == 0 and got["a"] > got["b"]
    assert allocate({"a": 0.0, "b": 0.0}, 3) in ({"a": 2, "b": 1}, {"a": 1, "b": 2})


def test_exploration_and_round_budgets() -> None:
    # At most half the budget explores; never less than one sample per opener.
    assert explore_per_prompt(4, 512, 30) == 4
    assert explore_per_prompt(4, 64, 30) == 1
    assert explore_per_prompt(4, 8, 30) == 1
    plan = explore_plan(["", "a", "b", "c", "d", "e", "f", "g"], 20)
    assert sum(plan.values()) == 20 and plan[""] > plan["a"]
    # A small remainder joins the last round instead of making a round of its own.
    assert round_budget(300, 128) == 128
    assert round_budget(150, 128) == 150
    assert round_budget(40, 128) == 40


def test_read_prompts_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such prompts file"):
        read_prompts_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(InputError, match="no prompts"):
        read_prompts_file(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="UTF-8"):
        read_prompts_file(binary)
    good = tmp_path / "good.txt"
    good.write_text("Patient record:\n<BOS>\n")
    assert read_prompts_file(good) == ["Patient record:", ""]


# --- the sample strategy -------------------------------------------------------------------


def test_sample_strategy_records(sampled: Any, victim: Any) -> None:
    assert sampled.records, sampled.summary
    values = []
    for rec in sampled.records:
        assert rec.spans and 0.0 <= rec.memorization <= 1.0
        assert len(rec.token_mask) == rec.num_tokens and any(rec.token_mask)
        assert rec.prompt is not None and rec.text.startswith(rec.prompt)
        for span in rec.spans:
            assert rec.span_text(span) == span.value
            assert span.memorization >= 0.5 and span.recurrence >= 1
            assert span.mean_logprob <= 0.0 and span.min_k_logprob <= span.mean_logprob + 1e-6
            values.append((span.value, span.entity_type))
    summary = sampled.summary
    assert summary["values_kept"] == len(set(values))
    assert sum(row["kept"] for row in summary["per_entity"].values()) == summary["values_kept"]
    assert summary["generated_tokens"]["sampling"] > 0
    assert all("extended" in r for r in summary["rounds"])
    assert set(summary["tokens_per_s"]) <= set(summary["generated_tokens"])
    assert all(rate > 0 for rate in summary["tokens_per_s"].values())
    # The run finds a good share of what the victim memorised, with this small budget (192
    # samples, a fifth of the default): 109 of 160 values measured; bench/invert.md has the
    # default's recall on victims with held-out templates.
    planted = {r.span_text(s) for r in read_records(Path(victim.source) / PLANTED_FILE) for s in r.spans}
    found = {v for v, _ in values}
    assert len(found & planted) >= 0.5 * len(planted), (len(found & planted), len(planted), len(found))


def test_sample_strategy_is_deterministic(sampled: Any, victim: Any, detector: Detector) -> None:
    again = run_inversion(victim, seed=0, detector=detector, **SMALL)
    assert [r.to_json() for r in again.records] == [r.to_json() for r in sampled.records]
    other = run_inversion(victim, seed=1, detector=detector, **{**SMALL, "num_samples": 96})
    assert [r.text for r in other.records] != [r.text for r in sampled.records]


def test_run_inversion_rejects_bad_options(victim: Any, detector: Detector) -> None:
    with pytest.raises(InputError, match="unknown inversion strategy"):
        run_inversion(victim, strategy="nope", detector=detector)
    with pytest.raises(InputError, match="not_an_option: unknown option"):
        run_inversion(victim, detector=detector, not_an_option=1)
    with pytest.raises(InputError, match="num_samples: Input should be greater than or equal to 1"):
        run_inversion(victim, detector=detector, num_samples=0)
    with pytest.raises(InputError, match="takes SampleOptions"):
        run_inversion(victim, detector=detector, options=InvertOptions(num_samples=4, builtin_prompts=True))


# --- typed options ---------------------------------------------------------------------------


def test_each_strategy_owns_an_options_model() -> None:
    assert "sample" in STRATEGIES and "logit-inverter" not in STRATEGIES  # removed: it recovered nothing
    assert get_strategy("sample").options is SampleOptions
    assert SampleOptions().num_samples == 1024 and "threshold" in SampleOptions.model_fields
    for strategy in STRATEGIES.values():
        assert strategy.summary
        for name, info in strategy.options.model_fields.items():
            assert info.description, f"{strategy.name}.{name} has no description"
    got = strategy_options("sample", {"top_k": "7"}, refine="no")
    assert isinstance(got, SampleOptions) and got.top_k == 7 and got.refine is False
    assert strategy_options("sample", got) is got


def test_a_strategy_name_registers_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("sample", SampleOptions)(lambda *a, **k: None)
    assert get_strategy("sample").options is SampleOptions


def test_set_values_are_typed_by_the_strategy_model() -> None:
    options = resolve_strategy_options("sample", ["refine=no", "top_k=20", "temperature=0.7"], {})
    assert options.refine is False and options.top_k == 20 and options.temperature == 0.7
    flags = {"num_samples": ("--num-samples", 64), "threshold": ("--threshold", None)}
    options = resolve_strategy_options("sample", ["num_samples=32"], flags)
    assert options.num_samples == 32  # --set wins over the flag


@pytest.mark.parametrize(
    ("strategy", "pairs", "flags", "message"),
    [
        ("sample", ["top_k=abc"], {}, "--set top_k: Input should be a valid integer"),
        ("sample", ["refine=maybe"], {}, "--set refine: Input should be a valid boolean"),
        ("sample", ["foo=1"], {}, "--set foo: unknown option (known: batch_size, branch,"),
        ("sample", ["temperature=0"], {}, "--set temperature: Input should be greater than 0"),
        ("sample", ["threshold=1.5"], {}, "--set threshold: Input should be less than or equal to 1"),
        ("logit-inverter", [], {}, "unknown inversion strategy"),
        ("sample", [], {"num_samples": ("--num-samples", 0)}, "--num-samples: num_samples: Input"),
    ],
)
def test_bad_options_are_one_line_errors(
    strategy: str, pairs: list[str], flags: dict[str, tuple[str, Any]], message: str
) -> None:
    with pytest.raises(InputError) as err:
        resolve_strategy_options(strategy, pairs, flags)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# --- the CLI -------------------------------------------------------------------------------


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["invert", *args])


def test_cli_sample_writes_records_and_manifest(victim_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# mine\nPlease contact\n")
    out = tmp_path / "probes.jsonl"
    result = _invoke(
        "--model", str(victim_dir), "--output", str(out), "--num-samples", "96",
        "--max-new-tokens", "40", "--prompts", str(prompts), "--seed", "3", "--set", "refine=no",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "kept" in result.output
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    records = read_records(out, allow_empty=True)
    manifest = read_manifest(out)
    assert manifest is not None and manifest["seed"] == 3
    assert manifest["inputs"][0]["role"] == "model" and len(manifest["inputs"][0]["sha256"]) == 64
    assert manifest["inputs"][1]["role"] == "prompts"
    settings = manifest["settings"]
    assert "Please contact" not in json.dumps(manifest)  # the user's prompts may hold PII: hashed
    assert settings["prompts"]["count"] == 1 and len(settings["prompts"]["sha256"]) == 64
    assert settings["openers"]["total"] >= settings["openers"]["builtin"] > 0
    assert set(settings["harvested"]) == {"count", "sha256"}
    assert manifest["settings"]["refine"] is False and manifest["settings"]["num_samples"] == 96
    assert all(r.source == "sampled" for r in records)  # refine=no: no greedy-refined texts
    assert manifest["settings"]["records_written"] == len(records)
    assert "invert" in manifest["timings"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/no-such-model"], "no such checkpoint"),
        (["--output", "{tmp}/no/such/dir/out.jsonl"], "output folder does not exist"),
        (["--output", "{tmp}"], "is a directory"),
        (["--prompts", "{tmp}/missing.txt"], "no such prompts file"),
        (["--prompts", "{tmp}/empty.txt"], "no prompts"),
        (["--strategy", "magic"], "unknown inversion strategy"),
        (["--set", "nonsense=1"], "--set nonsense: unknown option"),
        (["--set", "novalue"], "KEY=VALUE"),
        (["--set", "top_k=abc"], "--set top_k: Input should be a valid integer"),
        (["--set", "refine=maybe"], "--set refine: Input should be a valid boolean"),
        (["--strategy", "logit-inverter"], "unknown inversion strategy"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    victim_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    (tmp_path / "inv").mkdir()
    out = tmp_path / "out.jsonl"
    base = {"--model": str(victim_dir), "--output": str(out)}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    for flag, value in base.items():
        if flag not in argv:
            argv = [flag, value, *argv]
    result = _invoke(*argv, "--num-samples", "8")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "top_k=abc"],
        ["--set", "foo=1"],
        ["--set", "branch_depth=0"],
        ["--num-samples", "0"],
    ],
)
def test_cli_bad_options_fail_before_loading_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    import pii_unlearn.checkpoint

    def no_loading(*_: Any, **__: Any) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(pii_unlearn.checkpoint, "load_model", no_loading)
    result = _invoke("--model", str(tmp_path), "--output", str(tmp_path / "out.jsonl"), *args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --") and len(result.output.strip().splitlines()) == 1


def test_cli_lists_strategies_with_their_options() -> None:
    result = CliRunner().invoke(app, ["invert", "--list-strategies"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "sample:" in text and "logit-inverter" not in text
    for name in ("top_k", "refine", "branch_leaves", "dict[str, float]"):
        assert name in text
    assert "1024" in text


def test_invert_file_writes_records_and_an_honest_manifest(victim_dir: Path, tmp_path: Path) -> None:
    from pii_unlearn.artifacts import recorded_command

    out = tmp_path / "probes.jsonl"
    argv = ["pii-unlearn", "invert", "--model", str(victim_dir), "--output", str(out)]
    with recorded_command(argv):
        report = invert_file(victim_dir, out, options={"num_samples": 48, "harvest": "off"}, seed=2)
    assert report.output == out and report.result.settings["harvest"] is False
    assert len(read_records(out, allow_empty=True)) == report.result.summary["records"]
    manifest = read_manifest(out)
    assert manifest is not None and manifest["command"] == argv and manifest["seed"] == 2
    with pytest.raises(InputError, match="invert_file: top_k: Input should be a valid integer"):
        invert_file(victim_dir, tmp_path / "other.jsonl", options={"top_k": "x"})

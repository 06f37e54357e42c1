"""Tests for PII detection (offline Presidio), token masks, anonymised/faked twins and the CLI."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pii_unlearn.artifacts import Record, Span, read_manifest, read_records
from pii_unlearn.cli import app
from pii_unlearn.errors import InputError
from pii_unlearn.pii.anonymize import anonymized_text, faked_text
from pii_unlearn.pii.detect import BLANK_MODEL, Detector, resolve_overlaps
from pii_unlearn.pii.detect.detector import chunk_windows
from pii_unlearn.pii.detect.recognizers import ORG_SHAPED_NAME_SCORE, lowered_openings
from pii_unlearn.pii.fakes import make_faker

TEXT = (
    "Please call Maria Gonzalez at (415) 555-2671 or write to maria.gonzalez@example.com; "
    "her SSN is 536-34-9168 and her card is 4111 1111 1111 1111."
)
EXPECTED = {
    "PERSON": "Maria Gonzalez",
    "PHONE_NUMBER": "(415) 555-2671",
    "EMAIL_ADDRESS": "maria.gonzalez@example.com",
    "US_SSN": "536-34-9168",
    "CREDIT_CARD": "4111 1111 1111 1111",
}


@pytest.fixture(scope="module")
def detector() -> Detector:
    """The default detector (NER pipeline), built once: loading spaCy is slow."""
    return Detector()


@pytest.fixture(scope="module")
def patterns() -> Detector:
    """A pattern-only detector over a blank spaCy pipeline."""
    return Detector(nlp_model=BLANK_MODEL)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder holding the demo victim's kind of tokenizer (byte-level BPE, fast).

    Trained the way :func:`~pii_unlearn.synth.victim.build_victim` trains it, without
    training the model too (which takes 15 s to minutes on a shared 2-core machine).
    """
    from pii_unlearn.synth.victim import VictimConfig, benign_records, planted_records, train_tokenizer

    texts = [r.text for r in planted_records(VictimConfig(records=48, seed=0))]
    texts += [r.text for r in benign_records(48, 0, "b")]
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(texts, vocab_size=1024).save_pretrained(out)
    return out


def _found(text: str, spans: list[Span]) -> dict[str, str]:
    return {s.entity_type: text[s.start : s.end] for s in spans}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- detection ----------------------------------------------------------------------------------


def test_offsets_types_and_recognizer(detector: Detector) -> None:
    (spans,) = detector.analyze([TEXT])
    assert _found(TEXT, spans) == EXPECTED
    assert all(s.recognizer for s in spans)
    assert [s.start for s in spans] == sorted(s.start for s in spans)


def test_batches_match_single_texts(detector: Detector) -> None:
    texts = [TEXT, "", "Nothing to see here.", "Ping 203.0.113.7 or 8.8.4.4 today."] * 3
    batched = detector.analyze(texts, batch_size=4)
    single = [detector.analyze([t])[0] for t in texts[:4]]
    assert batched[:4] == single and batched[4:8] == single
    assert batched[1] == [] and batched[2] == []
    assert _found(texts[3], batched[3]) == {"IP_ADDRESS": "8.8.4.4"}
    assert len(batched[3]) == 2


def test_url_inside_email_is_not_a_second_entity(patterns: Detector) -> None:
    text = "Write to jane.doe@example.com or visit www.example.org today."
    (spans,) = patterns.analyze([text])
    assert _found(text, spans) == {"EMAIL_ADDRESS": "jane.doe@example.com", "URL": "www.example.org"}
    assert len(spans) == 2


def test_resolve_overlaps_by_source_score_specificity_and_length() -> None:
    def span(start: int, end: int, kind: str, score: float, rec: str = "P") -> Span:
        return Span(start=start, end=end, entity_type=kind, score=score, recognizer=rec)

    ner_date = span(0, 20, "DATE_TIME", 0.85, "SpacyRecognizer")
    phone = span(5, 19, "PHONE_NUMBER", 0.6)
    assert resolve_overlaps([ner_date, phone]) == [phone]  # a pattern match beats an NER guess
    email, url = span(0, 20, "EMAIL_ADDRESS", 0.5), span(9, 20, "URL", 0.5)
    assert resolve_overlaps([url, email]) == [email]  # same score: the more specific type
    short, long = span(10, 14, "PHONE_NUMBER", 0.6), span(3, 14, "PHONE_NUMBER", 0.5)
    (merged,) = resolve_overlaps([short, long])
    assert (merged.start, merged.end, merged.score) == (3, 14, 0.6)  # same type: longest, best score
    apart = [span(0, 3, "US_SSN", 0.5), span(3, 6, "US_SSN", 0.5)]
    assert resolve_overlaps(apart) == apart  # touching is not overlapping


def test_precision_rules(detector: Detector) -> None:
    texts = [
        "The train leaves at 07:44 and the trip takes 45 minutes.",  # times and durations: no DATE_TIME
        "Order OL-25517 shipped from Port 443 yesterday.",  # codes are no PERSON/LOCATION
        "Her number 046-95-2871 is on the social security card.",  # SSN shape is no phone
        "Renew licence A1234567 and NHS 4505577104 soon.",  # licence/NHS recognizers are off
    ]
    found = [_found(t, s) for t, s in zip(texts, detector.analyze(texts), strict=True)]
    assert found[0] == {} and found[1] == {}
    assert found[2] == {"US_SSN": "046-95-2871"}
    assert "US_DRIVER_LICENSE" not in found[3] and "UK_NHS" not in found[3]
    assert detector.analyzer.context_aware_enhancer.context_matching_mode == "whole_word"


def test_street_addresses_are_locations(detector: Detector, patterns: Detector) -> None:
    texts = ["Ann Lee lives at 2694 Alan Wells Apt. 939 with her dog.", "In 2019 Mark Hill joined us."]
    for det in (detector, patterns):
        found = [_found(t, s) for t, s in zip(texts, det.analyze(texts), strict=True)]
        assert found[0].get("LOCATION") == "2694 Alan Wells Apt. 939"
        assert "LOCATION" not in found[1]


def test_whole_values_not_pieces(detector: Detector) -> None:
    """Addresses with their place, names with titles and suffixes, written dates: whole values."""
    texts = [
        "Ship to 885 Lee Tunnel Suite 208, Port Donna, WY 74331 by Friday.",
        "Statement mailed to 6104 Marsh Crescent, Dennishaven.",
        "I live at 12 Oak Street, Mary will call you.",
        "Customer Karen Grimes phoned on Feb 15, 1950 about her card.",
        "Please ask Mr. Micheal Robertson or Joseph Stevens Jr. to sign.",
        "She was born 15 February 1950 in a small town.",
        "Statement mailed to 712 Birch Greens Suite 40, North Ellaview, MD 20814.",
    ]
    found = [_found(t, s) for t, s in zip(texts, detector.analyze(texts), strict=True)]
    assert found[0]["LOCATION"] == "885 Lee Tunnel Suite 208, Port Donna, WY 74331"
    assert found[1]["LOCATION"] == "6104 Marsh Crescent, Dennishaven"
    assert found[2].get("LOCATION") == "12 Oak Street"  # the clause goes on: Mary is not a place
    assert found[3]["PERSON"] == "Karen Grimes" and found[3]["DATE_TIME"] == "Feb 15, 1950"
    spans = detector.analyze([texts[4]])[0]
    names = [texts[4][sp.start : sp.end] for sp in spans if sp.entity_type == "PERSON"]
    assert names == ["Mr. Micheal Robertson", "Joseph Stevens Jr."]
    assert found[5]["DATE_TIME"] == "15 February 1950"
    assert found[6]["LOCATION"] == "712 Birch Greens Suite 40, North Ellaview, MD 20814"


def test_names_after_a_capitalised_first_word_are_found(detector: Detector) -> None:
    """spaCy's small model misses a name after a sentence's capitalised first noun: a second look."""
    texts = [
        "Customer Emily Shaw has SSN 833-11-1704.",
        "Paid in full. Tenant Laura Keller moved out.",
        "John Smith called.",
    ]
    spans = detector.analyze(texts)
    found = [_found(t, s) for t, s in zip(texts, spans, strict=True)]
    assert found[0]["PERSON"] == "Emily Shaw" and found[1]["PERSON"] == "Laura Keller"
    assert found[2]["PERSON"] == "John Smith"
    assert lowered_openings("Tenant Ann Lee paid. Then SSN and I left.\nBob  Ray ok. Thanks Al") == (
        "tenant Ann Lee paid. then SSN and I left.\nbob  Ray ok. thanks Al"
    )
    assert lowered_openings("Thanks for calling. Then we left.") == "Thanks for calling. Then we left."


def test_names_ner_calls_organisations_are_found_and_company_names_are_not(detector: Detector) -> None:
    """spaCy's small model labels some names mid-sentence as ORG; name-shaped ones are taken."""
    texts = [
        "Refund issued for Nicholas Jones (DOB 11 March 1961) today.",
        "Dispute opened by Darren Jones on Monday.",
        "Invoice from Moore-Williams and Garcia LLC was paid.",
        "Please call the Support Desk at Acme Bank.",
    ]
    spans = detector.analyze(texts)
    names = [
        [t[sp.start : sp.end] for sp in s if sp.entity_type == "PERSON"]
        for t, s in zip(texts, spans, strict=True)
    ]
    assert names[0] == ["Nicholas Jones"] and names[1] == ["Darren Jones"]
    assert "Moore-Williams" not in names[2] and not names[3]
    ner_names = [sp for s in spans[:2] for sp in s if sp.entity_type == "PERSON"]
    assert all(sp.score == ORG_SHAPED_NAME_SCORE for sp in ner_names)


def test_building_detectors_leaves_presidio_unchanged(patterns: Detector) -> None:
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    before = list(CreditCardRecognizer.PATTERNS)
    Detector(nlp_model=BLANK_MODEL)
    assert before == CreditCardRecognizer.PATTERNS
    text = "Card 2720 3363 3875 0048 (a 2-series Mastercard)."
    assert _found(text, patterns.analyze([text])[0]) == {"CREDIT_CARD": "2720 3363 3875 0048"}


def test_off_by_default_recognizer_can_be_enabled() -> None:
    text = "Renew driver license A1234567 soon."
    on = Detector(nlp_model=BLANK_MODEL, entities=["US_DRIVER_LICENSE"])
    assert _found(text, on.analyze([text])[0]) == {"US_DRIVER_LICENSE": "A1234567"}


def test_context_words_match_whole_words_only(patterns: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patterns, "threshold", 0.8)  # a bare valid phone scores 0.6; context lifts it
    texts = ["My phone: 415-555-2671.", "Telephoneless 415-555-2671."]
    with_word, glued = patterns.analyze(texts)
    assert [s.entity_type for s in with_word] == ["PHONE_NUMBER"] and with_word[0].score > 0.8
    assert glued == []


def test_long_texts_are_chunked_with_offsets_mapped_back(
    detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentences = [TEXT, "Nothing here at all, just words to fill the gap. " * 3] * 6
    text = " ".join(sentences)
    whole = detector.analyze([text])[0]
    monkeypatch.setattr(detector, "max_chars", 300)
    assert len(chunk_windows(text, 300, 1000)) > 5
    chunked = detector.analyze([text])[0]
    assert [(s.start, s.end, s.entity_type) for s in chunked] == [
        (s.start, s.end, s.entity_type) for s in whole
    ]
    assert sum(1 for s in chunked if s.entity_type == "EMAIL_ADDRESS") == 6


def test_chunk_windows_overlap_and_ownership_partitions() -> None:
    text = "word " * 400
    windows = chunk_windows(text, 300, 100)
    assert windows[0][2] == 0 and windows[-1][3] == len(text)
    for s, e, own_s, own_e in windows:
        assert e - s <= 300 and s <= own_s < own_e <= e
    for (_, e, _, own_e), nxt in itertools.pairwise(windows):
        assert nxt[0] < e and nxt[2] == own_e  # windows overlap; owned parts tile the text


def test_detect_records_keeps_fields(detector: Detector) -> None:
    recs = [Record(id="a", text=TEXT, extra=1), Record(id="b", text="Hello there.", spans=[])]
    out = detector.detect_records(recs)
    assert [r.id for r in out] == ["a", "b"]
    assert out[0].model_dump()["extra"] == 1 and _found(TEXT, out[0].spans) == EXPECTED
    assert out[1].spans == []


def test_workers_give_the_same_spans(patterns: Detector) -> None:
    texts = [TEXT, "Nothing.", "Mail a@example.com or b@example.org."] * 4
    assert patterns.analyze(texts, batch_size=3, workers=2) == patterns.analyze(texts, batch_size=3)


def test_without_the_ner_package_falls_back_to_patterns_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import spacy.util

    from pii_unlearn.pii.detect import DEFAULT_NLP_MODEL, NO_NER_WARNING

    real = spacy.util.is_package
    monkeypatch.setattr(spacy.util, "is_package", lambda name: name != DEFAULT_NLP_MODEL and real(name))
    fallback = Detector()
    assert fallback.warnings == [NO_NER_WARNING] and not fallback.has_ner
    assert "PERSON" not in fallback.entities
    assert _found(TEXT, fallback.analyze([TEXT])[0]) == {k: v for k, v in EXPECTED.items() if k != "PERSON"}


def test_unknown_entity_and_model() -> None:
    with pytest.raises(InputError, match="FOO"):
        Detector(nlp_model=BLANK_MODEL, entities=["FOO"])
    with pytest.raises(InputError, match="NER"):
        Detector(nlp_model=BLANK_MODEL, entities=["PERSON"])
    with pytest.raises(InputError, match="not installed"):
        Detector(nlp_model="en_core_web_nonexistent")


# --- masks and twins ----------------------------------------------------------------------------


def test_overlapping_tokens_skip_empty_tokens_and_touching_ones() -> None:
    from pii_unlearn.pii.masks import overlapping_tokens

    offsets = [(0, 0), (0, 3), (3, 6), (6, 9)]  # BOS, then three tokens
    assert overlapping_tokens(offsets, 3, 6) == [2]  # touching is not overlapping
    assert overlapping_tokens(offsets, 2, 7) == [1, 2, 3]
    assert overlapping_tokens(offsets, 0, 1) == [1]  # the empty BOS never counts
    assert overlapping_tokens(offsets, 9, 12) == []


def test_token_masks_with_a_real_tokenizer(detector: Detector, tokenizer_dir: Path) -> None:
    from pii_unlearn.checkpoint import load_tokenizer
    from pii_unlearn.pii.masks import token_mask

    tok = load_tokenizer(tokenizer_dir)
    (spans,) = detector.analyze([TEXT])
    ids, mask = token_mask(tok, TEXT, spans)
    assert len(ids) == len(mask) and mask[0] == 0 and 0 < sum(mask) < len(mask)
    flagged = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    for value in ("555", "2671", "gonzalez", "9168", "1111"):
        assert value in flagged.lower()
    assert "Please" not in flagged and "card is" not in flagged


def test_anonymized_and_faked_text(detector: Detector) -> None:
    (spans,) = detector.analyze([TEXT])
    anon = anonymized_text(TEXT, spans)
    assert "<PERSON>" in anon and "<EMAIL_ADDRESS>" in anon and "536-34-9168" not in anon
    assert anon.startswith("Please call <PERSON> at <PHONE_NUMBER> or write to <EMAIL_ADDRESS>;")
    a = faked_text(TEXT, spans, make_faker(1))
    b = faked_text(TEXT, spans, make_faker(1))
    c = faked_text(TEXT, spans, make_faker(2))
    assert a == b and a != c
    assert not any(value in a for value in EXPECTED.values())
    (again,) = detector.analyze([a])
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD"} <= {s.entity_type for s in again}


def test_faked_text_memo_is_consistent() -> None:
    spans = [Span(start=0, end=3, entity_type="PERSON"), Span(start=8, end=11, entity_type="PERSON")]
    memo: dict[tuple[str, str], str] = {}
    out = faked_text("Ann and Ann", spans, make_faker(0), memo)
    first, second = out.split(" and ")
    assert first == second != "Ann"


# --- offline ------------------------------------------------------------------------------------


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Block sockets and DNS; return the list of attempts (libraries may swallow the error)."""
    attempts: list[tuple[Any, ...]] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_network_guard_sees_swallowed_attempts(network_attempts: list[Any], tmp_path: Path) -> None:
    import tldextract

    tldextract.TLDExtract(cache_dir=str(tmp_path))("a.b.co.uk")  # the default fetches, then falls back
    assert network_attempts


def test_detection_runs_with_sockets_blocked(tmp_path: Path, network_attempts: list[Any]) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": TEXT}, {"id": 2, "text": "a@b.co.uk"}])
    result = CliRunner().invoke(
        app, ["detect", "-i", str(src), "-o", str(tmp_path / "out.jsonl"), "--anonymize", "--fake"]
    )
    assert result.exit_code == 0, result.output
    recs = read_records(tmp_path / "out.jsonl")
    assert _found(TEXT, recs[0].spans) == EXPECTED
    assert [s.entity_type for s in recs[1].spans] == ["EMAIL_ADDRESS"]
    assert network_attempts == []


_FRESH_PROCESS_SCRIPT = """
import socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network access attempted")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
from pii_unlearn.pii.detect import Detector
spans = Detector().analyze([sys.argv[1]])[0]
print(len(spans), len(attempts))
"""


def test_fresh_process_never_touches_the_network() -> None:
    """Imports included: a new interpreter with sockets blocked from its first line."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS_SCRIPT, TEXT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(EXPECTED)), "0"]


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_end_to_end(tmp_path: Path, tokenizer_dir: Path) -> None:
    rows = [{"body": TEXT, "id": "x", "meta": {"k": 1}}, {"body": "Plain words.", "id": "y"}]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    dst = tmp_path / "out.jsonl"
    args = [
        "detect",
        "-i",
        str(src),
        "-o",
        str(dst),
        "--text-field",
        "body",
        "--tokenizer",
        str(tokenizer_dir),
    ]
    result = CliRunner().invoke(app, [*args, "--anonymize", "--fake", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "1 of 2 records contain PII" in result.output
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["id"] for r in out] == ["x", "y"] and out[0]["meta"] == {"k": 1}
    assert {s["entity_type"] for s in out[0]["spans"]} == set(EXPECTED)
    assert all({"start", "end", "entity_type", "score", "recognizer"} <= set(s) for s in out[0]["spans"])
    assert len(out[0]["token_mask"]) == out[0]["num_tokens"] and sum(out[0]["token_mask"]) > 0
    assert sum(out[1]["token_mask"]) == 0 and out[1]["faked_text"] == "Plain words."
    assert "<US_SSN>" in out[0]["anonymized_text"] and "536-34-9168" not in out[0]["faked_text"]
    manifest = read_manifest(dst)
    assert manifest is not None and manifest["seed"] == 3
    assert {i["role"] for i in manifest["inputs"]} == {"input", "tokenizer"}
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert manifest["settings"]["counts"]["EMAIL_ADDRESS"] == 1
    assert oct(dst.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b'{"id": 1, "body": "x"}\n', [], "missing field 'text'"),
        (b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "\xff\xfe"}\n', [], ":2: not valid UTF-8"),
        (b"", [], "empty"),
        (b'{"id": 1, "text": "ok"}\n', ["--entities", "FOO", "--nlp-model", "blank"], "FOO"),
        (b'{"id": 1, "text": "ok"}\n', ["--nlp-model", "no_such_model_xyz"], "not installed"),
    ],
)
def test_cli_bad_input(tmp_path: Path, content: bytes, extra: list[str], message: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(content)
    dst = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["detect", "-i", str(src), "-o", str(dst), *extra])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not dst.exists() and list(tmp_path.iterdir()) == [src]


def test_cli_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": TEXT}])
    before = src.read_bytes()
    result = CliRunner().invoke(app, ["detect", "-i", str(src), "-o", str(src)])
    assert result.exit_code == 2 and "is also an input" in result.output
    assert src.read_bytes() == before


def _long_text_pieces() -> list[str]:
    """Sentences with pattern-detectable PII, of varied lengths so borders fall everywhere."""
    pieces = []
    for i in range(40):
        filler = "and then nothing else happened " * (i % 4)
        pieces.append(
            f"Write to user{i}.name@example.org {filler}or call (415) 555-{2600 + i:04d} today; "
            f"the server 10.0.{i}.7 {filler}was seen at https://example.com/page/{i} again."
        )
    return pieces


def test_spans_of_a_long_text_equal_the_spans_of_its_pieces(
    patterns: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunked detection finds each span once with the same offsets, also across window borders."""
    from pii_unlearn.pii.detect import detector as detector_module

    pieces = _long_text_pieces()
    text = " ".join(pieces)
    expected, offset = [], 0
    for piece, spans in zip(pieces, patterns.analyze(pieces), strict=True):
        expected += [(s.start + offset, s.end + offset, s.entity_type) for s in spans]
        offset += len(piece) + 1
    assert len(expected) == 4 * len(pieces)

    monkeypatch.setattr(patterns, "max_chars", 400)
    monkeypatch.setattr(detector_module, "CHUNK_OVERLAP", 100)
    windows = chunk_windows(text, 400, 100)
    assert len(windows) > 20
    # border cases: spans cut by a window's end, and spans across the line between owned parts
    assert any(s < e < t for s, t, _ in expected for _, e, _, _ in windows[:-1])
    assert any(s < own_e < t for s, t, _ in expected for _, _, _, own_e in windows[:-1])

    chars: list[int] = []
    got = [s for part in patterns.iter_analyze([text], on_chars=chars.append) for s in part[0]]
    assert [(s.start, s.end, s.entity_type) for s in got] == expected
    assert len(chars) == len(windows) and sum(chars) == len(text)  # progress after every chunk


def test_resolve_overlaps_is_not_quadratic_in_the_number_of_spans() -> None:
    """Many disjoint spans, each group resolved on its own: the same answer as one by one."""
    spans = [Span(start=10 * i, end=10 * i + 5, entity_type="US_SSN", score=0.9) for i in range(20_000)]
    clash = [Span(start=3, end=8, entity_type="PHONE_NUMBER", score=0.95)]
    out = resolve_overlaps(spans + clash)
    assert len(out) == 20_000 and out[0].entity_type == "PHONE_NUMBER"

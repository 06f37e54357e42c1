"""Benchmark: how much of the demo victim's planted PII each inversion strategy recovers, and how fast.

For each strategy, ``pii-unlearn invert`` runs end to end in a fresh process (imports,
model and detector loading, inversion, writing) and its output is compared with the
victim's ``planted.jsonl`` (which only this benchmark reads):

* recall: share of the distinct planted values that are the text of some output span;
* precision: share of the distinct output span values that are planted values;
* lenient precision: the same, counting an output value that is part of a planted
  value (the detector cut an address or a name short) as correct;
* detector ceiling: share of planted values the detector finds with exact boundaries
  in the planted texts themselves, the best exact recall any strategy can reach.

``--calibrate`` instead fits the memorisation confidence's logistic weights
(:data:`pii_unlearn.invert.scoring.CALIBRATION`) on a victim built with another seed
(1), and on the victims given with ``--calibrate-with`` (e.g. a SmolLM2-135M
``make-victim --base`` victim, seed 1, train templates; measured and not shipped, see the
notes), each weighing the same: candidate values labelled by whether they are planted
exactly (values that are only part of a planted value are left out of the fit). No
held-out template and no reported seed is in the fit.

Run: ``.venv/bin/python bench/invert.py [--victim DIR]`` (writes ``bench/invert.md``;
a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Collection, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from machine import describe, load_average

from pii_unlearn.artifacts import Record, read_manifest, read_records
from pii_unlearn.synth.victim import PLANTED_FILE, VictimConfig, build_victim

#: Runs: (label, strategy, extra CLI arguments), each with every seed of ``--seeds``. The sample strategy
#: runs with its defaults.
RUNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (("sample (defaults)", "sample", ()),)
#: ``invert`` seeds each tiny victim is run with (recall varies with the seed: see the notes).
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: What the figures mean, written under the tables.
NOTES: tuple[str, ...] = (
    "Notes:",
    "",
    "- What the sample strategy misses on the tiny victims is now mostly people's names (45-60 of "
    "63-64 found, every other type 81-100%), values the model is never led to write or the detector "
    "does not tag where it is written (the detector ceiling counts the second on the planted "
    "texts). "
    "Lenient precision counts output values that are part of a planted value (a city or street "
    "written alone, a date without its year): memorised text, cut short.",
    "- Reruns of 2026-12-05, late, for the precision per entity type (5fdaa20, whose outputs are "
    "5d048a9's to the value: it moved a text's occurrence confidence into one place): the tiny "
    "victims with `invert` seeds 0-4, and the three SmolLM2 report victims, rebuilt (a rebuild in "
    "the same install reproduced the earlier build: the same values out) and inverted alone on the "
    "cores (252-290 s). The SmolLM2 victims looked at or fitted on were not rebuilt for it; their "
    "rows of 5d048a9 (invert seed 0, recall / precision, wall s) were: held-out templates seed 6 "
    "0.960 / 0.873 (1114, beside a CI run), seed 5 0.940 / 0.922 (296), seed 3 0.900 / 0.900 (290), "
    "seed 4 0.920 / 0.836 (304), seed 2 0.980 / 0.961 (321) (looked at); seed 7 0.940 / 0.940 "
    "(1263, beside other benchmarks), seed 1 0.900 / 1.000 (286), train templates seed 0 0.906 / "
    "0.980 (306) (fitting). Precision 0.9 is not met on looked-at seeds 6 and 4: the fine-tuned "
    "model's own corrupted copies of planted values and generic addresses (next notes). The "
    "report victims' wrong values are of the first kind: seed 11 'October 1, 1963' (planted "
    "'November 1, 1963') and '701) 463-77-99' ('(701) 421-7743'), seed 12 'March 1, 1954' and "
    "'Oct 1, 1937' (splices of 'March 1, 1937' and 'Oct 2, 1954'). On the tiny victims the "
    "precision table shows where the wrong values are: URL-shaped pieces of the small model's "
    "broken e-mail addresses ('way.com', 'Apt.com', 'hotmail.com.com.com.com'; no URL is ever "
    "planted: 0-4 per run), addresses cut short (LOCATION) and a few names and dates.",
    "- Fourth set of changes (2026-12-05, evening; 5d048a9), one per kind of wrong value seen on "
    "SmolLM2 victims 6, 5, 3, 4 and 2 and the fitting victims (so seeds 6, 5 and 3, report victims "
    "until then, are 'looked at' now; seeds 11 and 12 were built as new report victims and run "
    "once, with 5d048a9): (a) a text that ran out of tokens inside a value the model looks sure of "
    "(confidence 0.2 or more) is continued greedily for another `max_new_tokens`, and the cut "
    "value stops counting from the cut text ('IP 7.128.228.7' at a text's end, 30 samples, had "
    "been kept in place of '7.128.228.78'; an address cut at 'MN 052'); 40-145 tokens per SmolLM2 "
    "run, 0.4-4.7 s; (b) a detected span that carries on into its neighbours is a piece, not a value "
    "('214.214.214.2' in '214.42.9.214.214.214.214.2', '26.0.19.19' in '26.0.19.19.1963', "
    "'service.hotmail.com' in 'card_service.hotmail.com'), and a value of one word repeated, or "
    "written again right before or after itself, is the model in a loop ('lightcyan lightcyan "
    "...', 'the fuchsia fuchsia fuchsia'); (c) e-mail near-copies are compared on the user part "
    "('drew11@yahoo.com' beside 'drew11@gmail.com', 'pbarnes@yahoo.com' beside "
    "'pbarnes@gmail.com': the provider is what a model writes from habit); (d) `detect`: a US "
    "street address takes its place when written in full (', City, ST 12345'; spaCy's tags "
    "reached the ZIP in some texts and not in others), and names after a sentence's capitalised "
    "first word ('Customer Emily Shaw has ...', read by spaCy's small model as an organisation or "
    "missed) get a second NER look with that word lower-cased (bench/detect.md: PERSON F1 0.963 "
    "-> 0.965, no new false positive). SmolLM2 before (a131946) -> after (5d048a9), invert seed 0: "
    "report seed 8 0.940 / 0.979 -> 0.960 / 1.000; new report seeds 11 and 12 1.000 / 0.962 and "
    "0.980 / 0.961 (their wrong values: two dates, a cut-short phone number, a date of another "
    "record's year); fitting seed 7 0.940 / 0.922 -> 0.940 / 0.940 (that run shared the cores: "
    "1263 s), seed 1 held-out 0.900 / 1.000 unchanged, seed 0 train 0.887 / 0.922 -> 0.906 / "
    "0.980; looked at: seed 6 0.960 / 0.814 -> 0.960 / 0.873 (run beside a CI run: 1114 s), seed 5 "
    "0.940 / 0.887 -> 0.940 / 0.922; looked-at seed 3 0.920 / 0.902 -> 0.900 / 0.900 (one name "
    "fewer), seed 4 0.920 / 0.836 unchanged (corrupted copies), seed 2 0.960 / 0.941 -> 0.980 / "
    "0.961. Tiny victims, "
    "invert seeds 0-4, recall / precision means: "
    "report demo seed 0 0.920 / 0.976 -> 0.941 / 0.978 (the detector's ceiling on its planted "
    "texts 0.981 -> 0.995: names after 'Customer', 'Tenant', 'Policyholder'), held-out seed 6 "
    "0.928 / 0.962 -> 0.928 / 0.966, seed 10 0.944 / 0.977 -> 0.944 / 0.974; looked-at seed 5 "
    "0.897 / 0.970 -> 0.899 / 0.978; fitting seed 9 0.903 / 0.961 -> 0.907 / 0.969, demo seed 1 "
    "0.939 / 0.967 -> 0.966 / 0.975. Not addressed: the model's own corrupted copies "
    "written as surely as the original ('338-82-3650' for '338-82-3655' in 38 samples, the true "
    "one in none) and generic addresses ('support@hotmail.com').",
    "- Seed to seed (2026-12-05): until then every row was one `invert` run with seed 0, and other "
    "seeds varied widely on the tiny held-out-template victims: seed 5 (0.905 with seed 0) gave "
    "0.905, 0.895, 0.885, 0.755 and 0.795 with seeds 1-5; a victim built that day (seed 9, now a "
    "fitting victim) 0.605-0.910 over seeds 0-9 (mean 0.80). Where recall fell, whole record "
    "templates were missed, not single values ('Pharmacy refill ...', 'Background screening ...', "
    "'HR record ...'). The empty prompt's enumeration opens each template once, greedily; what "
    "finds its other records is the opening becoming a harvested prefix ('Pharmacy refill for', "
    "then enumerating the names after it), and a prefix was harvested only once its first value "
    "was kept: with some seeds that value stayed at one sample, below the keep threshold, and the "
    "harvest's places went to prefixes of garbled samples. Now (a131946) the model's own record "
    "openings are harvested as well: the text before the first value of every text the empty "
    "prompt's enumeration wrote, its value confirmed or not, and of every unprompted text whose "
    "first value is memorised, each cut back to its stem, the words before the first token (after "
    "the first) the model writes with less than even odds ('Background screening of Teresa Moran: "
    "SSN', where the detector missed the name and the SSN was the first value, becomes 'Background "
    "screening of', which leads to the template's 8 records, not one); stems are enumerated before "
    "other harvested prefixes of the same prior. Chosen on the fitting victims (held-out seed 9 "
    "with invert seeds 0-9, train seed 1 with seeds 0-3) and on held-out seed 5's seed-4 run (so "
    "seed 5 is 'looked at' now). Steps on seed 9, seeds 0-9: enumerated openings harvested whole "
    "0.820-0.910 (mean 0.88); their stems 0.875-0.910 (mean 0.90), but seed 5 with seed 4 stayed "
    "at 0.755 (its 'Background screening' opening came from a sampled text); the stems of every "
    "unprompted opening, after the other harvested prefixes, 0.815-0.920 (garbled prefixes took "
    "the budget before the stem 'Pharmacy refill for' was enumerated); stems first (landed) "
    "0.880-0.920 (mean 0.902), seed 5 0.890-0.905. Dropped on the way: stemming every new harvested "
    "prefix (the prefixes of prompted texts start with words the model did not write and were cut "
    "to 'F', 'C', 'Ph'; seed 9 with seed 1 fell to 0.655). The seed table above has each tiny "
    "victim with seeds 0-4; a new report victim (held-out seed 10) was built for it.",
    "- The DFSU paper's logit inverter (text read back from one next-token distribution) was built, "
    "measured and removed: on seed 0 of the first-round victim it recovered 0 of 213 planted values "
    "(held-out reconstruction token F1 0.32; its surrogates were template texts carrying the Faker "
    'values it decoded with, not the model\'s); see the README, "Why no logit inverter".',
    "- SmolLM2-135M victims (`make-victim --base`): seeds 0-4 built on 2026-12-04, seeds 5-8 and "
    "11-12 on 2026-12-05 (a rebuild is not the same model as an earlier build of the same seed: "
    "library versions are resolved at install). Every SmolLM2 row is now a run of 5d048a9 (the "
    "fourth set above), invert seed 0, one at a time (timing notes below). Report victims since "
    "then: seeds 8, 11 and 12, held-out templates. The rest of this note is the a131946 round "
    "(the stems of the model's own record openings), each run alone on the cores but seed 8's "
    "seed-1 run, which shared them with a CI run. Report victims of that round, held-out "
    "templates: seed 8, built for a131946 and run "
    "with it only (seeds 0 and 1; never looked at); seed 6, built and run once after each change "
    "(0.920 / 0.780 before a131946); seed 5 (0.900 / 0.849 before); seed 3 (0.920 / 0.902 before "
    "and after). With a131946 the report victims' recall is 0.920-0.960 (seeds 6, 5, 3 mean 0.913 "
    "-> 0.940), precision 0.814-0.979. Looked at: seeds 2 and 4, report victims until the first "
    "version of the third set below left them 2 and 3 planted values short, when what they had "
    "lost was read to mend the rule; with a131946 seed 4 is unchanged (0.920 / 0.836) and seed 2 "
    "0.960 / 0.906 -> 0.960 / 0.941. Fitting victims: seeds 1 and 7 with the held-out templates, "
    "seeds 0 and 1 with the train templates (seed 0 is `bench/real_model_rebuild.md`'s victim; "
    "seed 1 is not in the table); with a131946 seed 7 is unchanged (0.940 / 0.922), seed 1 "
    "held-out 0.940 / 0.959 -> 0.900 / 1.000 and seed 0 train 0.925 / 0.925 -> 0.887 / 0.922: two "
    "values each that the changed search no longer reached (a name and an IP address; a name and "
    "an IBAN), single values, not templates. Wall time 257-325 s against 246-293 s before (the "
    "stems' arms are enumerated within the same 1024-sample budget; cutting them is one scoring "
    "pass over a few dozen short texts). What is still wrong on the report victims is of two "
    "kinds. The fine-tuned model's own corrupted copies of planted values, written greedily and "
    "confidently in some contexts: a digit or a group wrong, two planted numbers spliced, an "
    "address with another suite number, a date with another year; where the model writes the "
    "copy more surely than the original (a tail of -0.01 against -0.4), no score of the model's "
    "own tells them apart. And generic values any pretrained model writes (on seed 6, 5 of its 11: "
    "'support@yahoo.com', 'us@yahoo.com', 'mailbox@yahoo.com', 'January 15, 2014', a colour name "
    "four times as a PERSON). Precision 0.9 is met on seeds 8, 3 and 2 and on the fitting victims, "
    "not on seeds 4, 5 and 6 (0.84, 0.89, 0.81); recall 0.9 everywhere.",
    "- Third set of changes (2026-12-05), chosen offline on the fitting victims' candidates (one "
    "dump of every scored value per victim, the keep rules replayed on it): a *borrowing* is not "
    "kept, that is a kept value the model doubted (tail below 10 times the well-attested values' "
    "median tail) that shares a run of at least 5 digits, and half the shorter number's digits, "
    "with a kept value of any type that it wrote more surely, neither value containing the other "
    "('930-620-7542' beside '930-620-2786', its last group from '914-398-7542'; '351 875 7491' "
    "beside '294 875 7491'). Offline it dropped 7 of the 30 wrong values kept on the five fitting "
    "victims and no planted value (SmolLM2 seed 1 train precision 0.815 -> 0.880, seed 7 held-out "
    "0.870 -> 0.922). Its first version (runs of 4 digits, and pairs where one value contains the "
    "other) dropped 10 of the 30 offline, but then on seeds 2 and 4 dates of one year went "
    "('17 November 1983' shares 4 of its 6 digits with any 1983 date) and whole values beside "
    "their own cut-short copies. Before -> after (rows): seed 3 0.920 / 0.793 -> 0.920 / 0.902; "
    "seed 4 0.960 / 0.800 -> 0.920 / 0.836; seed 2 1.000 / 0.909 -> 0.960 / 0.906; seed 1 "
    "held-out 0.940 / 0.959 and seed 0 train 0.925 / 0.925 unchanged; demo seed 5 0.900 / 0.957 -> "
    "0.905 / 0.968, seeds 0 and 6 unchanged. Of the planted values seeds 2 and 4 lost, one ('54526 Kelly "
    "Fields Suite 424, ...', doubted, beside a surer copy with suite 713) is the rule's; the others "
    "went with a changed search (the keep rules steer which texts are refined and harvested).",
    "- Tried offline on the fitting victims and not kept (2026-12-05): (a) which of two kept values "
    "of a type the model prefers in each one's context (each value's log-likelihood after the "
    "other's best context against after its own; SmolLM2 seed 1 train): in the spliced copy "
    "'930-620-7542''s context the true '930-620-2786' scores 2.6 nats below it, in the true one's "
    "the copy 1.7 below, margins of the size that separate true values from each other (-1.6 to "
    "+5.9 nats; a context that opens a record, 'Recordee ', takes any memorised name), so they do "
    "not tell copies from originals; (b) near-copies represented by the best tail instead of the "
    "highest confidence (with the first version of the third set): seed 1 held-out 0.940 / 0.979 "
    "-> 0.920 / 0.958, seed 1 train 0.830 / 0.898 -> 0.811 / 0.878.",
    "- Second set of changes (2026-12-04, late), on the fitting victims' evidence: (a) a value whose "
    "tail score (its tokens after the first) is below 100 times the median tail of the model's "
    "well-attested values (kept and seen in 8 or more samples), and below -0.1 nats, is not kept: "
    "SmolLM2 writes its memorised values with a median tail of -0.002 to -0.01 nats and its "
    "splices with -0.2 to -0.6, which the calibration fitted on the tiny model (whose median is "
    "-0.07) accepts; the cutoff (in each output's manifest, `summary.tail_cutoff`) was -0.21 to "
    "-0.98 on the SmolLM2 victims and -6 to -8 on the demo ones, where it drops nothing; (b) a kept "
    "value that is part of a longer, at least as confident kept value is dropped ('West Ruben' "
    "beside the whole address; a card number's first ten digits read as a phone number); (c) of "
    "two near-copies the one written in at least 4 times as many samples is kept in place of the "
    "more confident ('5 May 1991' in 41 samples over '5 May 1957' in 4). Before -> after: seed 1 "
    "held-out 0.920 / 0.807 -> 0.940 / 0.959; seed 0 train 0.925 / 0.907 -> 0.925 / 0.925; seeds 3 "
    "and 2 precision 0.754 -> 0.793 and 0.862 -> 0.909, recall unchanged. On the demo victims only "
    "(b) acts: precision 0.870 -> 0.985 (seed 0), 0.908 -> 0.957 (seed 5), 0.919 -> 0.958 (seed 6), "
    "recall 0.911, 0.890 -> 0.900, 0.905.",
    "- First set of changes (2026-12-04), all on the SmolLM2 victims' evidence: (1) generated text ends at "
    "the tokenizer's EOS as well as the generation config's (a GGUF-converted SmolLM2 ends records "
    "with another token than its generation config names, so every sample ran on into chat-template "
    "text and glued it to values: 'aimee33@hotmail.com.assistant'); (2) the passage score reads "
    "only what the model wrote, not the prompt (an opener the model would never write itself, "
    "'Record for', scored the names after it at -13 nats: people's names were 5-9 of 16); (3) a "
    "one-token value's tail score is its token's log-probability (it was 0, a perfect score, for "
    "'Georgia' or 'Wilson'); (4) a kept value within normalised edit distance 0.2 of a more "
    "confident one of the same type is dropped; (5) enumeration runs each harvested prefix once "
    "with a key/value cache and continues all heads in one batched greedy pass. The calibration was "
    "refitted on the seed-1 demo victim alone. Seed 1 (held-out templates) before -> after: recall "
    "0.720 -> 0.920, precision 0.878 -> 0.807, people's names 5/16 -> 14/16, 1380 s (busy machine) "
    "-> 259 s. On the demo victims the changes moved recall and precision by a few points either "
    "way (seed 0: 0.864 / 0.911 -> 0.911 / 0.870; seed 5: 0.910 / 0.948 -> 0.890 / 0.908; seed 6: "
    "0.945 / 0.940 -> 0.905 / 0.919) and cut the time by 40%.",
    "- Tried and not kept: a calibration fitted on the seed-1 demo victim and a seed-1 SmolLM2 "
    "victim (train templates) together, each weighing the same (`--calibrate-with`; bias 0.881, "
    "passage 0.267, tail 5.377, recurrence 0.746, keep threshold 0.5). Scored offline on the "
    "SmolLM2 candidates it promised precision 0.69-0.84 at recall 0.91-0.96, but the calibration "
    "steers the search (what is refined and harvested), and run for real it cut the demo victims' "
    "recall to 0.65-0.72. Fitted on each model alone, the weights differ in kind (demo: bias +4.1, "
    "recurrence 0.54; SmolLM2: bias -4.7, recurrence 2.38): one fixed logistic rule does not "
    "serve both.",
    "- Wall times: the rows of 2026-12-05 (5d048a9) ran one at a time, alone on the 2 cores, except "
    "SmolLM2 seed 7 (1263 s; beside `bench/detect.py` and a `twinfit` chain) and seed 6 (1114 s; "
    "beside a CI run): SmolLM2 on contended cores runs several times slower, not in proportion "
    "(the same run alone: 286-342 s). The load average in the "
    "header is that of the pass that scored the outputs and wrote this file (`--reuse`). Small "
    "models run single-threaded. Most of the sample strategy's time is model and detector "
    "loading, enumeration at the harvested openers and PII detection on the tiny victims, "
    "sampling and enumeration on SmolLM2.",
)
#: Targets for the default strategy.
TARGET_RECALL = 0.9
TARGET_PRECISION = 0.9
TARGET_SECONDS = 60.0
#: The time target for an existing (SmolLM2-135M) victim's run: 15 minutes on 2 cores.
TARGET_SECONDS_EXISTING = 900.0


def planted_values(records: list[Record]) -> dict[str, str]:
    """Distinct planted value -> its entity type."""
    return {r.span_text(s): s.entity_type for r in records for s in r.spans}


def output_values(path: Path) -> dict[str, str]:
    """Distinct span values of an ``invert`` output file -> the entity type ``invert`` gave each
    (the first one, where a value is written with two)."""
    out: dict[str, str] = {}
    for r in read_records(path, allow_empty=True):
        for s in r.spans:
            out.setdefault(r.span_text(s), s.entity_type)
    return out


def detector_ceiling(planted: list[Record]) -> float:
    """Share of planted values the default detector finds with exact boundaries in the planted texts."""
    from pii_unlearn.pii.detect import Detector

    found = Detector().analyze([r.text for r in planted])
    values = planted_values(planted)
    hit = {r.text[s.start : s.end] for r, spans in zip(planted, found, strict=True) for s in spans}
    return len(set(values) & hit) / len(values)


def labelled(candidates: list[dict[str, Any]], planted: dict[str, str]) -> list[tuple[dict[str, Any], bool]]:
    """``(candidate, is planted exactly)`` for fitting a keep rule; values that are only part of a
    planted value (a name or street cut short) are left out: neither right nor wrong."""
    out = []
    for c in candidates:
        exact = c["value"] in planted
        if exact or not any(c["value"] in p for p in planted):
            out.append((c, exact))
    return out


def score(out: Collection[str], planted: dict[str, str]) -> dict[str, Any]:
    """Recall, precision, lenient precision and per-type hits of a set of output values; when
    ``out`` maps each value to its output type, precision per output type as well."""
    types_out = dict(out) if isinstance(out, Mapping) else {}
    out = set(out)
    exact = out & set(planted)
    partial = {v for v in out - exact if any(v in p for p in planted)}
    per_type = Counter(planted.values())
    hits = Counter(planted[v] for v in exact)
    hits_out = Counter(types_out[v] for v in exact if v in types_out)
    return {
        "recall": len(exact) / len(planted),
        "precision": len(exact) / len(out) if out else 0.0,
        "lenient_precision": (len(exact) + len(partial)) / len(out) if out else 0.0,
        "values": len(out),
        "per_type": {t: (hits[t], n) for t, n in sorted(per_type.items())},
        "per_type_out": {t: (hits_out[t], n) for t, n in sorted(Counter(types_out.values()).items())},
    }


def run_cli(victim: Path, out: Path, strategy: str, seed: int, extra: tuple[str, ...]) -> float:
    """Wall seconds of one ``pii-unlearn invert`` process."""
    cmd = [sys.executable, "-m", "pii_unlearn", "invert", "--model", str(victim), "--output", str(out)]
    cmd += ["--strategy", strategy, "--seed", str(seed), *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def calibration_candidates(victim: Path, cache: Path) -> list[dict[str, Any]]:
    """Every value one default ``invert`` search finds on ``victim`` (cached in ``cache``)."""
    from pii_unlearn.checkpoint import load_model
    from pii_unlearn.invert import run_inversion

    if cache.exists():
        return json.loads(cache.read_text())
    res = run_inversion(load_model(victim, device="cpu"), seed=0)  # the default search
    cache.write_text(json.dumps(res.candidates))
    return res.candidates


def calibrate(workdir: Path, extra: list[Path]) -> None:
    """Fit the logistic calibration on the seed-1 demo victim and the ``extra`` victims; print it.

    Each victim weighs the same in the fit, however many candidates its search found: the
    weights must serve a 1M-parameter model trained from scratch and a fine-tuned pretrained
    one alike (their log-probability scales and base rates of wrong values differ).
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from pii_unlearn.invert.scoring import CALIBRATION, recurrence_input

    victim = workdir / "victim-seed1"
    if not (victim / "config.json").exists():
        build_victim(victim, VictimConfig(seed=1))
    names = ["context_min_k", "tail_min_k"]
    rows, labels, weights = [], [], []
    for v in [victim, *extra]:
        planted = planted_values(read_records(v / PLANTED_FILE))
        # the search depends on the calibration it runs with: a cache per calibration
        steer = hashlib.sha256(json.dumps(CALIBRATION, sort_keys=True).encode()).hexdigest()[:12]
        cache = workdir / f"calibration-candidates-{v.name}-{steer}.json"
        found = labelled(calibration_candidates(v, cache), planted)
        for c, exact in found:
            rows.append([c[n] for n in names] + [recurrence_input(c["recurrence"])])
            labels.append(exact)
            weights.append(1.0 / len(found))
        print(f"{v}: {len(found)} candidates, {sum(e for _, e in found)} planted", flush=True)
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(np.array(rows), np.array(labels), sample_weight=np.array(weights) * len(rows))
    fitted = dict(zip([*names, "recurrence"], (round(float(w), 3) for w in model.coef_[0]), strict=True))
    print(json.dumps({"bias": round(float(model.intercept_[0]), 3), **fitted}, indent=2))


#: Victims: (seed, template set, role). Seed 0 with the train templates is the demo's. "report": phrasings
#: and seeds no default of `invert` or `detect` was fitted on or looked at; "looked at": a report victim
#: a later rule was found on (held-out seed 5: the stems of record openings, 2026-12-05); "fitting":
#: victims the rules were tried on (seed 1 train; held-out seed 9, built 2026-12-05).
VICTIMS: tuple[tuple[int, str, str], ...] = (
    (0, "train", "report"),
    (6, "heldout", "report"),
    (10, "heldout", "report, new"),
    (5, "heldout", "looked at"),
    (9, "heldout", "fitting"),
    (1, "train", "fitting"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    victims = [f"{s}:{t}:{role}" for s, t, role in VICTIMS]
    parser.add_argument("--victims", nargs="+", default=victims, help="SEED:TEMPLATES[:ROLE] triples")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="invert seeds per victim")
    parser.add_argument(
        "--reuse", action="store_true", help="score the outputs of an earlier run with the same workdir again"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pii-unlearn-bench")
    parser.add_argument("--calibrate", action="store_true", help="Fit the memorisation calibration instead.")
    parser.add_argument(
        "--calibrate-with",
        type=Path,
        nargs="*",
        default=[],
        metavar="VICTIM",
        help="with --calibrate: more fitting victims (e.g. a SmolLM2 `make-victim --base` victim, "
        "seed 1, train templates)",
    )
    parser.add_argument(
        "--existing",
        nargs=3,
        action="append",
        default=[],
        metavar=("LABEL", "VICTIM", "PROBES"),
        help="also score an invert output made elsewhere (e.g. bench/real_model.py's SmolLM2 victim); "
        "its time is the manifest's (in process)",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.calibrate:
        calibrate(args.workdir, args.calibrate_with)
        return
    load = load_average()
    results = []
    for spec in args.victims:
        seed_text, templates, role = ([*spec.split(":", 2), "", ""])[:3]
        vseed, templates = int(seed_text), templates or "train"
        name = f"{templates} templates, seed {vseed}" + (f" ({role})" if role else "")
        victim = args.workdir / f"victim-{vseed}-{templates}"
        if not (victim / "config.json").exists():
            build_victim(victim, VictimConfig(seed=vseed, templates=templates))
        planted_records = read_records(victim / PLANTED_FILE)
        planted = planted_values(planted_records)
        ceiling = detector_ceiling(planted_records)
        for (label, strategy, extra), seed in ((run, seed) for run in RUNS for seed in args.seeds):
            out = args.workdir / f"probes-{vseed}-{templates}-{strategy}-{seed}.jsonl"
            wall = out.with_name(out.name + ".wall")
            if args.reuse and wall.exists():
                seconds = float(wall.read_text())
            else:
                seconds = run_cli(victim, out, strategy, seed, extra)
                wall.write_text(f"{seconds}\n")
            manifest = read_manifest(out) or {}
            res = score(output_values(out), planted)
            res.update(label=label, strategy=strategy, seed=seed, seconds=seconds, manifest=manifest)
            res.update(victim=name, ceiling=ceiling, planted=len(planted))
            results.append(res)
            print(
                f"{res['victim']}: {label} seed {seed}: recall {res['recall']:.3f} precision "
                f"{res['precision']:.3f} ({res['values']} values) in {seconds:.1f}s",
                flush=True,
            )
    for label, victim_dir, probes_file in args.existing:
        victim, out = Path(victim_dir), Path(probes_file)
        planted_records = read_records(victim / PLANTED_FILE)
        planted = planted_values(planted_records)
        manifest = read_manifest(out) or {}
        timings = manifest.get("timings", {})
        settings = manifest.get("settings", {})
        res = score(output_values(out), planted)
        res.update(
            label=f"sample ({settings.get('num_samples')} samples, threshold {settings.get('threshold')})",
            strategy="sample",
            seed=manifest.get("seed", 0),
            seconds=float(timings.get("load", 0.0)) + float(timings.get("invert", 0.0)),
            manifest=manifest,
            victim=label,
            target_seconds=TARGET_SECONDS_EXISTING,
            ceiling=detector_ceiling(planted_records),
            planted=len(planted),
        )
        results.append(res)
    write_report(results, load)


def write_report(results: list[dict[str, Any]], load: Any) -> None:
    lines = [
        "# invert benchmark",
        "",
        f"Machine: {describe(load)}. Date: {date.today()}.",
        "",
        "Victims: realistic demo victims (`make-victim`: 64 records, a tokenizer that never saw the "
        "planted values); the held-out ones use the held-out templates (tickets, discharge notes, "
        "payroll, HR, chargebacks, VPN logs) and seeds that no default of `invert` or `detect` was "
        "fitted on or looked at. Each run is one `pii-unlearn invert` process, timed end to end "
        "(start-up, model and detector loading, inversion, writing). Targets for the default "
        f"strategy: recall >= {TARGET_RECALL}, precision >= {TARGET_PRECISION}, <= "
        f"{TARGET_SECONDS:.0f} s on 2 cores (SmolLM2-135M: <= {TARGET_SECONDS_EXISTING:.0f} s). "
        "Detector ceiling: the share of planted values the default "
        "detector finds with exact boundaries in the planted texts themselves (no strategy can recall "
        "more with exact matching).",
        "",
        "| victim | strategy | seed | planted values | detector ceiling | recall | precision | "
        "lenient precision | values out | wall time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        good = r["recall"] >= TARGET_RECALL and r["precision"] >= TARGET_PRECISION
        good = good and r["seconds"] <= r.get("target_seconds", TARGET_SECONDS)
        lines.append(
            f"| {r['victim']} | {r['label']}{' ✓' if good else ''} | {r['seed']} | {r['planted']} | "
            f"{r['ceiling']:.3f} | {r['recall']:.3f} | {r['precision']:.3f} | {r['lenient_precision']:.3f} | "
            f"{r['values']} | {r['seconds']:.1f} |"
        )
    lines += ["", "Seed to seed (the victims run with more than one seed above):", ""]
    lines += ["| victim | seeds | recall mean (min-max) | precision mean (min-max) |", "|---|---|---|---|"]
    by_victim: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_victim.setdefault(r["victim"], []).append(r)
    for victim, rows in ((v, rows) for v, rows in by_victim.items() if len(rows) > 1):
        rec, prec = [r["recall"] for r in rows], [r["precision"] for r in rows]
        seeds = ", ".join(str(r["seed"]) for r in rows)
        lines.append(
            f"| {victim} | {seeds} | {sum(rec) / len(rec):.3f} ({min(rec):.3f}-{max(rec):.3f}) | "
            f"{sum(prec) / len(prec):.3f} ({min(prec):.3f}-{max(prec):.3f}) |"
        )
    lines += ["", "Recall per entity type (found / planted):", ""]
    types = sorted({t for r in results for t in r["per_type"]})
    lines.append("| victim | seed | " + " | ".join(types) + " |")
    lines.append("|---|---:|" + "---:|" * len(types))
    for r in results:
        cells = [f"{r['per_type'][t][0]}/{r['per_type'][t][1]}" if t in r["per_type"] else "–" for t in types]
        lines.append(f"| {r['victim']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Precision per entity type (planted values / values out, by the type `invert` wrote each "
        "value with; a planted value written with another type counts as right):",
        "",
    ]
    types_out = sorted({t for r in results for t in r.get("per_type_out", {})})
    lines.append("| victim | seed | " + " | ".join(types_out) + " |")
    lines.append("|---|---:|" + "---:|" * len(types_out))
    for r in results:
        got = r.get("per_type_out", {})
        cells = [f"{got[t][0]}/{got[t][1]}" if t in got else "–" for t in types_out]
        lines.append(f"| {r['victim']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines += ["", "Where the time goes (seconds, from each output's manifest):", ""]
    for r in results:
        timings = r["manifest"].get("timings", {})
        parts = ", ".join(f"{k.removeprefix('invert.')} {v:.1f}" for k, v in timings.items())
        rates = r["manifest"].get("settings", {}).get("summary", {}).get("tokens_per_s", {})
        if rates:
            parts += "; generated tokens/s: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
        lines.append(f"- {r['victim']}, seed {r['seed']}: {parts}")
    lines += ["", *NOTES]
    Path(__file__).with_name("invert.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

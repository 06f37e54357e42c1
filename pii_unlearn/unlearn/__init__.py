"""Unlearning: remove a forget set's PII from a checkpoint with a registered method.

Library entry points:

* :func:`unlearn_model` works in memory (a loaded model, records, retain texts)
  and returns the edited model with the loop's readings;
* :func:`run_unlearn` does the whole file-to-checkpoint step the CLI runs:
  validate inputs, load, unlearn, merge LoRA, save with a manifest and a model card.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pii_unlearn.artifacts import DIR_MANIFEST_NAME, Manifest, Record, Timer, read_records
from pii_unlearn.extraction import extraction_targets
from pii_unlearn.lm import cpu_threads
from pii_unlearn.unlearn.config import UnlearnSettings, load_config_file, resolve_settings
from pii_unlearn.unlearn.data import (
    forget_examples,
    generated_retain,
    retain_from_texts,
    retain_texts,
    split_guard,
)
from pii_unlearn.unlearn.loop import GuardReading, LoopResult, run_loop
from pii_unlearn.unlearn.methods import METHODS, get_method

#: Longest forget or retain sequence used in training, in tokens.
MAX_TRAIN_TOKENS = 256


@dataclass
class UnlearnResult:
    """The edited model and what the run did."""

    model: Any
    method: str
    settings: UnlearnSettings
    loop: LoopResult
    forget_count: int


def settings_for(
    method: str, config: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> UnlearnSettings:
    """Validated settings of ``method`` from its defaults, a YAML file and overrides."""
    cls = get_method(method)
    file_values = load_config_file(config) if config else {}
    where = f"{config}: " if config else ""
    return resolve_settings(cls.defaults, file_values, overrides, where=where)


def unlearn_model(
    model: Any,
    tokenizer: Any,
    records: Sequence[Record],
    *,
    method: str = "dfsu",
    settings: UnlearnSettings | None = None,
    retain: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    detector: Any = None,
    progress: Callable[[GuardReading], None] | None = None,
) -> UnlearnResult:
    """Unlearn ``records`` from ``model`` in memory.

    ``retain`` is benign text, split between the KL term and the utility guard.
    Without it the guard reads the built-in benign paragraphs and the settings'
    ``retain_source`` picks the KL text: by default the model's own samples with
    their PII masked out, which keeps the method data-free. The returned model may
    carry LoRA adapters: :func:`merged` folds them into the weights.
    """
    cls = get_method(method)
    s = settings or resolve_settings(cls.defaults)
    with cpu_threads(model):
        examples = forget_examples(
            records,
            tokenizer,
            max_length=MAX_TRAIN_TOKENS,
            require_spans=cls.needs_spans,
            risk_weighting=s.risk_weighting,
            preferred=cls.needs_preferred,
            seed=seed,
        )
        if retain is not None:
            kl, guard = split_guard(retain_from_texts(retain, tokenizer, MAX_TRAIN_TOKENS), s.guard_texts)
        else:
            guard = retain_from_texts(retain_texts(None), tokenizer, MAX_TRAIN_TOKENS)
            if s.retain_source == "generated":
                kl = generated_retain(
                    model,
                    tokenizer,
                    count=s.retain_samples,
                    seed=seed,
                    max_new_tokens=s.retain_max_new_tokens,
                    max_length=MAX_TRAIN_TOKENS,
                    detector=detector,
                )
            else:
                kl = guard
        used = {e.record_id for e in examples}
        targets = extraction_targets([r for r in records if r.id in used and r.spans])
        trained, loop = run_loop(
            model,
            tokenizer,
            cls(s),
            examples,
            kl,
            guard,
            seed=seed,
            device=device,
            progress=progress,
            forget_targets=targets,
        )
    return UnlearnResult(trained, method, s, loop, len(examples))


def merged(model: Any) -> Any:
    """The plain model: LoRA adapters merged into the weights (no-op for a full fine-tune)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def model_card(result: UnlearnResult, records: Sequence[Record], forget_sha: str, source: str) -> str:
    """A model-card section saying what was removed and how."""
    types = Counter(s.entity_type for r in records for s in r.spans)
    kept = result.loop.kept
    st = result.settings
    trained = f"LoRA r{st.lora_r}, alpha {st.lora_alpha:g} (merged)" if st.lora else "all weights"
    lines = [
        "# Sanitized checkpoint",
        "",
        "## PII sanitization (pii-unlearn)",
        "",
        f"- Source checkpoint: `{source}`",
        f"- Method: `{result.method}` ({get_method(result.method).summary})",
        f"- Forget set: {result.forget_count} records (sha256 `{forget_sha[:16]}...`), PII spans by type: "
        + (", ".join(f"{t} {n}" for t, n in sorted(types.items())) or "none"),
        f"- Trained: {trained}, "
        f"{result.loop.steps} steps, lr {result.settings.lr:g}, KL weight {result.settings.kl_weight:g}",
        f"- Stopped: {result.loop.stop_reason}",
    ]
    if kept:
        first = result.loop.readings[0]
        lines.append(
            f"- Forget PII tokens' mean probability: {first.pii_prob:.4f} -> {kept.pii_prob:.4f}; "
            f"retain perplexity {first.ppl:.3f} -> {kept.ppl:.3f} ({kept.ppl_increase_pct:+.2f}%)"
        )
    lines += ["", "Verify with `pii-unlearn audit` before release; the audit report is the evidence.", ""]
    return "\n".join(lines)


def run_unlearn(
    model_path: str | Path,
    forget_path: str | Path,
    output: str | Path,
    *,
    method: str = "dfsu",
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    retain_path: str | Path | None = None,
    save_adapter: bool = False,
    seed: int = 0,
    device: str | None = None,
    text_field: str = "text",
    progress: Callable[[GuardReading], None] | None = None,
) -> tuple[Path, UnlearnResult]:
    """Read a checkpoint and a forget set, unlearn, and save the new checkpoint in ``output``."""
    from pii_unlearn.checkpoint import check_output_dir, load_model, pick_device, save_model
    from pii_unlearn.errors import InputError

    timer = Timer()
    check_output_dir(output, model_path)
    settings = settings_for(method, config, overrides)
    if save_adapter and not settings.lora:
        raise InputError("--save-adapter needs LoRA training (drop --full)")
    records = read_records(forget_path, text_field=text_field)
    retain = retain_texts(retain_path, text_field) if retain_path else None
    dev = pick_device(device)
    with timer("load"):
        loaded = load_model(model_path, device=dev, dtype="float32")
    with timer("unlearn"):
        result = unlearn_model(
            loaded.model,
            loaded.tokenizer,
            records,
            method=method,
            settings=settings,
            retain=retain,
            seed=seed,
            device=dev,
            progress=progress,
        )
    manifest = Manifest(
        seed=seed,
        settings={
            "method": method,
            **settings.model_dump(),
            "device": dev,
            "forget_records": result.forget_count,
            "loop": result.loop.to_json(),
        },
    )
    manifest.add_input(model_path, "model")
    manifest.add_input(forget_path, "forget")
    if retain_path:
        manifest.add_input(retain_path, "retain")
    forget_sha = manifest.inputs[1]["sha256"]
    card = model_card(result, records, forget_sha, str(model_path))

    with timer("save"), tempfile.TemporaryDirectory() as adapter_tmp:
        if save_adapter:
            result.model.save_pretrained(Path(adapter_tmp) / "adapter")

        def move_adapter(target: Path) -> None:
            if save_adapter:
                shutil.move(str(Path(adapter_tmp) / "adapter"), str(target / "adapter"))

        final = merged(result.model)
        manifest.timings = timer.timings
        files = {DIR_MANIFEST_NAME: json.dumps(manifest.model_dump(mode="json"), indent=2), "README.md": card}
        out = save_model(
            final, loaded.tokenizer, output, source=model_path, before_commit=move_adapter, extra_files=files
        )
    result.model = final
    return out, result


__all__ = ["METHODS", "UnlearnResult", "UnlearnSettings", "run_unlearn", "settings_for", "unlearn_model"]

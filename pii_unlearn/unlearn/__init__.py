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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pii_unlearn.artifacts import DIR_MANIFEST_NAME, Manifest, Record, Timer, read_records
from pii_unlearn.errors import InputError
from pii_unlearn.lm import batch_threads, is_main_process, join_processes, wait_for_everyone, world_size
from pii_unlearn.options import Options, load_config_file, resolve_options
from pii_unlearn.unlearn.config import GradientOptions
from pii_unlearn.unlearn.data import RetainData, retain_texts
from pii_unlearn.unlearn.methods import METHODS, EditResult, Method, get_method
from pii_unlearn.unlearn.methods.base import ReadingCallback


@dataclass
class UnlearnResult:
    """The edited model, the method that made it (with its options) and what it did."""

    method: Method
    edit: EditResult
    #: torch CPU threads the method ran with.
    threads: int = 1

    @property
    def model(self) -> Any:
        return self.edit.model

    @property
    def options(self) -> Options:
        return self.method.options


def options_for(
    method: str, config: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Options:
    """Validated options of ``method``: its defaults, then a YAML file's values, then overrides.

    A top-level ``method`` key in the file is allowed (it names the method the file is for).
    """
    cls = get_method(method)
    file_values = load_config_file(config) if config else {}
    named = file_values.pop("method", method)
    if named != method:
        raise InputError(f"{config}: is for method '{named}', not '{method}'")
    return resolve_options(cls.Options, file_values, overrides, where=str(config) if config else "config")


def unlearn_model(
    model: Any,
    tokenizer: Any,
    records: Sequence[Record],
    *,
    method: str = "dfsu",
    options: Options | None = None,
    retain: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    detector: Any = None,
    progress: ReadingCallback | None = None,
    threads: int | None = None,
) -> UnlearnResult:
    """Unlearn ``records`` from ``model`` in memory with the registered ``method``.

    ``retain`` is benign text, split between the retain term and the utility guard.
    Without it, the method's ``retain_source`` picks the text: by default the
    model's own samples with their PII masked out, which keeps the method
    data-free, again with a held-out split for the guard. The returned model may
    carry LoRA adapters: :func:`merged` folds them into the weights.

    ``threads`` sets torch's CPU threads (the count used is in the result). By default
    a single process on CPU takes the cores other processes leave idle
    (:func:`pii_unlearn.lm.batch_threads`: a training step's batch of records, rewrites
    and retain text is large enough to gain from them, also on a tiny model: twinfit's
    default run took 157 s on one thread, 111 s on two idle cores), and one thread on a busy
    machine; under torchrun each process keeps the launcher's setting. Thread counts sum
    in another order: pin ``threads`` where two runs must agree to the last bit.
    """
    if not records:
        raise InputError("the forget set is empty")
    runner = get_method(method)(options)
    with batch_threads(model, threads) as used:
        edit = runner.apply(
            model,
            tokenizer,
            records,
            RetainData(retain, detector),
            seed=seed,
            device=device,
            progress=progress,
        )
    return UnlearnResult(runner, edit, used)


def merged(model: Any) -> Any:
    """The plain model: LoRA adapters merged into the weights (no-op for a full fine-tune)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def model_card(result: UnlearnResult, records: Sequence[Record], forget_sha: str | None, source: str) -> str:
    """A model-card section saying what was removed and how."""
    types = Counter(s.entity_type for r in records for s in r.spans)
    lines = [
        "# Sanitized checkpoint",
        "",
        "## PII sanitization (pii-unlearn)",
        "",
        f"- Source checkpoint: `{source}`",
        f"- Method: `{result.method.name}` ({result.method.summary})",
        f"- Forget set: {result.edit.forget_count} records ("
        + (f"sha256 `{forget_sha[:16]}...`" if forget_sha else "not a regular file: not hashed")
        + "), "
        "PII spans by type: " + (", ".join(f"{t} {n}" for t, n in sorted(types.items())) or "none"),
        *result.method.card_lines(result.edit),
        *([f"- Utility guard: {result.edit.guard_note}"] if result.edit.guard_note else []),
        "",
        "Verify with `pii-unlearn audit` before release; the audit report is the evidence.",
        "",
    ]
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
    allow_pickle: bool = False,
    progress: ReadingCallback | None = None,
    overwrite: bool = False,
    threads: int | None = None,
) -> tuple[Path, UnlearnResult]:
    """Read a checkpoint and a forget set, unlearn, and save the new checkpoint in ``output``.

    ``output`` may replace a checkpoint pii-unlearn wrote; any other existing folder only
    with ``overwrite``. It may not be, hold or sit inside an input.

    ``allow_pickle`` lets a checkpoint with only pickle weights load (trusted input only).
    ``threads``: torch's CPU threads (default: see :func:`unlearn_model`; the count used is
    in the manifest).
    """
    from pii_unlearn.checkpoint import check_output_dir, load_model, pick_device, save_model

    timer = Timer()
    check_output_dir(output, [model_path, forget_path, retain_path, config], overwrite=overwrite)
    options = options_for(method, config, overrides)
    if save_adapter and not (isinstance(options, GradientOptions) and options.lora):
        raise InputError(f"--save-adapter needs LoRA training ({method} with --lora)")
    records = read_records(forget_path, text_field=text_field)
    retain = retain_texts(retain_path, text_field) if retain_path else None
    dev = pick_device(device)
    # under torchrun / accelerate launch: the loop's methods share the work, and every method
    # (nspu too) leaves the writing to rank 0
    join_processes(dev)
    with timer("load"):
        loaded = load_model(model_path, device=dev, dtype="float32", allow_pickle=allow_pickle)
    with timer("unlearn"):
        result = unlearn_model(
            loaded.model,
            loaded.tokenizer,
            records,
            method=method,
            options=options,
            retain=retain,
            seed=seed,
            device=dev,
            progress=progress,
            threads=threads,
        )
    manifest = Manifest(
        seed=seed,
        settings={
            "method": method,
            **options.model_dump(),
            "device": dev,
            "processes": world_size(),
            "threads": result.threads,
            "forget_records": result.edit.forget_count,
            "loop": result.edit.to_json(),
        },
    )
    manifest.add_input(model_path, "model")
    manifest.add_input(forget_path, "forget")
    if retain_path:
        manifest.add_input(retain_path, "retain")
    forget_sha = manifest.inputs[1]["sha256"]
    card = model_card(result, records, forget_sha, str(model_path))

    final = merged(result.model)
    out = Path(output)
    if is_main_process():  # under torchrun / accelerate launch, rank 0 alone writes
        with timer("save"), tempfile.TemporaryDirectory() as adapter_tmp:
            if save_adapter:
                result.model.save_pretrained(Path(adapter_tmp) / "adapter")

            def move_adapter(target: Path) -> None:
                if save_adapter:
                    shutil.move(str(Path(adapter_tmp) / "adapter"), str(target / "adapter"))

            manifest.timings = timer.timings
            files = {
                DIR_MANIFEST_NAME: json.dumps(manifest.model_dump(mode="json"), indent=2),
                "README.md": card,
            }
            out = save_model(
                final,
                loaded.tokenizer,
                output,
                source=model_path,
                before_commit=move_adapter,
                extra_files=files,
                overwrite=overwrite,
            )
    wait_for_everyone()
    result.edit.model = final
    return out, result


__all__ = ["METHODS", "UnlearnResult", "merged", "options_for", "run_unlearn", "unlearn_model"]

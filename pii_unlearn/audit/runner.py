"""``run_audit``: the whole audit of a model (and optionally its baseline) into a report folder.

Order of work: check every input and the gate conditions (usage errors, nothing
loaded yet), draw the shared inputs (targets, candidates, twins, probes), load
each model once, run every registered measurement on each side with the same
seeds, measure utility (perplexity, KL drift), assemble ``report.json``, check
the gate, and write ``REPORT_DIR`` atomically (a temp folder renamed into place)
with ``report.json``, ``report.html`` and a manifest.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from pii_unlearn import __version__
from pii_unlearn.artifacts import (
    DIR_MANIFEST_NAME,
    Manifest,
    Record,
    Timer,
    atomic_directory,
    check_output,
    read_records,
    write_json,
)
from pii_unlearn.audit.figures import COMPARISON, SIDE
from pii_unlearn.audit.gate import Condition, Outcome, check_names, evaluate, parse_conditions
from pii_unlearn.audit.metrics import (
    MEASUREMENTS,
    AuditInputs,
    Measured,
    ModelRun,
    ProgressFn,
    Utility,
    all_figures,
    measure_utility,
    run_measurements,
    silent,
    skipped,
)
from pii_unlearn.audit.report import SCHEMA_VERSION, delta, headline, model_figures, target_details
from pii_unlearn.audit.settings import AuditSettings
from pii_unlearn.checkpoint import LoadedModel
from pii_unlearn.errors import InputError
from pii_unlearn.lm import cpu_threads, is_main_process, join_processes, wait_for_everyone

#: Files inside a report folder.
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
#: Held-out file looked for beside a checkpoint (what ``make-victim`` writes).
HELDOUT_BESIDE_MODEL = "heldout.jsonl"
#: Held-out texts used at most (the first ones of the file).
MAX_HELDOUT_TEXTS = 256


@dataclass
class AuditResult:
    """What an audit produced: the report, where it was written, and the gate's outcomes."""

    report: dict[str, Any]
    output: Path | None
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether any gate condition holds (the CLI then exits 1)."""
        return any(o.failed for o in self.outcomes)


@dataclass
class _Heldout:
    texts: list[str]
    source: str


def builtin_heldout() -> list[str]:
    """The package's own held-out benign sentences (used by nothing else)."""
    raw = files("pii_unlearn.audit").joinpath("heldout.txt").read_text(encoding="utf-8")
    return [line.strip() for line in raw.splitlines() if line.strip() and not line.startswith("#")]


def resolve_heldout(
    heldout: str | Path | Sequence[str] | None, *checkpoints: str | Path | LoadedModel | None
) -> _Heldout:
    """Held-out texts: the given file (or list), else ``heldout.jsonl`` beside a checkpoint, else built-in."""
    if heldout is not None and not isinstance(heldout, (str, Path)):
        texts = [t for t in heldout if t.strip()]
        source = "given texts"
    else:
        path = Path(heldout) if heldout is not None else None
        if path is None:
            for ckpt in checkpoints:
                src = ckpt.source if isinstance(ckpt, LoadedModel) else ckpt
                if src is not None and Path(src).is_dir() and (Path(src) / HELDOUT_BESIDE_MODEL).exists():
                    path = Path(src) / HELDOUT_BESIDE_MODEL
                    break
        if path is None:
            return _Heldout(builtin_heldout()[:MAX_HELDOUT_TEXTS], "built-in (pii_unlearn/audit/heldout.txt)")
        texts = [r.text for r in read_records(path) if r.text.strip()]
        source = str(path)
    if not texts:
        raise InputError(f"{source}: no held-out text")
    return _Heldout(texts[:MAX_HELDOUT_TEXTS], source)


def _load_records(records: str | Path | Sequence[Record]) -> tuple[list[Record], str]:
    if isinstance(records, (str, Path)):
        recs = read_records(records)
        where = str(records)
    else:
        recs, where = list(records), "given records"
    if not any(r.spans for r in recs):
        raise InputError(f"{where}: no record has PII spans, so there is nothing to audit")
    return recs, where


def check_report_dir(
    output: str | Path, *inputs: str | Path | LoadedModel | None, overwrite: bool = False
) -> Path:
    """Validate the report folder before any work: a new or empty folder, or an earlier report."""
    sources = [
        inp.source if isinstance(inp, LoadedModel) else inp
        for inp in inputs
        if isinstance(inp, (str, Path, LoadedModel))
    ]
    return check_output(
        output, inputs=sources, folder=True, marker=REPORT_JSON, kind="an audit report", overwrite=overwrite
    )


def _loaded(
    model: str | Path | LoadedModel,
    device: str | None,
    dtype: str | None,
    timer: Timer,
    name: str,
    allow_pickle: bool = False,
) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    from pii_unlearn.checkpoint import load_model

    with timer(name):
        return load_model(model, device=device, dtype=dtype, allow_pickle=allow_pickle)


def report_shape(inputs: AuditInputs, settings: AuditSettings, *, baseline: bool) -> dict[str, Any]:
    """The report these options would produce, with a number wherever a figure will be measured."""
    n = len(inputs.targets)
    measured = {
        name: Measured({c: [0.0] * n for c in m.columns}) if m.enabled(settings) else skipped(m, n, "not run")
        for name, m in MEASUREMENTS.items()
    }
    sides = {"model": measured, **({"baseline": measured} if baseline else {})}
    utility = Utility(
        {side: {f.key: 1.0 for f in all_figures() if f.kind == SIDE} for side in sides},
        {f.key: 0.0 if baseline else None for f in all_figures() if f.kind == COMPARISON},
    )
    return build_report(inputs, settings, sides, utility, meta={}, placeholder=True)


def build_report(
    inputs: AuditInputs,
    settings: AuditSettings,
    sides: dict[str, dict[str, Measured]],
    utility: Utility,
    *,
    meta: dict[str, Any],
    placeholder: bool = False,
) -> dict[str, Any]:
    """Assemble report.json from each side's measurements and utility (see SCHEMA.md).

    ``placeholder``: the shape of the report only (see :func:`report_shape`).
    """
    figures = {
        side: model_figures(inputs, m, utility.sides.get(side, {}), placeholder=placeholder)
        for side, m in sides.items()
    }
    base = figures.get("baseline")
    report: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    report.update(headline(figures, utility))
    report["gate"] = []
    report["model"] = figures["model"]
    report["baseline"] = base
    report["delta"] = delta(figures["model"], base) if base else None
    report["utility_notes"] = list(utility.notes)
    report["settings"] = settings.as_dict()
    report["seeds"] = settings.seeds()
    report["counts"] = {
        "records": meta.get("records_given", len(inputs.records)),
        "records_audited": len(inputs.records),
        "targets": len(inputs.targets),
        "conditioned": sum(t.conditioned for t in inputs.targets),
        "unconditioned": sum(not t.conditioned for t in inputs.targets),
        "by_entity": {e: sum(t.entity_type == e for t in inputs.targets) for e in inputs.entity_types},
        "twins": len(inputs.twins),
        "probes": len(inputs.probes),
        "probes_dropped": inputs.probes_dropped,
        "exposure_candidates": sum(len(c) for c in inputs.candidates),
        "samples_per_prefix": settings.num_samples,
        "heldout_texts": meta.get("heldout_texts", 0),
    }
    report.update({k: meta.get(k) for k in ("device", "dtype", "processes", "timings", "inputs")})
    report.update(tool="pii-unlearn", version=__version__, created=meta.get("created"))
    report["targets"] = target_details(inputs, sides, show_pii=settings.show_pii)
    return report


def run_audit(
    model: str | Path | LoadedModel,
    records: str | Path | Sequence[Record],
    output: str | Path | None = None,
    *,
    baseline: str | Path | LoadedModel | None = None,
    heldout: str | Path | Sequence[str] | None = None,
    settings: AuditSettings | None = None,
    fail_on: Sequence[str | Condition] = (),
    device: str | None = None,
    dtype: str | None = None,
    allow_pickle: bool = False,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> AuditResult:
    """Audit ``model`` (against ``baseline`` when given) on ``records``; write ``output`` if given.

    ``model`` and ``baseline`` are checkpoint paths (loaded once each on
    ``device``/``dtype``; ``allow_pickle`` for pickle-only weights) or
    already-loaded models. ``fail_on`` holds gate conditions such as ``"err>0"``;
    they are checked before any work (usage errors raise :class:`InputError`) and
    evaluated on the finished report (``result.failed``). The report folder is
    written whether the gate passes or not.
    """
    start = time.perf_counter()
    # under torchrun / accelerate launch: the per-value passes are split over the processes
    processes = join_processes(device)
    settings = settings or AuditSettings()
    progress = progress or silent
    timer = Timer()
    conditions = parse_conditions(fail_on)
    recs, records_where = _load_records(records)
    held = resolve_heldout(heldout, model, baseline)
    inputs_read = (model, baseline, records, heldout)
    out = check_report_dir(output, *inputs_read, overwrite=overwrite) if output is not None else None
    with timer("inputs"):
        inputs = AuditInputs.build(recs, settings)
    inputs.heldout = list(held.texts)
    full_shape = report_shape(inputs, AuditSettings.every_measurement(), baseline=True)
    planned = report_shape(inputs, settings, baseline=baseline is not None)
    check_names(conditions, full_shape, planned, figures=all_figures())

    progress("loading", 0, 1)
    loaded = {"model": _loaded(model, device, dtype, timer, "load_model", allow_pickle)}
    if baseline is not None:
        loaded["baseline"] = _loaded(baseline, device, dtype, timer, "load_baseline", allow_pickle)
    progress("loading", 1, 1)

    sides: dict[str, dict[str, Measured]] = {}
    for side in ("baseline", "model"):
        if side in loaded:
            run = ModelRun(loaded[side], side, inputs, settings, progress)
            with cpu_threads(loaded[side].model, settings.threads):
                sides[side], times = run_measurements(run)
            timer.timings.update({f"{side}.{k}": v for k, v in times.items()})
    progress("utility", 0, 1)
    with timer("utility"), cpu_threads(loaded["model"].model, settings.threads):
        utility = measure_utility(loaded, held.texts, settings.batch_size)
    progress("utility", 1, 1)

    lm = loaded["model"]
    meta = {
        "records_given": len(recs),
        "heldout_texts": len(held.texts),
        "device": str(lm.device),
        "dtype": str(lm.dtype).replace("torch.", ""),
        # CPU threads of the exposure ranking per side (chosen from the idle cores unless set)
        "threads": {side: m["exposure"].extra.get("threads") for side, m in sides.items() if "exposure" in m},
        "timings": timer.timings,
        "processes": processes,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            "model": str(lm.source),
            "baseline": str(loaded["baseline"].source) if "baseline" in loaded else None,
            "records": records_where,
            "heldout": held.source,
        },
    }
    report = build_report(inputs, settings, sides, utility, meta=meta)
    outcomes = evaluate(conditions, report)
    report["gate"] = [{"condition": o.condition.text, "value": o.value, "failed": o.failed} for o in outcomes]
    timer.timings["total"] = round(time.perf_counter() - start, 3)
    if out is not None and is_main_process():  # every process has the whole report; rank 0 writes it
        _write_report_dir(out, report, inputs, settings, records, loaded, heldout)
    wait_for_everyone()
    return AuditResult(report, out, outcomes)


def _write_report_dir(
    out: Path,
    report: dict[str, Any],
    inputs: AuditInputs,
    settings: AuditSettings,
    records: str | Path | Sequence[Record],
    loaded: dict[str, LoadedModel],
    heldout: str | Path | Sequence[str] | None,
) -> None:
    """Write report.json, report.html and the manifest into a temp folder, then rename it to ``out``."""
    from pii_unlearn.audit.html import render_html

    with atomic_directory(out) as tmp:
        write_json(tmp / REPORT_JSON, report)
        html = render_html(report, inputs.targets, show_pii=settings.show_pii)
        (tmp / REPORT_HTML).write_text(html, encoding="utf-8")
        (tmp / REPORT_HTML).chmod(0o600)
        manifest = Manifest(seed=settings.seed, timings=report["timings"], settings=settings.as_dict())
        for role, lm in loaded.items():
            manifest.add_input(lm.source, role)
        if isinstance(records, (str, Path)):
            manifest.add_input(records, "records")
        if isinstance(heldout, (str, Path)):
            manifest.add_input(heldout, "heldout")
        write_json(tmp / DIR_MANIFEST_NAME, manifest.model_dump(mode="json"))

#!/usr/bin/env bash
# The CUDA + bf16 check of issue 18, for a session that is lent a GPU: every unlearning method,
# the audit's generation and probes, and the FSDP2 and DeepSpeed ZeRO-3 recipes (one process),
# through the CLI on one victim, each step timed and its exit status kept, so one failure does
# not hide the rest. Run it on CPU too (DEVICE=cpu) for the same work on the same victim.
#
#   bench/gpu_check.sh WORK OUTDIR
#     WORK: a folder holding victim/ (make-victim) and risk.jsonl (the data-free forget set:
#           invert -> detect -> risk-score), e.g. the demo's work folder
#     OUTDIR: where the logs, summary.txt and summary.json go; checkpoints go to OUTDIR/runs
#   env: PY (python with pii_unlearn importable), DEVICE (default cuda), METHODS, STEP_TIMEOUT
#        (seconds per step, default 240), ENGINES (fsdp deepspeed, or empty to skip), UNLEARN_ARGS
#        (more unlearn options, e.g. "--set retain_source=builtin" where Presidio is not installed:
#        the data-free retain text is the model's own samples with PII masked by Presidio)
set -uo pipefail
WORK=${1:?usage: gpu_check.sh WORK OUTDIR}
OUTDIR=${2:?usage: gpu_check.sh WORK OUTDIR}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
METHODS=${METHODS-dfsu ga npo unpii-npo sani nspu twinfit}
AUDITED=${AUDITED-dfsu twinfit}
ENGINES=${ENGINES-fsdp deepspeed}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
UNLEARN_ARGS=${UNLEARN_ARGS:-}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RUNS=$OUTDIR/runs
mkdir -p "$RUNS"
: > "$OUTDIR/steps.tsv"

step() { # step NAME COMMAND...: run, time, keep the log and the exit status
    local name=$1 start rc ms
    shift
    start=$(date +%s%N)
    timeout "$STEP_TIMEOUT" "$@" > "$OUTDIR/$name.log" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    printf '%s\t%s\t%d.%03d\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) | tee -a "$OUTDIR/steps.tsv"
}

{
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import torch, transformers, accelerate, peft; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported(), 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__)"
    nproc
} > "$OUTDIR/machine.txt" 2>&1
cat "$OUTDIR/machine.txt"

for method in $METHODS; do
    step "unlearn-$method" "$PY" -m pii_unlearn unlearn --model "$WORK/victim" --forget "$WORK/risk.jsonl" \
        --method "$method" --device "$DEVICE" --output "$RUNS/$method" --seed 0 $UNLEARN_ARGS
done
for engine in $ENGINES; do  # one process: the engine's code path on this device, not its scaling
    step "engine-$engine" "$PY" -m accelerate.commands.launch --num_processes 1 \
        --config_file "$HERE/recipes/accelerate/$engine.yaml" -m pii_unlearn unlearn --model "$WORK/victim" \
        --forget "$WORK/risk.jsonl" --method sani --output "$RUNS/sani-$engine" --seed 0 $UNLEARN_ARGS
done

for method in $AUDITED; do
    step "audit-$method" "$PY" -m pii_unlearn audit --model "$RUNS/$method" --baseline "$WORK/victim" \
        --records "$WORK/victim/planted.jsonl" --heldout "$WORK/victim/heldout.jsonl" --quantize int4 --relearn --device "$DEVICE" \
        --output "$RUNS/audit-$method" --seed 0
done
"$PY" "$HERE/bench/gpu_summary.py" "$OUTDIR" "$WORK" | tee "$OUTDIR/summary.txt"

#!/usr/bin/env bash
# The GPU measurements in priority order, split into three parts that each fit one command of at most 10 minutes
# on one H100/H200. Every step runs under `timeout` with what is left of the part's budget (PART_SECONDS, default
# 540 s = 9 min: the rest of the 600 s limit covers starting Python, the 10 s kill grace and writing up); a step
# that runs out is reported and the part goes on to write what it has. Minutes below are estimates from the
# earlier measurements in benchmarks/gpu.json (the smoke pipeline's is not measured on a GPU yet). From the
# repository root, after `make install`:
#
#   benchmarks/gpu_session.sh train    # (1) the training job's iteration, TF and PRA, PRA-S then PRA-L, at the
#                                      #     experiment's per-GPU batch, modes 'compiled' (speed options off) and
#                                      #     'fast' (on), 3 rounds of 10-iteration windows: ~3 + ~4 = ~7 min
#   benchmarks/gpu_session.sh sample   # (2) whole-image sampling at the configured batch, 3 repetitions: PRA-S
#                                      #     with the eager sampler beside it at batch 256 (~3 min), PRA-L fast
#                                      #     path only (~2 min); (3) bf16 vs fp32 samples of a trained model at
#                                      #     CFG 3 (MODEL, CLASSIFIER; PER_CLASS, default 100) in what is left
#                                      #     (~4 min): ~9 min with (3), ~5 min without
#   benchmarks/gpu_session.sh smoke    # (4) the smoke pipeline (experiments/smoke.yaml, every rule) through
#                                      #     Snakemake with device cuda, --keep-going, --cores SMOKE_CORES
#                                      #     (default 8); needs >= 300 s, gets the part's whole budget
#
# A device session has 15 minutes of device time, the machine's start (a few minutes) included: one part at the
# default budget per session, in the order train, sample, smoke (benchmarks/README.md). A second part on the
# same warm machine only with PART_SECONDS set below the time the session has left, less a minute.
#
# Each bench step adds its rows to benchmarks/gpu.{json,md} (--gpu-keep keeps the other sections and the other
# scales' rows when they were measured by this benchmark format on the same card, torch, geometry and sampler
# settings);
# benchmarks/precision.{json,md,png}; benchmarks/gpu_smoke.log and benchmarks/gpu_smoke/ (the smoke reports).
# GPU_DRY=1 runs the same steps on the CPU at tiny sizes into $OUT (default: a temporary folder) to check the
# script before a device session. Its smoke part resolves the whole pipeline with device cuda (snakemake -n,
# plan in $OUT/gpu_smoke_plan.log) and runs one training job and its inputs for real on the CPU (~25 s on 2
# cores); GPU_DRY=1 SMOKE=1 runs the whole smoke pipeline on the CPU instead (~9 min on 2 cores).
set -uo pipefail
part=${1:?usage: benchmarks/gpu_session.sh train|sample|smoke}
budget=${PART_SECONDS:-540}
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
say() { echo "[gpu_session $part $(( $(date +%s) - start ))s] $*"; }
# step NAME MIN_SECONDS CMD...: run CMD under the time left (minus 15 s to write up), if at least MIN_SECONDS are
step() {
  local name=$1 need=$2; shift 2
  local l; l=$(left)
  if (( l - 15 < need )); then say "$name: skipped ($l s left, needs $need)"; return 0; fi
  say "$name: start ($l s left)"
  timeout --kill-after=10 $(( l - 15 )) "$@"
  local rc=$?
  if (( rc == 0 )); then say "$name: done"; else say "$name: exit $rc (124: out of time)"; fi
  return 0
}

if [[ "${GPU_DRY:-0}" == 1 ]]; then
  OUT=${OUT:-$(mktemp -d)}
  bench=(python -m pra bench --gpu-dry-run --config experiments/smoke.yaml --out "$OUT" --gpu-batch 4 --gpu-reps 2
         --gpu-window 2 --gpu-sample-batches 50 --gpu-geometry 16,1,4,10 --gpu-ode-steps 3 --gpu-keep)
  S=tiny-XS; L=tiny-S; eager=10; device=cpu; cores=${SMOKE_CORES:-2}
else
  OUT=${OUT:-benchmarks}
  bench=(python -m pra bench --device cuda --config experiments/imagenet256.yaml --out "$OUT" --gpu-reps 3
         --gpu-window 10 --gpu-keep)
  S=PRA-S; L=PRA-L; eager=256; device=cuda; cores=${SMOKE_CORES:-8}
fi
mkdir -p "$OUT"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

case "$part" in
  train)
    step "training $S" 60 "${bench[@]}" --gpu-sections training --gpu-scales "$S" --gpu-modes compiled fast
    step "training $L" 60 "${bench[@]}" --gpu-sections training --gpu-scales "$L" --gpu-modes compiled fast
    ;;
  sample)
    step "sampling $S" 60 "${bench[@]}" --gpu-sections sampling --gpu-sample-scales "$S" --gpu-eager-batch "$eager"
    step "sampling $L" 60 "${bench[@]}" --gpu-sections sampling --gpu-sample-scales "$L" --gpu-eager-batch 0 \
      --gpu-profile-sampling 0
    if [[ -n "${MODEL:-}" && -n "${CLASSIFIER:-}" ]]; then
      step "bf16 vs fp32 on $MODEL (CFG 3)" 60 python -m pra bench-precision --model "$MODEL" \
        --classifier "$CLASSIFIER" ${REFERENCE:+--reference "$REFERENCE"} --cfg-scale 3 \
        --per-class "${PER_CLASS:-100}" --batch-size 500 --device "$device" --out "$OUT/precision"
    else
      say "bf16 on a trained model: skipped (MODEL and CLASSIFIER not set)"
    fi
    ;;
  smoke)
    work=$(mktemp -d)
    log=$OUT/gpu_smoke.log
    smk=(snakemake --snakefile "$PWD/Snakefile" --directory "$work" --configfile experiments/smoke.yaml)
    to_log=(bash -c 'log=$1; shift; exec "$@" > "$log" 2>&1' _)
    if [[ "${GPU_DRY:-0}" == 1 && "${SMOKE:-0}" != 1 ]]; then
      # the GPU run's plan: the config with device cuda validated and every job resolved (nothing runs)
      step "smoke pipeline: plan with device cuda (snakemake -n)" 10 "${to_log[@]}" "$OUT/gpu_smoke_plan.log" \
        "${smk[@]}" -n --cores 8 --keep-going all --config device=cuda
      say "smoke pipeline: $(grep -m1 "^total" "$OUT/gpu_smoke_plan.log" | awk '{print $2}') jobs planned (more after its checkpoints)"
      # one training job and the jobs it needs, for real, on the CPU
      target=$(grep -o "results/[^ ,]*/pra/[^ ,]*/model\.pt" "$OUT/gpu_smoke_plan.log" | head -1)
      if [[ -n "$target" ]]; then
        step "smoke pipeline: $target and its inputs (device $device, log $log)" 30 "${to_log[@]}" "$log" \
          "${smk[@]}" --cores "$cores" --config device="$device" -- "$target"
      else
        say "smoke pipeline: no training job of method pra in the plan (see $OUT/gpu_smoke_plan.log)"
      fi
    else
      step "smoke pipeline (device $device, log $log)" 300 "${to_log[@]}" "$log" \
        "${smk[@]}" --cores "$cores" --keep-going all --config device="$device"
    fi
    { grep -E "^Error in rule" "$log"; grep -E "steps \([0-9]+%\) done" "$log" | tail -n 1; } 2>/dev/null
    mkdir -p "$OUT/gpu_smoke"
    cp -r "$work"/results/smoke/reports/. "$OUT/gpu_smoke/" 2>/dev/null || true
    ;;
  *) echo "unknown part $part (train|sample|smoke)"; exit 2 ;;
esac
say "done"

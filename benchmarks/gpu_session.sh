#!/usr/bin/env bash
# The GPU measurements in priority order, split into two parts that each fit a 10-minute command on one
# H100/H200. Every step runs under `timeout` with what is left of the part's budget (PART_SECONDS, default
# 540); a step that runs out is reported and the part goes on to write what it has. Seconds below are
# estimates from the earlier measurements in benchmarks/gpu.json. From the repository root, after `make install`:
#
#   benchmarks/gpu_session.sh train    # (1) the training job's iteration, TF and PRA, PRA-S then PRA-L, at the
#                                      #     experiment's per-GPU batch, modes 'compiled' (speed options off) and
#                                      #     'fast' (on), 3 rounds of 10-iteration windows: ~3 + ~4 min
#   benchmarks/gpu_session.sh sample   # (2) whole-image sampling at the configured batch, 3 repetitions: PRA-S
#                                      #     with the eager sampler beside it at batch 256 (~3 min), PRA-L fast
#                                      #     path only (~2 min); (3) bf16 vs fp32 samples of a trained model at
#                                      #     CFG 3 (MODEL, CLASSIFIER; PER_CLASS, default 100); (4) the smoke
#                                      #     pipeline through Snakemake with device cuda if >= 300 s are left
#
# Each bench step adds its rows to benchmarks/gpu.{json,md} (--gpu-keep keeps the other sections and the other
# scales' rows when they were measured by this benchmark format on the same card, torch, geometry and sampler
# settings);
# benchmarks/precision.{json,md,png}; benchmarks/gpu_smoke.log and benchmarks/gpu_smoke/ (the smoke reports).
# GPU_DRY=1 runs the same steps on the CPU at tiny sizes into $OUT (default: a temporary folder) to check the
# script before a device session; it runs the smoke pipeline only with SMOKE=1.
set -uo pipefail
part=${1:?usage: benchmarks/gpu_session.sh train|sample}
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
  S=tiny-XS; L=tiny-S; eager=10; device=cpu
else
  OUT=${OUT:-benchmarks}
  bench=(python -m pra bench --device cuda --config experiments/imagenet256.yaml --out "$OUT" --gpu-reps 3
         --gpu-window 10 --gpu-keep)
  S=PRA-S; L=PRA-L; eager=256; device=cuda
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
    step "sampling $L" 60 "${bench[@]}" --gpu-sections sampling --gpu-sample-scales "$L" --gpu-eager-batch 0
    if [[ -n "${MODEL:-}" && -n "${CLASSIFIER:-}" ]]; then
      step "bf16 vs fp32 on $MODEL (CFG 3)" 60 python -m pra bench-precision --model "$MODEL" \
        --classifier "$CLASSIFIER" ${REFERENCE:+--reference "$REFERENCE"} --cfg-scale 3 \
        --per-class "${PER_CLASS:-100}" --batch-size 500 --device "$device" --out "$OUT/precision"
    else
      say "bf16 on a trained model: skipped (MODEL and CLASSIFIER not set)"
    fi
    if [[ "${GPU_DRY:-0}" == 1 && "${SMOKE:-0}" != 1 ]]; then
      say "smoke pipeline: skipped in the dry run (SMOKE=1 runs it)"
    else
      work=$(mktemp -d)
      step "smoke pipeline (device $device, log $OUT/gpu_smoke.log)" 300 bash -c 'log=$1; shift; exec "$@" > "$log" 2>&1' \
        _ "$OUT/gpu_smoke.log" snakemake --snakefile "$PWD/Snakefile" --directory "$work" --cores 4 all \
        --configfile experiments/smoke.yaml --config device="$device"
      mkdir -p "$OUT/gpu_smoke"
      cp -r "$work"/results/smoke/reports/. "$OUT/gpu_smoke/" 2>/dev/null || true
    fi
    ;;
  *) echo "unknown part $part (train|sample)"; exit 2 ;;
esac
say "done"

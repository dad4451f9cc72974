#!/usr/bin/env bash
# The GPU measurements in priority order, split into parts that each fit a 10-minute command on one H100/H200
# (seconds estimated from the measurements in benchmarks/gpu.json; a part stops before its next section when
# its time is spent). Run from the repository root after `make install`:
#
#   benchmarks/gpu_session.sh train    # (1) the training job's iteration, TF and PRA, PRA-S and PRA-L, at the
#                                      #     experiment's per-GPU batch, modes 'compiled' (speed options off) and
#                                      #     'fast' (on), 3 windows of 10 iterations each: ~7 min
#   benchmarks/gpu_session.sh sample   # (2) whole-image sampling at the configured batch, 3 repetitions, PRA-S
#                                      #     and PRA-L, the eager sampler beside it at batch 256 for PRA-S: ~5 min;
#                                      # (3) bf16 vs fp32 samples of a trained model at CFG 3 (MODEL, CLASSIFIER);
#                                      # (4) the smoke pipeline through Snakemake with device cuda, only if at
#                                      #     least 5 minutes of the part are left
#
# Both parts write benchmarks/gpu.{json,md} (the second keeps the first's sections: --gpu-keep),
# benchmarks/precision.{json,md,png} and benchmarks/gpu_smoke/ (the smoke run's reports and its log).
# GPU_DRY=1 runs the same commands on the CPU at tiny sizes into $OUT (default: a temporary folder), to check
# the script before a device session.
set -euo pipefail
part=${1:?usage: benchmarks/gpu_session.sh train|sample}
budget=${PART_SECONDS:-540}            # one part's time, under the device's 10-minute command limit
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
say() { echo "[gpu_session $part $(( $(date +%s) - start ))s] $*"; }

if [[ "${GPU_DRY:-0}" == 1 ]]; then
  OUT=${OUT:-$(mktemp -d)}
  bench=(python -m pra bench --gpu-dry-run --config experiments/smoke.yaml --out "$OUT" --gpu-scales tiny-XS
         --gpu-sample-scales tiny-XS --gpu-batch 4 --gpu-reps 2 --gpu-window 2 --gpu-sample-batches 50
         --gpu-eager-batch 10 --gpu-geometry 16,1,4,10 --gpu-ode-steps 3 --gpu-keep)
  smoke_cfg=(--config device=cpu)
else
  OUT=${OUT:-benchmarks}
  bench=(python -m pra bench --device cuda --config experiments/imagenet256.yaml --out "$OUT" --gpu-scales PRA-S PRA-L
         --gpu-sample-scales PRA-S PRA-L --gpu-reps 3 --gpu-window 10 --gpu-eager-batch 256 --gpu-keep)
  smoke_cfg=(--config device=cuda)
fi
mkdir -p "$OUT"
python - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

case "$part" in
  train)
    say "training (PRA-S, PRA-L; compiled vs fast)"
    "${bench[@]}" --gpu-sections training --gpu-modes compiled fast
    ;;
  sample)
    say "sampling (whole images, configured batch, 3 repetitions)"
    "${bench[@]}" --gpu-sections sampling
    if [[ -n "${MODEL:-}" && -n "${CLASSIFIER:-}" && $(left) -gt 60 ]]; then
      say "bf16 vs fp32 on $MODEL (CFG 3)"
      python -m pra bench-precision --model "$MODEL" --classifier "$CLASSIFIER" --cfg-scale 3 \
        --per-class "${PER_CLASS:-100}" --batch-size 500 --out "$OUT/precision"
    else
      say "bf16 on a trained model: skipped (MODEL/CLASSIFIER unset or under 60 s left)"
    fi
    if [[ $(left) -gt 300 ]]; then
      say "smoke pipeline through Snakemake (${smoke_cfg[*]})"
      work=$(mktemp -d)
      timeout $(( $(left) - 20 )) snakemake --snakefile "$PWD/Snakefile" --directory "$work" --cores 4 all \
        --configfile experiments/smoke.yaml "${smoke_cfg[@]}" > "$OUT/gpu_smoke.log" 2>&1 \
        && say "smoke pipeline: done" || say "smoke pipeline: failed or out of time (see $OUT/gpu_smoke.log)"
      mkdir -p "$OUT/gpu_smoke"
      cp -r "$work"/results/smoke/reports/. "$OUT/gpu_smoke/" 2>/dev/null || true
    else
      say "smoke pipeline: skipped ($(left) s left, needs 300)"
    fi
    ;;
  *) echo "unknown part $part (train|sample)"; exit 2 ;;
esac
say "done"

#!/bin/bash
# Train for as many steps as fit in a wall-clock budget, with the cosine schedule run to its end:
# a short bench run measures steps/s, then the real run gets the step count that fits before
# DEADLINE seconds after the start (a TERM at DEADLINE + 15 s stops it cleanly if the estimate was off).
# This is how the shipped `kpn` was trained on a lent GPU (src/burstkpn/pretrained/kpn.md):
#
#   DEADLINE=520 WORKERS=14 OUT=out IMAGES="train/sun_hays80 train/urban100 train/wallpapers24" \
#       scripts/train_in_budget.sh
#
# Env: IMAGES (folders; the first also serves the bench), CONFIG (configs/kpn-gpu.toml), DEADLINE (s),
# WORKERS (burst-synthesis processes), BENCH_STEPS (150), OUT (the run lands in OUT/run, the log in
# OUT/log.txt), EXTRA (more `burstkpn train` flags). Needs `burstkpn` importable (pip install -e . or
# PYTHONPATH=src).
set -u
T0=$(date +%s)
: "${IMAGES:?IMAGES: training photo folders}"
CONFIG=${CONFIG:-configs/kpn-gpu.toml}
DEADLINE=${DEADLINE:-520}
WORKERS=${WORKERS:-14}
BENCH_STEPS=${BENCH_STEPS:-150}
EXTRA=${EXTRA:-}
OUT=${OUT:-budget-run}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
BK="python3 -m burstkpn.cli"
read -r -a FOLDERS <<<"$IMAGES"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; lscpu | grep "Model name";
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; } >>"$LOG" 2>&1
BENCH_DIR=$(mktemp -d)
trap 'rm -rf "$BENCH_DIR"' EXIT
BENCH=$BENCH_DIR/bench
$BK train --images "${FOLDERS[0]}" --out "$BENCH" --config "$CONFIG" --steps "$BENCH_STEPS" --workers "$WORKERS" --quiet $EXTRA >>"$LOG" 2>&1 || { cat "$LOG"; exit 1; }
echo "bench done at $(( $(date +%s) - T0 )) s" >>"$LOG"
STEPS=$(python3 - "$BENCH" "$BENCH_STEPS" "$T0" "$DEADLINE" <<'PY' 2>>"$LOG"
import json, statistics, sys, time
from burstkpn.config import read_toml
bench, bench_steps, t0, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(line) for line in open(f"{bench}/metrics.jsonl") if line.strip()]
rates = [r["samples_per_s"] for r in rows if "samples_per_s" in r and r["step"] > bench_steps // 3]
batch = read_toml(f"{bench}/config.toml")["batch_size"]  # the run's resolved config
steps_per_s = statistics.median(rates) / batch
left = t0 + deadline - time.time() - 40  # image loading, start-up, validations
print(max(100, int(0.95 * steps_per_s * left)))
print(f"bench: {statistics.median(rates):.1f} samples/s -> {steps_per_s:.2f} steps/s, {left:.0f} s left", file=sys.stderr)
PY
)
echo "main run: $STEPS steps" >>"$LOG"
(command -v nvidia-smi >/dev/null && nvidia-smi dmon -s um -d 10 >"$OUT/dmon.txt" 2>&1 &)
NOW=$(date +%s)
timeout --foreground -s TERM $(( T0 + DEADLINE + 15 - NOW )) \
  $BK train --images "${FOLDERS[@]}" --out "$OUT/run" --config "$CONFIG" --steps "$STEPS" --workers "$WORKERS" --quiet $EXTRA >>"$LOG" 2>&1
echo "train rc $? at $(( $(date +%s) - T0 )) s" >>"$LOG"
pkill -f "nvidia-smi dmon" 2>/dev/null || true
tail -1 "$OUT/run/metrics.jsonl" >>"$LOG" 2>/dev/null
cat "$LOG"

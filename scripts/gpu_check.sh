#!/usr/bin/env bash
# The GPU checks, on a machine with an NVIDIA GPU: run from the checkout with what is installed there (numpy,
# cupy for that machine's CUDA, typer, pyyaml, rich, matplotlib, threadpoolctl, pytest; torch with CUDA for the
# comparison): no pip step, no network. Under 5 minutes on an H100/H200. Everything lands in one folder:
#
#   scripts/gpu_check.sh [OUT]          # OUT defaults to gpu-check-<date>
#
#   devices.txt      nvidia-smi, versions, `nncli devices`
#   gpu_tests.txt    pytest -m gpu: every layer, loss and optimizer against the CPU, whole runs, determinism
#   epochs.txt       one seed-CNN epoch (configs/mnist_cnn.yaml) on the GPU at batch 64 and 256: seconds, accuracy;
#                    the batch-256 checkpoint evaluated on the GPU and on the CPU (eval_gpu.json, eval_cpu.json)
#   bench_*.txt      benchmarks/bench.py --device gpu: nncli on CuPy against PyTorch CUDA, alternating, medians
#   summary.txt      the lines that answer the acceptance checks
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0 MPLBACKEND=Agg
PY=${PYTHON:-python3}
status=0

{
    nvidia-smi || true
    "$PY" -c "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"
    "$PY" -c "import cupy; print('cupy', cupy.__version__)" || echo "cupy: not importable"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" || echo "torch: not importable"
    "$PY" -m nncli devices
} > "$OUT/devices.txt" 2>&1
if ! "$PY" -m nncli devices --json | grep -q '"device": "gpu", "usable": true'; then
    echo "no usable GPU here (see $OUT/devices.txt)" | tee "$OUT/summary.txt"
    exit 2
fi

timeout 240 "$PY" -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -o addopts="" > "$OUT/gpu_tests.txt" 2>&1 || status=1

: > "$OUT/epochs.txt"
for batch in 64 256; do
    run="$OUT/runs/cnn-$batch"
    timeout 120 "$PY" -m nncli train configs/mnist_cnn.yaml --device gpu --quiet --out "$run" \
        --set training.epochs=1 --set training.batch_size=$batch >> "$OUT/epochs.txt" 2>&1 || status=1
    "$PY" - "$run" "$batch" >> "$OUT/epochs.txt" 2>&1 <<'EOF' || status=1
import csv, sys
row = list(csv.DictReader(open(f"{sys.argv[1]}/history.csv")))[-1]
print(f"seed CNN, batch {sys.argv[2]}: one epoch on the GPU in {float(row['seconds']):.2f} s, "
      f"train_loss {float(row['train_loss']):.4f}, val_accuracy {float(row['val_accuracy']):.4f}")
EOF
done
for device in gpu cpu; do
    timeout 120 "$PY" -m nncli eval "$OUT/runs/cnn-256/checkpoints/last.npz" --device $device --json \
        > "$OUT/eval_$device.json" 2>> "$OUT/epochs.txt" || status=1
    "$PY" - "$OUT/eval_$device.json" "$device" >> "$OUT/epochs.txt" 2>&1 <<'EOF' || status=1
import json, sys
row = json.loads(open(sys.argv[1]).readline())
print(f"the batch-256 GPU checkpoint evaluated on the {sys.argv[2]}: test accuracy {row['accuracy']:.4f}, loss {row['loss']:.6f}")
EOF
done
rm -rf "$OUT/runs"  # checkpoints are large; the figures are in epochs.txt

for batch in 256 64; do
    timeout 150 "$PY" benchmarks/bench.py configs/mnist_cnn.yaml --device gpu --batch-size $batch --rounds 3 \
        > "$OUT/bench_batch$batch.txt" 2>&1 || status=1
done

{
    echo "gpu tests: $(tail -n 1 "$OUT/gpu_tests.txt")"
    grep -h "one epoch on the GPU" "$OUT/epochs.txt"
    grep -h "GPU checkpoint evaluated" "$OUT/epochs.txt"
    for batch in 256 64; do echo "bench batch $batch: $(grep -h 'train: nncli' "$OUT/bench_batch$batch.txt")"; done
    echo "status: $status (0: every step ran; the figures above answer the thresholds)"
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
exit $status

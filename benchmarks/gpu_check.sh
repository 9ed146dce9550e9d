#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, in under 8 minutes: the CUDA tests, batch invariance on
# CUDA at both dtypes (with cuBLAS's default and its deterministic workspace), and the
# encoding-throughput and default-fit benchmarks on the GPU. Run from the repository root
# with the package installed (pip install -e ".[test]" and a CUDA build of torch):
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]
#
# Each step's output goes to OUT_DIR (default gpu-check/), and a summary table is printed.
set -uo pipefail
out="${1:-gpu-check}"
mkdir -p "$out"
python - <<'PY' | tee "$out/hardware.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
p = torch.cuda.get_device_properties(0)
print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY

step() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    printf '%-28s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - start))" | tee -a "$out/summary.txt"
}

: >"$out/summary.txt"
step cuda-tests 180 python -m pytest -q -p no:cacheprovider -m cuda tests
step invariance-cuda 90 python benchmarks/bench_batch_invariance.py --device cuda --repeats 2
step invariance-cuda-cublas-det 90 env CUBLAS_WORKSPACE_CONFIG=:4096:8 \
    python benchmarks/bench_batch_invariance.py --device cuda --repeats 2
step throughput-cuda 120 python benchmarks/bench_encoding_throughput.py --device cuda \
    --batches 32 256 1024 4096 --repeats 2
step default-fit-cuda 120 python benchmarks/bench_default_fit.py --device cuda

echo
cat "$out/hardware.txt"
for name in invariance-cuda invariance-cuda-cublas-det throughput-cuda default-fit-cuda; do
    echo "== $name"
    tail -n 14 "$out/$name.txt"
done
echo "== cuda-tests"
tail -n 3 "$out/cuda-tests.txt"

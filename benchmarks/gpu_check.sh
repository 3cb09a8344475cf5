#!/usr/bin/env bash
# The GPU check, in one run on a CUDA machine (no network needed): builds the extension
# with its CUDA kernels for the card's architecture, runs the CUDA tests (the kernels
# against the CPU ops, and the contract: the same checks, messages and NaN/inf handling
# on both devices) and the rest of the test suite, runs the GPU benchmarks (the ops
# against torch eager and torch.compile) and prints their summary. Logs and the benchmark
# JSON go to ${OUT:-./gpu_out}; $OUT/results.md gathers the steps and the benchmark
# table in a form to paste into benchmarks/RESULTS.md.
# Every step runs even after a failed one; the exit status is non-zero if any failed.
# Each step has a time limit, shortened where needed so that the whole run ends within
# GPU_CHECK_SECONDS (default 470 s, fits 8 minutes on an H100).
#
#   bash benchmarks/gpu_check.sh          (from anywhere; it works in the repository root)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-470}))
(cd "$OUT" && rm -f env.log build.log smoke.log test_cuda.log test_suite.log bench_gpu.log bench_gpu.json \
  bench_mixed.log bench_mixed.json bench_search.log bench_summary.log steps.tsv results.md)

failed=()
# record NAME STATUS SECONDS: one line of the step table in results.md.
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$OUT/steps.tsv"; }

# limit CAP: seconds a step may run: CAP, or less so that 15 s stay for the summary.
limit() {
  local rest=$((deadline - SECONDS - 15))
  if ((rest < $1)); then
    echo $((rest > 5 ? rest : 5))
  else
    echo "$1"
  fi
}

# step NAME LOG COMMAND...: runs COMMAND, its output shown and appended to $OUT/LOG.
step() {
  local name=$1 log=$OUT/$2
  shift 2
  echo "=== $name"
  local start=$SECONDS
  "$@" 2>&1 | tee -a "$log"
  local status=${PIPESTATUS[0]}
  if [[ $status -eq 0 ]]; then
    echo "=== $name: ok ($((SECONDS - start)) s)"
    record "$name" ok $((SECONDS - start))
  elif [[ $status -eq 124 ]]; then
    echo "=== $name: FAILED, out of time ($((SECONDS - start)) s; log $log)"
    record "$name" "FAILED (out of time)" $((SECONDS - start))
    failed+=("$name")
  else
    echo "=== $name: FAILED with status $status ($((SECONDS - start)) s; log $log)"
    record "$name" "FAILED (status $status)" $((SECONDS - start))
    failed+=("$name")
  fi
}

step "device" env.log nvidia-smi -L
step "environment" env.log "$PYTHON" -c \
  "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

# The build log is long: keep it in the file, show its tail on failure. Only the card's
# own architecture is compiled (one pass of nvcc per source).
arch=${TORCH_CUDA_ARCH_LIST:-$("$PYTHON" -c \
  "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null || echo 9.0)}
echo "=== build (TORCH_CUDA_ARCH_LIST=$arch)"
start=$SECONDS
if CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST=$arch CFLAGS=-g0 MAX_JOBS=16 timeout "$(limit 240)" \
  "$PYTHON" -m pip install --no-build-isolation --no-deps --no-index -e . >"$OUT/build.log" 2>&1; then
  echo "=== build: ok ($((SECONDS - start)) s)"
  record "build (arch $arch)" ok $((SECONDS - start))
else
  echo "=== build: FAILED ($((SECONDS - start)) s; log $OUT/build.log)"
  tail -n 40 "$OUT/build.log"
  record "build (arch $arch)" FAILED $((SECONDS - start))
  failed+=("build")
fi

step "CUDA kernels registered" smoke.log timeout "$(limit 60)" "$PYTHON" -c "
import torch
import proxyfast.ops
h, log10_h = torch.ops.proxyfast.entropy(torch.randn(4, 10, device='cuda'))
ids = torch.ops.proxyfast.weighted_sample(torch.rand(100, device='cuda'), 5, 0, 0)
print('entropy', h.device, h.tolist(), 'sample', ids.device, ids.tolist())
"
step "CUDA tests" test_cuda.log timeout "$(limit 150)" "$PYTHON" -m pytest tests/test_cuda.py tests/test_cuda_mixed.py \
  -v -rs -p no:cacheprovider
# The fused mixed op's supernet step against the reference one (fixed rounds, ~30 s).
step "mixed-op GPU benchmarks" bench_mixed.log timeout "$(limit 90)" "$PYTHON" -m pytest benchmarks/test_bench_mixed.py \
  -k "gpu or cuda" -q -rs -p no:cacheprovider --benchmark-only --benchmark-json="$OUT/bench_mixed.json"
# What a search costs on this card, full data against the 10% proxy, at the paper's shapes
# (JSON with the extrapolated GPU-hours under $OUT/bench_search_*).
step "search cost, CIFAR-10" bench_search.log timeout "$(limit 75)" "$PYTHON" -m proxyfast bench search \
  --setting cifar10 --algo darts --device cuda --quiet --out "$OUT/bench_search_cifar10"
step "search cost, ImageNet" bench_search.log timeout "$(limit 100)" "$PYTHON" -m proxyfast bench search \
  --setting imagenet --algo darts --device cuda --quiet --out "$OUT/bench_search_imagenet"
# The host model of the CUDA sources needs no GPU: CI runs it.
step "test suite" test_suite.log timeout "$(limit 150)" "$PYTHON" -m pytest tests -q -x -rs -p no:cacheprovider \
  --ignore=tests/test_cuda.py --ignore=tests/test_cuda_mixed.py --ignore=tests/test_cuda_host_model.py
step "GPU benchmarks" bench_gpu.log timeout "$(limit 150)" "$PYTHON" -m pytest benchmarks/test_bench_gpu.py \
  benchmarks/test_bench_scoring.py -k "gpu" -q -rs -p no:cacheprovider --benchmark-only --benchmark-max-time=0.5 --benchmark-json="$OUT/bench_gpu.json"
# The extrapolation against a complete small search at CIFAR sizes, if time is left.
step "search cost, validation" bench_search.log timeout "$(limit 60)" "$PYTHON" -m proxyfast bench search \
  --validate --device cuda --examples 4000 --image-size 32 --batch-size 64 --channels 16 --layers 8 \
  --epochs 3 --quiet --out "$OUT/bench_validate"

step "benchmark summary" bench_summary.log "$PYTHON" - "$OUT" "$OUT/bench_gpu.json" "$OUT/bench_mixed.json" <<'PY'
"""Median per benchmark, its ratio to the group's proxyfast reference and, where the
benchmark records the bytes it moves, its bandwidth; where it records its peak memory,
that and its ratio to the reference's. Printed, and written with the steps' outcomes to
results.md (markdown, for benchmarks/RESULTS.md)."""
import datetime
import json
import os
import sys
from collections import defaultdict

out_dir = sys.argv[1]
lines = []


def emit(text=""):
    print(text)
    lines.append(text)


groups = defaultdict(list)
for path in sys.argv[2:]:
    if not os.path.exists(path):
        print(f"(no {path})")
        continue
    for bench in json.load(open(path))["benchmarks"]:
        groups[bench["group"]].append(bench)
for group, benches in groups.items():
    marked = [b for b in benches if b["extra_info"].get("reference")]
    reference = (marked or benches)[0]
    base = reference["stats"]["median"]
    emit(f"\n{group}  (ratio: median / median of {reference['name']})")
    for bench in sorted(benches, key=lambda b: b["stats"]["median"]):
        median = bench["stats"]["median"]
        moved = bench["extra_info"].get("bytes")
        bandwidth = f"{moved / median / 1e9:8.0f} GB/s" if moved else ""
        peak, base_peak = bench["extra_info"].get("peak_bytes"), reference["extra_info"].get("peak_bytes")
        memory = f"peak {peak / 2**20:9.1f} MiB  {peak / base_peak:5.2f}x" if peak and base_peak else ""
        emit(f"  {bench['name']:<48} {median * 1e3:10.3f} ms  {median / base:7.2f}x  {bandwidth}{memory}")

device = "unknown device"
try:
    import torch

    device = f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}"
except Exception:  # the summary is written whatever else failed
    pass
steps = []
if os.path.exists(os.path.join(out_dir, "steps.tsv")):
    steps = [line.rstrip("\n").split("\t") for line in open(os.path.join(out_dir, "steps.tsv"))]
with open(os.path.join(out_dir, "results.md"), "w") as results:
    results.write(f"### GPU check, {datetime.date.today()}: {device}\n\n")
    results.write("| step | outcome | seconds |\n| --- | --- | --- |\n")
    for name, outcome, seconds in steps:
        results.write(f"| {name} | {outcome} | {seconds} |\n")
    results.write("\nBenchmarks (`bash benchmarks/gpu_check.sh`; median, ratio to the group's reference):\n\n```")
    results.write("\n".join(lines) + "\n```\n")
print(f"\n(written to {os.path.join(out_dir, 'results.md')})")
PY

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAILED steps: ${failed[*]}"
  exit 1
fi
echo "all steps passed"

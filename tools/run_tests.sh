#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs every check that needs no GPU: the nvcc compile check
# of the CUDA sources, the C++ kernel tests, the Python tests, and one pass of each
# benchmark (--benchmark-disable: correctness of the benchmark code, not timings).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
PY=.venv/bin/python

# torch.compile's kernel cache in this checkout, not the machine-wide one in /tmp: a
# kernel left there by another checkout, another torch or another ISA setting (the
# AVX2 step below) was seen to abort the benchmark pass when reloaded.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/build/inductor-cache}

echo "== nvcc compile check of csrc/cuda"
PYTHON=$PY bash tools/check_cuda.sh

echo "== C++ kernel tests"
cmake_args=()
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  cmake_args+=(-DPROXYFAST_CUDA=ON -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")
fi
cmake -S . -B build/cmake "${cmake_args[@]}" >/dev/null
cmake --build build/cmake -j "$(nproc)"
ctest --test-dir build/cmake --output-on-failure

# One seed for the whole run, printed first: a failure replays with the same variable.
export PROXYFAST_TEST_SEED=${PROXYFAST_TEST_SEED:-$($PY -c 'import secrets; print(secrets.randbelow(2**32))')}
echo "== Python tests (PROXYFAST_TEST_SEED=$PROXYFAST_TEST_SEED)"
$PY -m pytest tests -q -p no:cacheprovider

# The slow tests (deselected above): the pipeline command end to end on Fashion-MNIST, k-center's O(N) memory.
echo "== slow tests (about four minutes on two cores)"
$PY -m pytest tests -q -p no:cacheprovider -m slow

# Most users' CPUs have no AVX-512: the training tests again on torch's AVX2 code paths,
# where oneDNN's defects differ (see proxyfast/runtime/precision.py), and on proxyfast's
# AVX2 entropy kernel.
echo "== training tests on AVX2 code paths (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 PROXYFAST_CPU_CAPABILITY=avx2)"
ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 PROXYFAST_CPU_CAPABILITY=avx2 \
  TORCHINDUCTOR_CACHE_DIR=$TORCHINDUCTOR_CACHE_DIR-avx2 \
  $PY -m pytest -q -p no:cacheprovider \
  tests/test_runtime.py tests/test_pretrain.py tests/test_forgetting.py tests/test_nas_train.py tests/test_pipeline.py \
  tests/test_score.py

echo "== benchmarks, one untimed pass"
$PY -m pytest benchmarks -q -p no:cacheprovider --benchmark-disable

#!/usr/bin/env bash
# Compile-checks every csrc/cuda/*.cu for sm_80 and sm_90 against the installed torch's headers,
# so the CUDA sources are checked on machines without a GPU or a CUDA build of torch
# (docs/cuda.md). Flags follow torch.utils.cpp_extension's nvcc command line.
# Run from the repository root; PYTHON picks the interpreter that has torch,
# JOBS the number of parallel compiles. Prints one line per file.
set -euo pipefail

PYTHON=${PYTHON:-python}
NVCC=${NVCC:-${CUDA_HOME:-/usr/local/cuda}/bin/nvcc}
JOBS=${JOBS:-$(nproc)}

if ! command -v "$NVCC" >/dev/null; then
  echo "check_cuda: no nvcc at $NVCC (set NVCC or CUDA_HOME)" >&2
  exit 1
fi

mapfile -t torch_flags < <("$PYTHON" - <<'PY'
import sysconfig

import torch
from torch.utils import cpp_extension

for path in cpp_extension.include_paths():
    print(f"-I{path}")
print(f"-I{sysconfig.get_paths()['include']}")
print(f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}")
print("\n".join(cpp_extension.COMMON_NVCC_FLAGS))
PY
)
# mapfile cannot see the interpreter's exit status; an empty list means it failed.
if [[ ${#torch_flags[@]} -eq 0 ]]; then
  echo "check_cuda: could not read torch's include paths with $PYTHON" >&2
  exit 1
fi

flags=(
  -std=c++20 -O3 -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE
  -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90
  -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H -Xcompiler -fPIC -Icsrc
  "${torch_flags[@]}"
)

shopt -s nullglob
sources=(csrc/cuda/*.cu)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "check_cuda: no csrc/cuda/*.cu files (run from the repository root)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

compile() {
  local src=$1 name
  name=$(basename "$src" .cu)
  local start=$SECONDS
  if "$NVCC" "${flags[@]}" -c "$src" -o "$work/$name.o" >"$work/$name.log" 2>&1; then
    echo "ok    $src ($((SECONDS - start)) s)" >"$work/$name.status"
  else
    echo "FAIL  $src ($((SECONDS - start)) s)" >"$work/$name.status"
  fi
}

running=0
for src in "${sources[@]}"; do
  if ((running >= JOBS)); then
    wait -n
    running=$((running - 1))
  fi
  compile "$src" &
  running=$((running + 1))
done
wait

status=0
for src in "${sources[@]}"; do
  name=$(basename "$src" .cu)
  cat "$work/$name.status"
  if grep -q '^FAIL' "$work/$name.status"; then
    sed 's/^/    /' "$work/$name.log"
    status=1
  elif [[ -s "$work/$name.log" ]]; then
    sed 's/^/    /' "$work/$name.log"  # warnings
  fi
done
exit $status

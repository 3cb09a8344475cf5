#!/usr/bin/env bash
# Sets up everything proxyfast needs on a fresh machine: a virtual environment in .venv
# with the CPU build of torch, the build and test tools, and the C++ extension.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

missing=()
for tool in g++ cmake; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing build tools: ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential cmake
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# pip, without the warnings some package mirrors raise for every index entry they lack.
pip_install() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

# torch is pinned to the CPU build of 2.13.0: a looser requirement pulls a multi-GB CUDA build.
pip_install "torch==2.13.0" numpy pybind11 ninja pytest pytest-benchmark scipy matplotlib mpmath
CFLAGS=${CFLAGS:--g0} pip_install --no-build-isolation --no-deps -e .
"$VENV/bin/python" -c "import proxyfast, torch; print('proxyfast', proxyfast.__version__, 'on torch', torch.__version__)"

#!/usr/bin/env bash
# Sets up everything proxyfast needs on a fresh machine: a virtual environment in .venv
# with the CPU build of torch, the build and test tools, and the C++ extension.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# Debian packages: the compilers, FFCV's native dependencies, and the Fashion-MNIST files
# (the project's default real dataset, under /usr/share/datasets/fashion-mnist).
apt_packages=(build-essential cmake pkg-config libturbojpeg0-dev libopencv-dev dataset-fashion-mnist)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
# The optional FFCV loader backend (proxyfast[ffcv]), tested in CI too.
pip_install "ffcv==1.0.2" pillow
# scikit-learn: the 8x8 digits dataset.
pip_install scikit-learn
CFLAGS=${CFLAGS:--g0} pip_install --no-build-isolation --no-deps -e .
"$VENV/bin/python" -c "import proxyfast, torch; print('proxyfast', proxyfast.__version__, 'on torch', torch.__version__)"

#!/usr/bin/env bash
# Sets up everything proxyfast needs on a fresh machine: a virtual environment in .venv
# with the CPU build of torch, the build and test tools, and the C++ extension.
# One line per step, with its time. Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# step "what": prints "setup: what ... " and starts its clock; finish ends the line.
step() {
  printf 'setup: %s ... ' "$1"
  step_start=$SECONDS
}
finish() {
  echo "${1:-done} ($((SECONDS - step_start)) s)"
}

# Debian packages: the compilers, FFCV's native dependencies, and the Fashion-MNIST files
# (the project's default real dataset, under /usr/share/datasets/fashion-mnist).
apt_packages=(build-essential cmake pkg-config libturbojpeg0-dev libopencv-dev dataset-fashion-mnist)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "Debian packages: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  finish
else
  echo "setup: Debian packages: all ${#apt_packages[@]} present"
fi

if [ ! -x "$VENV/bin/python" ]; then
  step "virtual environment $VENV: creating it with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
  finish
else
  echo "setup: virtual environment $VENV: present ($("$VENV/bin/python" --version 2>&1))"
fi
# pip, quiet, without the warnings some package mirrors raise for every index entry they lack.
pip_install() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

# torch is pinned to the CPU build of 2.13.0: a looser requirement pulls a multi-GB CUDA build.
step "pip: torch 2.13.0 (CPU), numpy, the build tools (setuptools, ninja, build) and the test tools"
pip_install "torch==2.13.0" numpy tqdm "setuptools>=77" ninja build pybind11 pytest pytest-benchmark scipy matplotlib mpmath
finish
# The optional FFCV loader backend (proxyfast[ffcv]), tested in CI too; scikit-learn: the 8x8 digits dataset.
step "pip: FFCV 1.0.2, pillow and scikit-learn"
pip_install "ffcv==1.0.2" pillow scikit-learn
finish

# The build against this torch (setup.py: release flags, every CPU, only what changed).
step "building the extension (pip install --no-build-isolation -e .)"
pip_install --no-build-isolation --no-deps -e .
finish "$("$VENV/bin/python" -c "from proxyfast import _build_info; print(_build_info.KERNELS)")"

"$VENV/bin/python" -c "import proxyfast, torch; print('setup: ready: proxyfast', proxyfast.__version__, 'on torch', torch.__version__)"
echo "setup: to type the commands as the README does: source $VENV/bin/activate"

#!/usr/bin/env bash
# The packaging check CI runs after the tests (.ci/run): builds the sdist and, from it,
# the wheel as the README says (python -m build --no-isolation, with the project's
# .venv from tools/setup.sh), checks that the sdist carries every tracked file, installs
# the wheel with its requirements into a fresh virtual environment that has the same
# torch (no other torch may come with it) and runs a smoke test outside the source tree,
# and checks that plain `pip install .` (build isolation) stops within seconds with the
# command to use, without fetching torch.
# Run from anywhere; PY picks the interpreter that builds (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "check_packaging: $*" >&2
  exit 1
}

# run LOG COMMAND...: runs COMMAND with its output in $work/LOG, shown only on failure.
run() {
  local log=$work/$1
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    fail "failed: $* (log above)"
  fi
}

# The sdist is made from a copy of the tracked files as they are now: in the tree itself,
# what earlier builds left (egg-info's list of sources) would fill in what MANIFEST.in misses.
src=$ROOT
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$ROOT" ls-files | grep -v '^\.gitignore$' | while IFS= read -r file; do
    if [[ -e $file ]]; then printf '%s\n' "$file"; fi  # not the tracked files deleted here
  done | sort >"$work/tracked.txt"
  src=$work/src
  mkdir "$src"
  tar -cf - -T "$work/tracked.txt" | tar -xf - -C "$src"
fi

echo "== packaging: sdist, then a wheel from it (python -m build --no-isolation)"
start=$SECONDS
run build.log "$PY" -m build --no-isolation --outdir "$work/dist" "$src"
sdists=("$work"/dist/proxyfast-*.tar.gz)
wheels=("$work"/dist/proxyfast-*.whl)
[[ ${#sdists[@]} -eq 1 && -f ${sdists[0]} && ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] ||
  fail "expected one sdist and one wheel in $work/dist"
echo "built $(basename "${sdists[0]}") and $(basename "${wheels[0]}") in $((SECONDS - start)) s"
grep -m1 '^proxyfast: ' "$work/build.log" || fail "the build did not say which kernels it built"

echo "== packaging: the sdist carries every tracked file"
tar -tzf "${sdists[0]}" | sed 's|^[^/]*/||' | sort -u >"$work/sdist.txt"
if [[ -f $work/tracked.txt ]]; then
  missing=$(comm -23 "$work/tracked.txt" "$work/sdist.txt")
  [[ -z $missing ]] || fail "tracked files missing from the sdist (MANIFEST.in): $missing"
  echo "all $(wc -l <"$work/tracked.txt") tracked files are in the sdist"
else
  echo "not a git checkout: skipped the comparison with the tracked files"
fi
! grep -E '(^|/)_build_info\.py$|\.so$' "$work/sdist.txt" || fail "the sdist carries build outputs"

echo "== packaging: the wheel in a fresh venv outside the source tree"
start=$SECONDS
torch_version=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
"$PY" -m venv "$work/venv"
VPY=$work/venv/bin/python
# torch pinned as in tools/setup.sh (a looser requirement pulls a multi-GB CUDA build);
# then the wheel, whose requirements must keep that torch.
run venv.log "$VPY" -m pip install --disable-pip-version-check "torch==$torch_version"
run install.log "$VPY" -m pip install --disable-pip-version-check "${wheels[0]}"
! grep -iE '(Collecting|Downloading|Using cached) torch' "$work/install.log" ||
  fail "installing the wheel fetched another torch: $(grep -m1 -iE '(Collecting|Downloading|Using cached) torch' "$work/install.log")"
echo "fresh venv with torch $torch_version and the wheel in $((SECONDS - start)) s"

mkdir "$work/elsewhere"
cd "$work/elsewhere"
"$VPY" - "$ROOT" <<'PY'
import os
import sys

import numpy as np
import torch

import proxyfast
from proxyfast import _build_info

root = os.path.realpath(sys.argv[1])
where = os.path.realpath(proxyfast.__file__)
assert not where.startswith(root + os.sep), f"imported the source tree, not the wheel: {where}"
# Two even classes: log 2. A margin of 30: about 31 e^-30, kept to full precision.
entropy, log10_entropy = proxyfast.entropy(torch.tensor([[0.0, 0.0], [30.0, 0.0]]))
assert abs(entropy[0].item() - np.log(2)) < 1e-6, entropy
assert abs(entropy[1].item() / (31 * np.exp(-30)) - 1) < 1e-4, entropy
picked = proxyfast.weighted_sample(torch.tensor([0.0, 1.0, 0.0, 2.0]), k=2, seed=0)
assert sorted(picked.tolist()) == [1, 3], picked
scores = np.random.default_rng(0).lognormal(-3, 2, size=5000)
proxy = proxyfast.select(scores, fraction=0.1, method="p1", bin_width=0.25, seed=0)
assert len(proxy) == 500, len(proxy)
print(f"smoke test: proxyfast {proxyfast.__version__} from {os.path.dirname(where)}; {_build_info.KERNELS}")
PY
"$work/venv/bin/proxyfast" --help >/dev/null || fail "proxyfast --help failed"
"$work/venv/bin/proxyfast" demo --n 10000 --out "$work/demo" | tail -n 3
cd "$ROOT"

echo "== packaging: plain pip install . (build isolation) stops at once, without torch"
start=$SECONDS
status=0
timeout 120 "$VPY" -m pip install -v --disable-pip-version-check "$src" >"$work/isolated.log" 2>&1 || status=$?
elapsed=$((SECONDS - start))
[[ $status -ne 0 && $status -ne 124 ]] || { tail -n 20 "$work/isolated.log"; fail "plain pip install . exited with $status"; }
grep -q 'pip install --no-build-isolation \.' "$work/isolated.log" ||
  { tail -n 20 "$work/isolated.log"; fail "plain pip install . did not name the command to use"; }
! grep -iE '(Collecting|Downloading|Using cached) torch' "$work/isolated.log" ||
  fail "plain pip install . fetched torch into its build environment"
((elapsed <= 60)) || fail "plain pip install . took $elapsed s to stop"
echo "stopped after $elapsed s, fetched no torch: $(grep -m1 -o 'proxyfast builds against.*' "$work/isolated.log")"

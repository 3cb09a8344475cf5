#!/usr/bin/env bash
# Mutation testing (mutmut 3) of proxyfast's Python decision logic, one module at a time,
# each against its own test files only. Not run in CI: minutes per module.
#
#   tools/mutation.sh                 # every module below, in order of importance
#   tools/mutation.sh selection/methods.py baseline/forgetting_events.py
#   MUTATION_TIMEOUT=900 tools/mutation.sh ...   # seconds per module (default 600)
#
# Works on a scratch copy of the committed tree (HEAD) plus the built extension, so the
# working tree is never touched. Prints each module's score and its surviving mutants;
# `mutmut show NAME` in the printed scratch directory shows a mutant's diff.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
MUTMUT=${MUTMUT:-$ROOT/.venv/bin/mutmut}
TIMEOUT=${MUTATION_TIMEOUT:-600}
JOBS=${MUTATION_JOBS:-2}

# module (under proxyfast/) -> the tests that exercise it
declare -A TESTS=(
  [selection/methods.py]="tests/test_selection_exact.py tests/test_sampler_power.py tests/test_select.py"
  [selection/binning.py]="tests/test_binning.py tests/test_selection_exact.py tests/test_proxyset.py"
  [baseline/forgetting_events.py]="tests/test_forgetting.py"
  [selection/forgetting.py]="tests/test_forgetting.py tests/test_selection_exact.py"
  [selection/kcenter.py]="tests/test_kcenter.py tests/test_selection_exact.py"
  [selection/registry.py]="tests/test_registry.py tests/test_select.py tests/test_selection_exact.py"
  [scoring/scores.py]="tests/test_score.py tests/test_scoring.py"
  [loaders/pytorch.py]="tests/test_loaders_torch.py"
  [loaders/_subset.py]="tests/test_loader_subset.py tests/test_loaders_torch.py"
  [nas/architect.py]="$(printf 'tests/test_nas.py::%s ' test_first_order_step_uses_the_paper_defaults \
    test_second_order_step_moves_only_the_alphas test_second_order_gradient_matches_finite_differences \
    test_architect_through_data_parallel test_first_order_step_is_adam_on_the_validation_gradient \
    test_second_order_step_is_adam_on_the_unrolled_gradient test_unrolled_weights_are_the_weight_optimisers_sgd_step \
    test_hessian_vector_product_is_the_central_difference_and_zero_for_a_zero_vector \
    test_architect_state_round_trips_and_errors_are_whole)"
  [nas/search.py]="tests/test_search.py"
)
ORDER=(selection/methods.py selection/binning.py baseline/forgetting_events.py selection/forgetting.py
       selection/kcenter.py selection/registry.py scoring/scores.py loaders/pytorch.py loaders/_subset.py
       nas/architect.py nas/search.py)
[ $# -gt 0 ] && ORDER=("$@")

[ -x "$MUTMUT" ] || { echo "mutation.sh: mutmut is not installed: $PY -m pip install mutmut" >&2; exit 2; }
ls proxyfast/_C*.so >/dev/null 2>&1 || { echo "mutation.sh: build the extension first (tools/setup.sh)" >&2; exit 2; }

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/proxyfast-mutation.XXXXXX")
echo "scratch copies under $SCRATCH"
for module in "${ORDER[@]}"; do
  tests=${TESTS[$module]:-}
  [ -n "$tests" ] || { echo "mutation.sh: no tests listed for $module" >&2; exit 2; }
  work=$SCRATCH/$(echo "$module" | tr '/.' '__')
  mkdir -p "$work"
  git archive HEAD | tar -x -C "$work"
  cp proxyfast/_C*.so proxyfast/_build_info.py "$work/proxyfast/"
  # mutmut skips decorated functions; the selection methods register through a decorator,
  # so in the scratch copy they register after their definition instead (same behaviour).
  "$PY" - "$work/proxyfast/$module" <<'EOF'
import re, sys
path = sys.argv[1]
source = open(path).read()
registrations = re.findall(r'^@register_method\(([^)]*)\)\ndef (\w+)\(', source, flags=re.M)
source = re.sub(r'^@register_method\([^)]*\)\n(?=def )', '', source, flags=re.M)
source += "".join(f"\nregister_method({name})({function})" for name, function in registrations)
open(path, "w").write(source + ("\n" if registrations else ""))
EOF
  {
    echo "[mutmut]"
    echo "source_paths = proxyfast"
    echo "only_mutate = proxyfast/$module"
    # torch is not fork-safe: a mutant forked from the process that ran the tests can hang.
    echo "process_isolation = forkserver"
    printf 'pytest_add_cli_args_test_selection =\n'
    for t in $tests; do echo "    $t"; done
    printf 'pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -q\n'
  } > "$work/setup.cfg"
  echo "== $module ($tests), at most ${TIMEOUT}s"
  status=0
  (cd "$work" && timeout "$TIMEOUT" "$MUTMUT" run --max-children "$JOBS" >"$work/run.log" 2>&1) || status=$?
  [ $status -eq 124 ] && echo "   stopped after ${TIMEOUT}s: the counts below are partial"
  (cd "$work" && "$MUTMUT" results --all true 2>/dev/null) > "$work/results.txt" || true
  killed=$(grep -c ': killed$' "$work/results.txt" || true)
  survived=$(grep -c ': survived$' "$work/results.txt" || true)
  other=$(grep -vcE ': (killed|survived)$' "$work/results.txt" || true)
  total=$((killed + survived))
  echo "   killed $killed, survived $survived, other (timeout, not checked, ...) $other; score $killed/$total"
  grep ': survived$' "$work/results.txt" | sed 's/^/   survived: /' || true
done

#!/usr/bin/env bash
# Search on proxy data against search on all of it, end to end on Fashion-MNIST:
# DARTS (first order) searched on a P1 10% proxy, on a random 10% proxy and on the whole
# training set with the same budget (epochs, network, batch), then the same short final
# training of each found cell, and a summary table of wall times, genotypes and test
# accuracies in $OUT/summary.md. The proxies come from `proxyfast pipeline` (the
# README's main job), run first unless $OUT/pipeline already holds them.
#
#   bash benchmarks/nas_fashion_mnist.sh     (from the repository root, venv active)
#
# The defaults fit a 2-core CPU in about half an hour; every setting is an environment
# variable below. Every step resumes from its checkpoint when the script is rerun.
set -euo pipefail

OUT=${OUT:-out/nas_fashion_mnist}
SEED=${SEED:-0}
SEARCH_EPOCHS=${SEARCH_EPOCHS:-2}
SEARCH_BATCH=${SEARCH_BATCH:-64}
SEARCH_CHANNELS=${SEARCH_CHANNELS:-4}
SEARCH_LAYERS=${SEARCH_LAYERS:-5}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-3}
TRAIN_BATCH=${TRAIN_BATCH:-128}
TRAIN_CHANNELS=${TRAIN_CHANNELS:-8}
TRAIN_LAYERS=${TRAIN_LAYERS:-5}
STEM_STRIDE=${STEM_STRIDE:-2}  # 28x28 -> 14x14 cells: the cost a CPU can afford
IMPL=${IMPL:-reference}        # the supernet's mixed op: reference or fused
THREADS=${THREADS:-1}          # torch threads per process

if [[ ! -f $OUT/pipeline/proxies/p1.proxyset ]]; then
  proxyfast pipeline --out "$OUT/pipeline"
fi

for name in p1 random full; do
  proxy=()
  [[ $name != full ]] && proxy=(--proxy "$OUT/pipeline/proxies/$name.proxyset")
  echo "=== search on $name"
  proxyfast search --dataset fashion-mnist "${proxy[@]}" --algo darts --order 1 --impl "$IMPL" \
    --threads "$THREADS" --epochs "$SEARCH_EPOCHS" --batch-size "$SEARCH_BATCH" \
    --channels "$SEARCH_CHANNELS" --layers "$SEARCH_LAYERS" --stem-stride "$STEM_STRIDE" --seed "$SEED" --quiet \
    --out "$OUT/search_$name"
done

for name in p1 random full; do
  echo "=== final training of the cell found on $name"
  proxyfast train --arch "$OUT/search_$name/genotype.txt" --dataset fashion-mnist \
    --epochs "$TRAIN_EPOCHS" --batch-size "$TRAIN_BATCH" --channels "$TRAIN_CHANNELS" \
    --layers "$TRAIN_LAYERS" --stem-stride "$STEM_STRIDE" --seed "$SEED" --threads "$THREADS" \
    --quiet --out "$OUT/train_$name"
done

python - "$OUT" <<'PY'
import json
import os
import sys

out = sys.argv[1]
rows = ["| searched on | examples searched | search wall time | final test accuracy | genotype |",
        "|---|---:|---:|---:|---|"]
for name in ("p1", "random", "full"):
    with open(os.path.join(out, f"search_{name}", "search_log.json")) as file:
        search = json.load(file)
    with open(os.path.join(out, f"train_{name}", "train_log.json")) as file:
        train = json.load(file)
    examples = search["proxy"]["k"]
    rows.append(f"| {name} | {examples:,} | {search['seconds'] / 60:.1f} min | "
                f"{100 * train['test_accuracy']:.2f}% | `{search['genotype']}` |")
table = "\n".join(rows)
print(table)
with open(os.path.join(out, "summary.md"), "w") as file:
    file.write(table + "\n")
PY

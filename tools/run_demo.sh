#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs the main job on Fashion-MNIST: pretrain a ResNet-20
# baseline, score the 60,000 training images, select a 10% proxy with every method, and
# write the proxies, the per-bin tables and the histogram figure to out/pipeline.
# About 5 minutes on 2 cores; a second run resumes from what the first wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/proxyfast pipeline --out out/pipeline "$@"

#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs the main job: a P1 proxy selected from an
# ImageNet-scale score distribution, with its per-bin table, timing and plot in out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
.venv/bin/proxyfast demo --out out/demo "$@"

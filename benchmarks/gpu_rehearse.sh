#!/usr/bin/env bash
# Rehearse gpu_all.sh here as the GPU machine will run it: a copy of what a device run sends (the
# tracked and untracked-not-ignored files, and the carried .gpu/), a Python that holds only the
# device image's packages (benchmarks/device_env.py: no lplgrad install, no jsonargparse), and
# --small sizes on the CPU. The transcript goes to $OUT/gpu_all.log (default /tmp/gpu_rehearsal).
set -euo pipefail
cd "$(dirname "$0")/.."
bash benchmarks/gpu_prepare.sh  # wheels, Fashion-MNIST and source.txt, as a device run carries them
WORK=$(mktemp -d /tmp/gpu_rehearse.XXXXXX)
ENV_DIR=$WORK/env; TREE=$WORK/tree; mkdir -p "$TREE"
export OUT=${OUT:-/tmp/gpu_rehearsal}; mkdir -p "$OUT"
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$TREE"
cp -r .gpu "$TREE/"
python -m benchmarks.device_env "$ENV_DIR" | cut -c1-200
cd "$TREE"
PYTHON=$ENV_DIR/bin/python bash benchmarks/gpu_all.sh --small

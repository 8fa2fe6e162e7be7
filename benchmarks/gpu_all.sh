#!/usr/bin/env bash
# Every GPU check and measurement of docs/benchmarks.md in one run, in at most 8 minutes:
#   1. correctness on the device (benchmarks/gpu_check.py, run as python -m benchmarks.gpu_check): a 2-round CIFAR-10-config experiment
#      on random images in CIFAR's format through the on-device data path, fp32 and bf16-mixed;
#      the trained weights' scores against the float64 loop; Coreset/BADGE/TypiClust picks
#      scored on the device against the CPU's;
#   2. the whole-protocol cost, lplgrad against the authors' pipeline (CIFAR-10, high budget);
#   3. the query against a training step of the paper's batch (128) and the authors' loop;
#   4. Coreset against the full-matrix running-minimum version (S = 25,000, 512-d);
#   5. training images/s: fp32, TF32 matmul, cudnn.benchmark, bf16-mixed, channels_last, compile;
#   6. the README's Fashion-MNIST run in fp32 and in bf16-mixed, side by side on the GPU.
# Each step has its own time limit and its exit status is kept; the run ends with a table of the
# steps and exits 1 if any failed. All output goes unbuffered to the console and to
# $OUT/gpu_all.log (/tmp/gpu_all.log where OUT is unset).
#
# On a fresh machine with no network: first, where PyPI is reachable, bash benchmarks/gpu_prepare.sh
# (wheels and Fashion-MNIST into .gpu/), then carry .gpu to the GPU machine.
#
#   bash benchmarks/gpu_all.sh             # on a machine with a CUDA GPU
#   bash benchmarks/gpu_all.sh --small     # the same steps on the CPU, sized to check the script
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOG="${OUT:-/tmp}/gpu_all.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if [ "${1:-}" = "--small" ]; then
  DEV=cpu; SMALL=--small
  PROTO=(--small); QUERY=(--models fmnist-config-resnet18-w16-28x28 --n 32 --loop-n 4 --f64-n 2 --reps 1 --loop-reps 1)
  CORESET=(--n 2000 --m 200 --dim 64 --k 100 --repeat 1); FMNIST="--data.budget 200 --loop.epochs_per_round 1 --data.test_size 1000"
  LIMITS=(600 900 300 120 600 900)  # a loaded 2-core CPU: the script is checked, not timed
else
  DEV=cuda; SMALL=
  PROTO=(); QUERY=(--n 2048 --train-batch 128 --loop-n 128 --reps 3 --loop-reps 1)
  CORESET=(--n 25000 --m 5000 --dim 512 --k 1000 --skip-slowest); FMNIST=""
  LIMITS=(55 120 60 40 90 100)  # 465 s in all, and the setup's few seconds
fi

SOURCE=$(git rev-parse --short HEAD 2>/dev/null || cat .gpu/source.txt 2>/dev/null || echo "unknown")
echo "### gpu_all.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname); source $SOURCE; log $LOG"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"

# what the image lacks: the carried wheels, installed beside it (never over it)
SITE=
if ! "$PY" -c "import jsonargparse, docstring_parser, typeshed_client" 2>/dev/null; then
  if ! ls .gpu/wheels/*.whl >/dev/null 2>&1; then
    echo "### jsonargparse[signatures] is missing and .gpu/wheels holds no wheels: run bash benchmarks/gpu_prepare.sh where PyPI is reachable and carry .gpu"
    exit 1
  fi
  SITE=/tmp/lplgrad_site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/wheels/*.whl || exit 1
  echo "### installed into $SITE: $(cd .gpu/wheels && ls *.whl | tr '\n' ' ')"
fi
export PYTHONPATH="${SITE:+$SITE:}$ROOT${PYTHONPATH:+:$PYTHONPATH}"
FMNIST_ROOT=
[ -f .gpu/fashion_mnist/train-images-idx3-ubyte.gz ] && FMNIST_ROOT="--data.dataset.init_args.root $ROOT/.gpu/fashion_mnist"
"$PY" -c "import torch, lightning, lplgrad; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'lightning', lightning.__version__, 'lplgrad from', lplgrad.__file__)" || exit 1

NAMES=(); RCS=(); SECS=()
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo; echo "### $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@"
  local rc=$?
  NAMES+=("$name"); RCS+=("$rc"); SECS+=($((SECONDS - t0)))
  echo "### $name: exit $rc after $((SECONDS - t0)) s"
}

run_fmnist() {  # run_fmnist PRECISION: the README's run, every line prefixed with the precision
  set -o pipefail
  "$PY" -m lplgrad fit --config configs/fashion_mnist.yaml --trainer.accelerator "$DEV" \
    --trainer.precision "$1" --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir "/tmp/gpu_all_fmnist_$1" \
    --trainer.enable_model_summary false --overwrite true $FMNIST_ROOT $FMNIST 2>&1 | sed -u "s/^/[$1] /"
}
fmnist_both() {  # both at once on the one GPU; fails if either fails
  run_fmnist 32-true & local a=$!
  run_fmnist bf16-mixed & local b=$!
  wait "$a"; local ra=$?
  wait "$b"; local rb=$?
  echo "fp32 exit $ra, bf16-mixed exit $rb"
  [ "$ra" = 0 ] && [ "$rb" = 0 ]
}

export PY DEV FMNIST FMNIST_ROOT
export -f run_fmnist fmnist_both  # timeout runs programs, not functions: bash -c fmnist_both

step "1 correctness" "${LIMITS[0]}" "$PY" -m benchmarks.gpu_check --device "$DEV" $SMALL
step "2 protocol cost" "${LIMITS[1]}" "$PY" -m benchmarks.protocol_cost --device "$DEV" "${PROTO[@]}"
step "3 query vs training step" "${LIMITS[2]}" "$PY" -m benchmarks.query_speed --device "$DEV" "${QUERY[@]}"
step "4 coreset" "${LIMITS[3]}" "$PY" -m benchmarks.coreset_speed --device "$DEV" "${CORESET[@]}"
step "5 speed settings" "${LIMITS[4]}" "$PY" -m benchmarks.speed_settings --device "$DEV" $SMALL
step "6 fashion-mnist fp32 and bf16-mixed" "${LIMITS[5]}" bash -c fmnist_both

echo; echo "### summary after $SECONDS s"
failed=0
for i in "${!NAMES[@]}"; do
  rc=${RCS[$i]}; what=ok
  [ "$rc" = 0 ] || { failed=$((failed + 1)); what="FAILED (exit $rc)"; }
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && what="FAILED (time limit)"
  printf '### %-40s %-22s %4d s\n' "${NAMES[$i]}" "$what" "${SECS[$i]}"
done
echo "### $((${#NAMES[@]} - failed)) of ${#NAMES[@]} steps passed"
[ "$failed" = 0 ]

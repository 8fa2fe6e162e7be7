#!/usr/bin/env bash
# Every GPU measurement of docs/benchmarks.md in one run, in at most 8 minutes on one H100:
#   1. the whole-protocol cost, lplgrad against the authors' pipeline (CIFAR-10, high budget);
#   2. the query against a training step of the paper's batch (128) and the authors' loop;
#   3. Coreset against the full-matrix running-minimum version (S = 25,000, 512-d);
#   4. training images/s with fp32, bf16-mixed, channels_last and model.compile;
#   5. one Fashion-MNIST README run in fp32 and one in bf16-mixed (side by side on the GPU).
# Each step has its own time limit, so one slow step cannot eat the others' time.
#
#   bash benchmarks/gpu_all.sh             # on a machine with a CUDA GPU; output on stdout
#   bash benchmarks/gpu_all.sh --small     # the same steps on the CPU, sized to check the script
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--small" ]; then
  DEV=cpu; SMALL=--small
  PROTO=(--small); QUERY=(--models fmnist-config-resnet18-w16-28x28 --n 32 --loop-n 4 --f64-n 2 --reps 1 --loop-reps 1)
  CORESET=(--n 2000 --m 200 --dim 64 --k 100 --repeat 1); FMNIST="--data.budget 200 --loop.epochs_per_round 2"
  LIMITS=(300 300 60 300 300)
else
  DEV=cuda; SMALL=
  PROTO=(); QUERY=(--n 2048 --train-batch 128 --loop-n 128 --reps 3 --loop-reps 1)
  CORESET=(--n 25000 --m 5000 --dim 512 --k 1000 --skip-slowest); FMNIST=""
  LIMITS=(150 75 40 90 120)  # 475 s in all
fi
quiet() { grep -v -E "Seed set|GPU available|TPU available|Tip:|LitLogger|rank_zero|_pytree|UserWarning|warnings.warn|fit_loop|LightningCLI's args|^\s*$|stopped: .max_|check_worker_number|Using bfloat16|cpp_extension"; }
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo; echo "### $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | quiet
  echo "### $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
echo "### gpu_all.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname); git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

step "1 protocol cost" "${LIMITS[0]}" python benchmarks/protocol_cost.py --device "$DEV" "${PROTO[@]}"
step "2 query vs training step" "${LIMITS[1]}" python benchmarks/query_speed.py --device "$DEV" "${QUERY[@]}"
step "3 coreset" "${LIMITS[2]}" python benchmarks/coreset_speed.py --device "$DEV" "${CORESET[@]}"
step "4 speed settings" "${LIMITS[3]}" python benchmarks/speed_settings.py --device "$DEV" $SMALL
run_fmnist() {  # run_fmnist PRECISION: the README's run, its per-round lines prefixed with the precision
  python -m lplgrad fit --config configs/fashion_mnist.yaml --trainer.accelerator "$DEV" \
    --trainer.precision "$1" --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir "/tmp/gpu_all_fmnist_$1" \
    --overwrite true $FMNIST 2>&1 | grep -E "^Round" | sed "s/^/$1  /"
}
fmnist_both() { run_fmnist 32-true & run_fmnist bf16-mixed & wait; }
export DEV FMNIST
export -f run_fmnist fmnist_both
step "5 fashion-mnist fp32 and bf16-mixed" "${LIMITS[4]}" bash -c fmnist_both
echo; echo "### done after $SECONDS s"

#!/usr/bin/env bash
# Run here, where PyPI is reachable, before benchmarks/gpu_all.sh runs on a fresh GPU machine that
# has no network. It fills the git-ignored folder .gpu/ with what that machine's image lacks:
#   .gpu/wheels/         jsonargparse with its [signatures] extras (docstring-parser,
#                        typeshed-client): pure-Python wheels, the versions installed here
#   .gpu/fashion_mnist/  the four Fashion-MNIST IDX files (from the Debian package
#                        dataset-fashion-mnist, or from data/fashion_mnist)
#   .gpu/source.txt      the commit the run's copy was made from
# The device's image has torch, lightning, torchvision, torchmetrics, timm, tensorboard, numpy,
# scipy, scikit-learn, matplotlib, pillow and pyyaml (/work/.library/device/KINDS.md lists them).
# Then carry .gpu with the run:  device run, carry [".gpu"], command: bash benchmarks/gpu_all.sh
#
#   bash benchmarks/gpu_prepare.sh              # wheels for the device's Python 3.12
#   bash benchmarks/gpu_prepare.sh 3.11         # for another Python version
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
DEST=.gpu
rm -rf "$DEST/wheels" && mkdir -p "$DEST/wheels" "$DEST/fashion_mnist"
pins=()
for dist in jsonargparse docstring-parser typeshed-client; do
  version=$(python -c "import importlib.metadata as m; print(m.version('$dist'))" 2>/dev/null) \
    || { echo "gpu_prepare: $dist is not installed here: run bash scripts/setup.sh first"; exit 1; }
  pins+=("$dist==$version")
done
echo "gpu_prepare: downloading ${pins[*]} for Python $PYVER"
python -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST/wheels" "${pins[@]}"
found=0
for dir in /usr/share/datasets/fashion-mnist data/fashion_mnist data/fashion_mnist/FashionMNIST/raw; do
  if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
    cp "$dir"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$DEST/fashion_mnist/" && found=1 && break
  fi
done
[ "$found" = 1 ] || { echo "gpu_prepare: no Fashion-MNIST here: apt-get install dataset-fashion-mnist (scripts/setup.sh does)"; exit 1; }
# the copy a device run sends is no git checkout: say which commit it was made from
echo "git $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with uncommitted changes')" > "$DEST/source.txt"
ls -l "$DEST"/wheels "$DEST"/fashion_mnist
echo "gpu_prepare: $(du -sh "$DEST" | cut -f1) in $DEST (the device run carries at most 64 MiB with the working tree)"

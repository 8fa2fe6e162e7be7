#!/usr/bin/env bash
# Installs what lplgrad needs on a fresh Debian/Ubuntu machine: the Fashion-MNIST package (when
# apt-get is at hand) and lplgrad with its test dependencies, into the current Python.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing Debian package dataset-fashion-mnist"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    || echo "setup: could not install dataset-fashion-mnist; torchvision will download Fashion-MNIST if online"
fi
echo "setup: pip install -e .[test]"
python -m pip install -q -e ".[test]"

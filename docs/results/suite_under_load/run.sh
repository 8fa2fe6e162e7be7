#!/bin/bash
# Five fresh-clone pytest runs in a row beside a CPU-heavy process (issue 22).
HEAD=$(git -C /work/main rev-parse HEAD)
echo "head $HEAD $(date -u)" > /tmp/five/summary.txt
python3 -c "
import hashlib
x=b'x'
while True: x=hashlib.sha256(x).digest()" &
HOG=$!
for i in 1 2 3 4 5; do
  rm -rf /tmp/five/clone$i; git clone -q /work/main /tmp/five/clone$i && git -C /tmp/five/clone$i checkout -q $HEAD
  cd /tmp/five/clone$i
  start=$(date +%s)
  python -m pytest -q -p no:cacheprovider > /tmp/five/pytest$i.log 2>&1
  rc=$?
  echo "run $i rc=$rc $(( $(date +%s)-start ))s $(tail -1 /tmp/five/pytest$i.log)" >> /tmp/five/summary.txt
  cd /tmp; rm -rf /tmp/five/clone$i
done
kill $HOG
echo "done $(date -u)" >> /tmp/five/summary.txt

#!/usr/bin/env bash
# The labelling walkthrough of docs/labeling.md, offline (labels from toy_truth.csv through the CSV):
# three rounds, the third with --resume. Usage: run.sh REPO OUT (REPO: a checkout, e.g. a git worktree of one commit)
set -euo pipefail
REPO=$1; OUT=$2
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"
sed -n '/^# A toy folder: 300/,/^(root \/ "day1"/p' "$REPO/docs/labeling.md" > make_toy_folder.py
python make_toy_folder.py
label() { local n=$1; shift; (cd "$REPO" && python -m lplgrad.label --config configs/label_folder.yaml --images "$OUT/toy_images" \
    --labels "$OUT/labels.csv" --classes circle,square,triangle --out "$OUT/labeling" "$@") > "$OUT/console_$n.txt" 2>&1; }
truth() {  # append the true labels of round $1's proposals
  python - "$1" <<'PY'
import csv, sys
truth = dict(csv.reader(open("toy_truth.csv")))
rows = list(csv.DictReader(open(f"labeling/round_{int(sys.argv[1]):03d}/to_label.csv")))
new = not __import__("os").path.exists("labels.csv")
with open("labels.csv", "a", newline="") as f:
    w = csv.writer(f)
    if new: w.writerow(["path", "label"])
    for r in rows: w.writerow([r["path"], truth[r["path"]]])
PY
}
label 1; truth 1
label 2; truth 2
label 3 --resume
for r in 1 2 3; do echo "round $r: $(sed -n 2,4p labeling/round_00$r/to_label.csv | tr '\n' ' ')"; done

#!/bin/sh
# The README's demo: a hard-voting ensemble of three models' prediction CSVs
# (bundled synthetic samples, 4 images x 29 classes at 512x512), then the
# Dice score of each model and of the ensemble against the ground truth.
#
#   sh tools/demo.sh [BUILD_DIR]      (default build/release)
#
# Outputs go to out/demo/ under the repository root.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build/release}
case $build in /*) ;; *) build=$root/$build ;; esac
osseg=$build/bin/osseg
if [ ! -x "$osseg" ]; then
  echo "demo: $osseg not found: build first (./dev build)" >&2
  exit 1
fi
samples=$root/data/samples/csv
out=$root/out/demo
mkdir -p "$out"
size="--height 512 --width 512"

echo "== osseg ensemble: pixels voted by more than 1 of 3 models =="
# shellcheck disable=SC2086
"$osseg" ensemble $size -o "$out/ensemble.csv" \
  "$samples/model1.csv" "$samples/model2.csv" "$samples/model3.csv"
echo "wrote $out/ensemble.csv ($(($(wc -l <"$out/ensemble.csv") - 1)) rows)"
echo

echo "== mean Dice against the ground truth =="
for m in model1 model2 model3; do
  # shellcheck disable=SC2086
  printf '%-9s %s\n' "$m" "$("$osseg" dice $size "$samples/$m.csv" "$samples/gt.csv" | tail -1 | awk '{print $2}')"
done
echo

echo "== osseg dice: the ensemble, per class =="
# shellcheck disable=SC2086
"$osseg" dice $size "$out/ensemble.csv" "$samples/gt.csv" | tee "$out/dice.txt"
# shellcheck disable=SC2086
"$osseg" dice --json $size "$out/ensemble.csv" "$samples/gt.csv" >"$out/dice.json"
echo
echo "demo: outputs in $out: ensemble.csv, dice.txt, dice.json"

#!/bin/sh
# The README's main job: segment the bundled sample radiographs (synthetic
# phantoms never seen in training) with both demo models through
# `osseg predict`, combine them with `osseg ensemble` (hard voting), and
# score all three against the ground truth with `osseg dice`. Writes the
# submission CSVs, the Dice tables and colour overlays (image | ground truth
# | prediction) to out/demo/, and `osseg overlay` of the first sample with
# every CSV (side by side and TP/FP/FN diff).
#
#   sh tools/demo.sh [BUILD_DIR]      (default build/release)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build/release}
case $build in /*) ;; *) build=$root/$build ;; esac
osseg=$build/bin/osseg
if [ ! -x "$osseg" ]; then
  echo "demo: $osseg not found: build first (./dev build)" >&2
  exit 1
fi
samples=$root/data/samples
models=$root/data/models
out=$root/out/demo
rm -rf "$out"
mkdir -p "$out/overlays"

predicted=""
for name in unetpp segformer; do
  model=$models/${name}_demo.onnx
  [ -f "$model" ] || continue
  echo "== osseg predict: $name demo model on $(ls "$samples/images" | wc -l) sample images =="
  if "$osseg" predict --model "$model" --gt "$samples/gt.csv" \
      --overlay-dir "$out/overlays/$name" -o "$out/$name.csv" "$samples/images"; then
    predicted="$predicted $name"
  else
    echo "demo: $name failed (see above); going on without it" >&2
  fi
  echo
done
[ -n "$predicted" ] || { echo "demo: no model could run" >&2; exit 1; }

# The int8 (QDQ) version of the UNet++ demo model, scored beside it (not
# in the ensemble).
int8=""
if [ -f "$models/unetpp_demo_int8.onnx" ]; then
  echo "== osseg predict --precision int8: the quantized UNet++ demo model =="
  if "$osseg" predict --model "$models/unetpp_demo_int8.onnx" --precision int8 --gt "$samples/gt.csv" \
      -o "$out/unetpp_int8.csv" "$samples/images"; then
    int8=unetpp_int8
  else
    echo "demo: the int8 model failed (see above); going on without it" >&2
  fi
  echo
fi

scored=$predicted
set -- $predicted
if [ $# -ge 2 ]; then
  echo "== osseg ensemble: hard voting of$predicted (pixels voted by both) =="
  csvs=""
  for name in $predicted; do csvs="$csvs $out/$name.csv"; done
  # shellcheck disable=SC2086
  "$osseg" ensemble -o "$out/ensemble.csv" $csvs
  echo "wrote $out/ensemble.csv"
  echo
  scored="$scored ensemble"
fi
if [ -n "$int8" ]; then scored="$scored $int8"; fi

for name in $scored; do
  "$osseg" dice "$out/$name.csv" "$samples/gt.csv" >"$out/dice_$name.txt"
  "$osseg" dice --json "$out/$name.csv" "$samples/gt.csv" >"$out/dice_$name.json"
done

echo "== osseg dice: per class, against the ground truth =="
# One column per model: the tables share their class order (the ground
# truth's), so they can be pasted side by side.
printf '%-12s' class
for name in $scored; do printf ' %10s' "$name"; done
echo
first=$(echo $scored | cut -d' ' -f1)
n=$(wc -l <"$out/dice_$first.txt")
i=2
while [ "$i" -le "$n" ]; do
  cls=$(sed -n "${i}p" "$out/dice_$first.txt" | awk '{print $1}')
  printf '%-12s' "$cls"
  for name in $scored; do
    printf ' %10s' "$(sed -n "${i}p" "$out/dice_$name.txt" | awk '{print $2}')"
  done
  echo
  i=$((i + 1))
done

# One sample drawn with every CSV: side by side, and the TP/FP/FN diff.
first_image=$(ls "$samples/images" | head -n 1)
preds=""
for name in $scored; do preds="$preds --pred $out/$name.csv"; done
# shellcheck disable=SC2086
"$osseg" overlay "$samples/images/$first_image" --gt "$samples/gt.csv" $preds \
  -o "$out/overlay_${first_image%.png}.png"
# shellcheck disable=SC2086
"$osseg" overlay "$samples/images/$first_image" --gt "$samples/gt.csv" $preds --mode diff \
  -o "$out/diff_${first_image%.png}.png"

echo
echo "demo: outputs in $out"
echo "  submission CSVs: $(for name in $scored; do printf '%s.csv ' "$name"; done)"
echo "  Dice tables:     dice_<name>.txt / .json"
echo "  overlays:        $out/overlays/<model>/<image>.overlay.png"
echo "  osseg overlay:   overlay_${first_image%.png}.png, diff_${first_image%.png}.png (all CSVs)"

#!/bin/sh
# Checks that `osseg ensemble` is row-for-row identical to the Python
# reference (csv_ensemble.py, full-resolution numpy masks) on synthetic
# data, and that `osseg dice` agrees with it to 1e-9. Run by hand; needs
# Debian's python3-numpy and python3-pandas.
#
#   sh tools/reference/check_ensemble.sh [BUILD_DIR] [IMAGES]
#      (defaults: build/release, 12 images of 2048x2048)
#
# Data: gen_predictions output, then made harder: model2 loses some rows,
# model3 is in another row order with CRLF line ends, and a hand-made set
# adds names with '_', quotes, commas and "NA", unsorted, overlapping and
# zero-length runs, and rows missing from some files.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build/release}
case $build in /*) ;; *) build=$root/$build ;; esac
images=${2:-12}
osseg=$build/bin/osseg
gen=$build/bin/gen_predictions
py=/usr/bin/python3
ref=$root/tools/reference/csv_ensemble.py
work=$root/out/reference
rm -rf "$work"
mkdir -p "$work"

"$gen" --seed 42 --images "$images" --models 3 "$work"
# model2: drop every 17th data row; model3: reverse the rows, CRLF.
awk 'NR == 1 || (NR % 17) != 0' "$work/model2.csv" >"$work/m2.csv"
{ head -n 1 "$work/model3.csv"; tail -n +2 "$work/model3.csv" | tac; } |
  sed 's/$/\r/' >"$work/m3.csv"

cat >"$work/t1.csv" <<'CSV'
image_name,class,rle
ID001_img_1.png,finger-1,1 3 10 2
ID001_img_1.png,finger-2,
"a,b""c.png",finger-1,5 5
NA,Radius,16 1
"x_y_z.png","Ulna","100 50 120 5 4194300 5"
CSV
cat >"$work/t2.csv" <<'CSV'
image_name,class,rle
"a,b""c.png",finger-1,6 5
ID001_img_1.png,finger-1,11 2 2 3 3 1 7 0
NA,Radius,16 1
x_y_z.png,Ulna,  130 40   1 1 4194290 10
extra_only.png,Ulna,1 1
CSV
cat >"$work/t3.csv" <<'CSV'
image_name,class,rle
ID001_img_1.png,finger-1,1 1
ID001_img_1.png,finger-2,1 2
NA,Radius,1 16
x_y_z.png,Ulna,90 100
CSV

fail=0
check() { # name ref-args osseg-args
  name=$1
  shift
  if cmp -s "$work/ref_$name.csv" "$work/osseg_$name.csv"; then
    echo "check_ensemble: $name: identical ($(($(wc -l <"$work/osseg_$name.csv") - 1)) rows)"
  else
    echo "check_ensemble: $name: DIFFERENT" >&2
    diff "$work/ref_$name.csv" "$work/osseg_$name.csv" | head -5 >&2
    fail=1
  fi
}

for t in default 0 1.5 2; do
  topt=""
  [ "$t" = default ] || topt="--threshold $t"
  # shellcheck disable=SC2086
  $py "$ref" $topt -o "$work/ref_gen_$t.csv" "$work/model1.csv" "$work/m2.csv" "$work/m3.csv"
  # shellcheck disable=SC2086
  "$osseg" ensemble $topt -o "$work/osseg_gen_$t.csv" "$work/model1.csv" "$work/m2.csv" "$work/m3.csv" 2>/dev/null
  check "gen_$t"
  # shellcheck disable=SC2086
  $py "$ref" $topt -o "$work/ref_hand_$t.csv" "$work/t1.csv" "$work/t2.csv" "$work/t3.csv"
  # shellcheck disable=SC2086
  "$osseg" ensemble $topt -o "$work/osseg_hand_$t.csv" "$work/t1.csv" "$work/t2.csv" "$work/t3.csv" 2>/dev/null
  check "hand_$t"
done

# Dice: every class mean and the overall mean within 1e-9.
$py "$ref" --dice "$work/m2.csv" "$work/gt.csv" >"$work/ref_dice.txt"
"$osseg" dice --json "$work/m2.csv" "$work/gt.csv" 2>/dev/null >"$work/osseg_dice.json"
if $py - "$work/ref_dice.txt" "$work/osseg_dice.json" <<'PY'
import json, sys
ref = dict(line.split() for line in open(sys.argv[1]))
got = json.load(open(sys.argv[2]))
worst = abs(float(ref.pop("mean")) - got["mean"])
assert list(ref) == list(got["per_class"]), "class order differs"
for c, v in ref.items():
    worst = max(worst, abs(float(v) - got["per_class"][c]))
print(f"check_ensemble: dice: {len(ref)} classes + mean agree, max difference {worst:.2e}")
sys.exit(0 if worst < 1e-9 else 1)
PY
then :; else fail=1; fi
[ $fail = 0 ] && echo "check_ensemble: all identical" || { echo "check_ensemble: FAILED" >&2; exit 1; }

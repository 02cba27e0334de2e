#!/bin/sh
# int8 against fp32, side by side in one run: osseg fp32 on a bench model,
# osseg int8 on its QDQ version, and ONNX Runtime on both files.
#
#   bench/bench_int8.sh [-r ROUNDS] [-k RUNS] [-t THREADS] [-p convs|ort | -q QDQ.onnx] [NAME]
#
# NAME (default unetpp_r18_1024): bench/models/NAME.onnx (made by
# tools/fixtures/make_bench_models.py) and bench/models/NAME_qdq.onnx
# (tools/fixtures/make_qdq_bench_models.py), or with -p ort
# NAME_qdqort.onnx, quantized where ONNX Runtime's quantize_static puts
# its Q/DQ pairs (make_qdq_bench_models.py --placement ort), which ONNX
# Runtime runs faster than the convs-only file; or with -q any QDQ version
# of NAME.onnx, such as one `osseg quantize` wrote (input:
# NAME.input.npy). Every round runs the four
# configurations one after the other, each as a fresh process with K timed
# runs after a warm-up; the table shows the median over rounds of the
# per-process medians and the ratios. ONNX Runtime: bench/ort (npm ci).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rounds=3
runs=3
threads=2
placement=convs
qfile=
while [ $# -gt 0 ]; do
  case $1 in
    -r) rounds=$2; shift 2 ;;
    -k) runs=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -p) placement=$2; shift 2 ;;
    -q) qfile=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "bench_int8.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
name=${1:-unetpp_r18_1024}
models=$root/bench/models
osseg=$root/build/release/bin/osseg
fp=$models/$name.onnx
case $placement in
  convs) suffix=_qdq ;;
  ort) suffix=_qdqort ;;
  *) echo "bench_int8.sh: -p takes convs or ort, not $placement" >&2; exit 2 ;;
esac
q=$models/$name$suffix.onnx
in=$models/$name$suffix.input.npy
if [ -n "$qfile" ]; then
  q=$(cd "$(dirname "$qfile")" && pwd)/$(basename "$qfile")
  in=$models/$name.input.npy
fi
for f in "$fp" "$q" "$in" "$osseg"; do
  [ -e "$f" ] || { echo "bench_int8.sh: missing $f" >&2; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ort=0
[ -d "$here/ort/node_modules/onnxruntime-node" ] && ort=1
median_ms() { sed -n 's/.*"median_ms": *\([0-9.]*\).*/\1/p' "$1" | head -1; }
for r in $(seq "$rounds"); do
  "$osseg" run-model "$fp" --input "$in" --repeat "$runs" --threads "$threads" --json >"$out/osseg_fp32.$r"
  "$osseg" run-model "$q" --precision int8 --input "$in" --repeat "$runs" --threads "$threads" --json \
    >"$out/osseg_int8.$r"
  if [ $ort = 1 ]; then
    (cd "$here/ort" && node run.js "$fp" --input "$in" --repeat "$runs" --threads "$threads") >"$out/ort_fp32.$r"
    (cd "$here/ort" && node run.js "$q" --input "$in" --repeat "$runs" --threads "$threads") >"$out/ort_qdq.$r"
  fi
  echo "  round $r/$rounds done" >&2
done
med() { # median of the per-process medians of configuration $1
  for f in "$out/$1".*; do median_ms "$f"; done | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# peak resident memory (VmHWM, MiB) of a configuration: the largest over rounds
peak() { for f in "$out/$1".*; do sed -n 's/.*"peak_rss_mb": *\([0-9.]*\).*/\1/p' "$f"; done | sort -g | tail -1; }
f32=$(med osseg_fp32)
i8=$(med osseg_int8)
printf '%s (%s), %d threads, %d rounds x %d runs (medians, ms)\n' "$name" "$(basename "$q")" "$threads" \
  "$rounds" "$runs"
printf 'osseg fp32  %s\nosseg int8  %s   (%.2fx osseg fp32)\n' "$f32" "$i8" "$(echo "$f32 / $i8" | bc -l)"
if [ $ort = 1 ]; then
  of=$(med ort_fp32)
  oq=$(med ort_qdq)
  printf 'ORT fp32    %s   (osseg int8 %.2fx faster)\nORT QDQ     %s   (osseg int8 %.2fx faster)\n' \
    "$of" "$(echo "$of / $i8" | bc -l)" "$oq" "$(echo "$oq / $i8" | bc -l)"
fi
printf 'peak RSS    osseg fp32 %s MiB, osseg int8 %s MiB' "$(peak osseg_fp32)" "$(peak osseg_int8)"
[ $ort = 1 ] && printf ', ORT fp32 %s MiB, ORT QDQ %s MiB' "$(peak ort_fp32)" "$(peak ort_qdq)"
printf '\n'
# which oneDNN kernels ran the int8 convolutions
printf 'int8 convs: %s\n' "$("$osseg" model-info "$q" --precision int8 --steps |
  awk '$3 == "Conv" && $4 == "convolution" {print $6}' | sort | uniq -c | awk '{printf "%s%s x %s", s, $1, $2; s = ", "}')"

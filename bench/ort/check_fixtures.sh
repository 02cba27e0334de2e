#!/bin/sh
# Cross-check every ONNX fixture in tests/data/models (or DIR) with ONNX Runtime:
# runs NAME.onnx on NAME.input.npy and compares with PyTorch's NAME.output.npy.
# Fails when max|ORT - PyTorch| > TOL (default 1e-3) or a mask (logit > 0) differs
# in more than 0.01 % of the pixels.
#   bench/ort/check_fixtures.sh [DIR] [TOL]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/../../tests/data/models}
tol=${2:-1e-3}
fail=0
for m in "$dir"/*.onnx; do
    n=${m%.onnx}
    json=$(node "$here/run.js" "$m" --repeat 1 --warmup 0 --threads 1 \
           --input "$n.input.npy" --ref "$n.output.npy")
    line=$(printf '%s' "$json" | node -e '
        let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
          const r = JSON.parse(s); const tol = parseFloat(process.argv[1]);
          const ok = r.max_abs_diff <= tol && r.mask_agreement >= 0.9999;
          console.log(`${ok ? "ok  " : "FAIL"} ${r.model.padEnd(38)} max_abs_diff ${r.max_abs_diff.toExponential(2)}` +
                      ` (|ref| <= ${r.ref_max_abs.toFixed(2)}) mask_agreement ${r.mask_agreement.toFixed(6)}`);
        });' "$tol")
    echo "$line"
    case $line in FAIL*) fail=1 ;; esac
done
exit $fail

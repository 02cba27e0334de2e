#!/bin/sh
# Engine benchmark: osseg run-model --json on full-size models, side by side
# with ONNX Runtime when bench/ort/run.js is set up.
#
#   bench/bench_engine.sh [BUILD_DIR] [THREADS] [REPEAT] [PRECISIONS] MODEL...
#   e.g. bench/bench_engine.sh build/release 2 5 "fp32 bf16" bench/models/unetpp_r18_512.onnx
#
# Set ORT=0 to skip ONNX Runtime. Prints one JSON line per (model, precision) from osseg, and checks parity
# against MODEL.output.npy (PyTorch logits) when it exists, with python3+numpy.
set -eu
BUILD=${1:-build/release}
THREADS=${2:-2}
REPEAT=${3:-5}
PRECS=${4:-fp32}
shift 4 2>/dev/null || shift $#
OSSEG=$BUILD/bin/osseg
for model in "$@"; do
  base=${model%.onnx}
  for p in $PRECS; do
    inarg=""
    [ -f "$base.input.npy" ] && inarg="--input $base.input.npy"
    out=$(mktemp /tmp/osseg-bench-XXXXXX.npy)
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$THREADS "$OSSEG" run-model "$model" $inarg --output "$out" \
      --precision "$p" --threads "$THREADS" --repeat "$REPEAT" --json
    if [ -f "$base.output.npy" ] && command -v /usr/bin/python3 >/dev/null; then
      /usr/bin/python3 - "$out" "$base.output.npy" "$p" <<'PY'
import sys, numpy as np
a = np.load(sys.argv[1]); b = np.load(sys.argv[2])
rel = float(np.abs(a - b).max() / np.abs(b).max())
mask = float(((a > 0) == (b > 0)).mean())
print('{"parity": "%s", "rel_err": %.3e, "mask_agree": %.6f}' % (sys.argv[3], rel, mask))
PY
    fi
    rm -f "$out"
  done
  if [ "${ORT:-1}" = 1 ] && command -v node >/dev/null && [ -d bench/ort/node_modules ]; then
    # shellcheck disable=SC2086
    node bench/ort/run.js "$model" --repeat "$REPEAT" --threads "$THREADS" $inarg
  fi
done

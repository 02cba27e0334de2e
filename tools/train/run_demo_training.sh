#!/bin/sh
# Trains both demo models one after the other on one core, in the
# background, the way data/models/ was produced:
#
#   nohup nice -n 5 sh tools/train/run_demo_training.sh /work/train-data &
#
# DATA gets train/ (seeds 0..479; 440.. validate), heldout/ (seeds
# 1000000..1000019), cache/, runs/<arch>/{last,best}.pt and runs/<arch>.log.
# Export afterwards with tools/train/export.py (see tools/train/README.md).
set -eu
DATA=${1:-/work/train-data}
HERE=$(cd "$(dirname "$0")" && pwd)
PHANTOM=${PHANTOM:-$HERE/../../build/release/bin/osseg-phantom}
[ -f "$DATA/train/gt.csv" ] || "$PHANTOM" --seed 0 --count 480 --out "$DATA/train"
[ -f "$DATA/heldout/gt.csv" ] || "$PHANTOM" --seed 1000000 --count 20 --out "$DATA/heldout"
mkdir -p "$DATA/runs"
if [ "${SKIP_UNETPP:-0}" != 1 ]; then
  # As the demo model was made: 5 epochs of a 24-epoch cosine schedule,
  # then the schedule shortened to 12 epochs (validation Dice was already
  # 0.93 after 4 epochs, and the core was needed for the SegFormer).
  /usr/bin/python3 "$HERE/train.py" --arch unetpp --data "$DATA/train" \
    --run "$DATA/runs/unetpp" --size 256 --epochs 24 --val-every 4 --stop-after 5 \
    --resume >> "$DATA/runs/unetpp.log" 2>&1
  /usr/bin/python3 "$HERE/train.py" --arch unetpp --data "$DATA/train" \
    --run "$DATA/runs/unetpp" --size 256 --epochs 12 --val-every 2 --resume \
    >> "$DATA/runs/unetpp.log" 2>&1
fi
/usr/bin/python3 "$HERE/train.py" --arch segformer --data "$DATA/train" \
  --run "$DATA/runs/segformer" --size 256 --epochs 14 --val-every 2 --lr 1e-3 --resume \
  >> "$DATA/runs/segformer.log" 2>&1

#!/usr/bin/python3
"""Reference implementation of the competition's csv_ensemble semantics.

Plain numpy/pandas, decoding every mask to full resolution exactly as the
original script did, to check `osseg ensemble` against (see
check_ensemble.sh). Not used by the C test suite; needs Debian's
python3-numpy and python3-pandas (/usr/bin/python3).

Semantics: for each row of the first CSV, in its order, sum the K decoded
masks of that (image_name, class) across the K CSVs and keep the pixels
whose count is > threshold. A row missing or empty in another CSV counts as
an empty mask. Two deliberate fixes over the original script, which osseg
shares:
  - rows are matched on the exact (image_name, class) pair, not on a
    "class_image" string split again on '_' (which broke on names with '_');
  - fields are read as strings (no NaN for empty or "NA"-like values).

  csv_ensemble.py [--threshold T] [--height H] [--width W] -o OUT A.csv B.csv ...
  csv_ensemble.py --dice [--height H] [--width W] PRED.csv GT.csv
"""
import argparse
import sys

import numpy as np
import pandas as pd


def read(path):
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    if list(df.columns) != ["image_name", "class", "rle"]:
        sys.exit(f"{path}: bad header {list(df.columns)}")
    return df


def decode(rle, height, width):
    mask = np.zeros(height * width, dtype=np.uint8)
    s = rle.split()
    starts = np.asarray(s[0::2], dtype=np.int64) - 1
    lengths = np.asarray(s[1::2], dtype=np.int64)
    for lo, n in zip(starts, lengths):
        mask[lo:lo + n] = 1
    return mask


def encode(mask):
    pixels = np.concatenate([[0], mask.astype(np.uint8), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def ensemble(paths, out, threshold, height, width):
    frames = [read(p) for p in paths]
    if threshold is None:
        threshold = len(paths) // 2
    lookups = [dict(zip(zip(f["image_name"], f["class"]), f["rle"])) for f in frames]
    rles = []
    for image, cls in zip(frames[0]["image_name"], frames[0]["class"]):
        total = np.zeros(height * width, dtype=np.int32)
        for table in lookups:
            rle = table.get((image, cls), "")
            if rle.strip():
                total += decode(rle, height, width)
        rles.append(encode(total > threshold))
    result = pd.DataFrame({"image_name": frames[0]["image_name"], "class": frames[0]["class"],
                           "rle": rles})
    result.to_csv(out, index=False, lineterminator="\n")


def dice(pred_path, gt_path, height, width):
    pred, gt = read(pred_path), read(gt_path)
    table = dict(zip(zip(pred["image_name"], pred["class"]), pred["rle"]))
    per_class = {}
    for image, cls, rle in zip(gt["image_name"], gt["class"], gt["rle"]):
        a = decode(rle, height, width).astype(bool)
        b = decode(table.get((image, cls), ""), height, width).astype(bool)
        d = (2 * np.logical_and(a, b).sum() + 1e-4) / (a.sum() + b.sum() + 1e-4)
        per_class.setdefault(cls, []).append(d)
    means = {c: float(np.mean(v)) for c, v in per_class.items()}
    print(f"mean {np.mean(list(means.values())):.12f}")
    for c, m in means.items():
        print(f"{c} {m:.12f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output")
    ap.add_argument("-t", "--threshold", type=float)
    ap.add_argument("--height", type=int, default=2048)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--dice", action="store_true")
    ap.add_argument("csv", nargs="+")
    args = ap.parse_args()
    if args.dice:
        dice(args.csv[0], args.csv[1], args.height, args.width)
    else:
        ensemble(args.csv, args.output, args.threshold, args.height, args.width)


if __name__ == "__main__":
    main()

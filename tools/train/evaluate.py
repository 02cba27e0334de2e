#!/usr/bin/python3
"""Dice per class at full resolution on a phantom folder (PyTorch side).

  /usr/bin/python3 tools/train/evaluate.py --ckpt /work/train-data/runs/unetpp/best.pt \
      --data /work/train-data/heldout [--json out.json] [--markdown]

The reference pipeline of DESIGN.md: image / 255, bilinear resize to the
model size, model, logits upsampled bilinearly (align_corners=False) to the
image size, threshold 0.5, Dice per (image, class) averaged over images,
then over classes. The held-out folder must use seeds from 1,000,000 up.
The C pipeline (`osseg predict` + Dice) is the authoritative measurement;
this is the PyTorch-side number reported in data/models/MODEL_CARD.md.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
import models  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--json")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ck = torch.load(args.ckpt, map_location="cpu")
    model = models.build(ck["arch"])
    model.load_state_dict(ck["model"])
    model.eval()
    names = sorted(dataset.read_gt(args.data), key=lambda n: int(n.rsplit("_", 1)[1]))
    seeds = [int(n.rsplit("_", 1)[1]) for n in names]
    if min(seeds) < 1000000:
        print("warning: %s has seeds below 1,000,000 (training range)" % args.data)
    d = dataset.full_res_dice(model, args.data, names, ck["size"],
                              log=lambda m: print(m, flush=True))
    per_class = d.mean(0)
    print("%s (%s, input %d, epoch %s): mean Dice %.4f over %d images" %
          (args.ckpt, ck["arch"], ck["size"], ck.get("epoch"), per_class.mean(), len(names)))
    if args.markdown:
        print("| class | Dice |\n|---|---|")
        for c, v in zip(dataset.CLASSES, per_class):
            print("| %s | %.4f |" % (c, v))
        print("| **mean** | **%.4f** |" % per_class.mean())
    else:
        for c, v in zip(dataset.CLASSES, per_class):
            print("  %-11s %.4f" % (c, v))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ckpt": args.ckpt, "arch": ck["arch"], "size": ck["size"],
                       "epoch": ck.get("epoch"), "images": names,
                       "mean_dice": float(per_class.mean()),
                       "per_class": {c: float(v) for c, v in zip(dataset.CLASSES, per_class)},
                       "per_image_class": d.tolist()}, f, indent=1)


if __name__ == "__main__":
    main()

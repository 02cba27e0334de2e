#!/usr/bin/python3
"""Train a demo model on osseg-phantom output (CPU, one thread by default).

  nice -n 5 nohup /usr/bin/python3 tools/train/train.py --arch unetpp \
      --data /work/train-data/train --run /work/train-data/runs/unetpp \
      --size 256 --epochs 24 > /work/train-data/runs/unetpp.log 2>&1 &

Training data: the phantoms in --data whose seed is below --val-from are
trained on, the --val-count after it are validated on (all seeds below
1,000,000: seeds from 1,000,000 up are kept for held-out evaluation).
Loss: multi-label BCE (soft area targets) + soft Dice, Adam, cosine
learning-rate decay. Every epoch writes RUN/last.pt (model, optimiser,
epoch, history) so the run can be resumed (--resume) or exported at any
time; every --val-every epochs the model is scored at full resolution
(logits upsampled to 2048, threshold 0.5) and RUN/best.pt keeps the best.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
import models  # noqa: E402


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def loss_fn(logits, target):
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dims = (0, 2, 3)
    inter = (p * target).sum(dims)
    den = p.sum(dims) + target.sum(dims)
    dice = 1 - (2 * inter + 1) / (den + 1)
    return bce + dice.mean(), bce.item(), dice.mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=["unetpp", "segformer"])
    ap.add_argument("--data", required=True, help="osseg-phantom output folder")
    ap.add_argument("--run", required=True, help="folder for checkpoints")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--val-from", type=int, default=440, help="first validation seed")
    ap.add_argument("--val-count", type=int, default=12)
    ap.add_argument("--val-every", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after this epoch (keeping the --epochs schedule); "
                         "resume later, possibly with fewer --epochs to shorten it")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.run, exist_ok=True)
    cache = os.path.join(os.path.dirname(os.path.abspath(args.data)), "cache",
                         os.path.basename(os.path.abspath(args.data)))
    names, imgs, tgts = dataset.build_cache(args.data, args.size, cache, log)
    seeds = np.array([int(n.rsplit("_", 1)[1]) for n in names])
    assert seeds.max() < 1000000, "training data must use seeds below 1,000,000"
    train_idx = np.flatnonzero(seeds < args.val_from)
    val_names = [n for n, s in zip(names, seeds)
                 if args.val_from <= s < args.val_from + args.val_count]
    log("%s: %d training images, %d validation images, input %d" %
        (args.arch, len(train_idx), len(val_names), args.size))

    model = models.build(args.arch)
    log("parameters: %d" % models.count_params(model))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(train_idx) / args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * min(1.0, (s + 1) / 100))
    start_epoch, history, best = 0, [], -1.0
    last = os.path.join(args.run, "last.pt")
    if args.resume and os.path.exists(last):
        ck = torch.load(last)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start_epoch, history, best = ck["epoch"], ck["history"], ck.get("best", -1.0)
        log("resumed at epoch %d" % start_epoch)

    rng = np.random.default_rng(args.seed + start_epoch)
    end_epoch = min(args.epochs, args.stop_after) if args.stop_after else args.epochs
    for epoch in range(start_epoch, end_epoch):
        model.train()
        t0 = time.time()
        order = rng.permutation(train_idx)
        sums = np.zeros(3)
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * args.batch:(b + 1) * args.batch])
            x = torch.from_numpy(np.asarray(imgs[idx]))[:, None].expand(-1, 3, -1, -1)
            y = torch.from_numpy(np.asarray(tgts[idx]).astype(np.float32) / 255.0)
            logits = model(x.contiguous())
            loss, bce, dl = loss_fn(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            sums += (loss.item(), bce, dl)
        sums /= steps_per_epoch
        dt = time.time() - t0
        rec = {"epoch": epoch + 1, "loss": sums[0], "bce": sums[1], "soft_dice_loss": sums[2],
               "seconds": dt, "lr": sched.get_last_lr()[0]}
        log("epoch %d/%d loss %.4f (bce %.4f, dice loss %.4f) %.0fs" %
            (epoch + 1, args.epochs, sums[0], sums[1], sums[2], dt))
        if (epoch + 1) % args.val_every == 0 or epoch + 1 == args.epochs:
            d = dataset.full_res_dice(model, args.data, val_names, args.size)
            per_class = d.mean(0)
            rec["val_dice"] = float(per_class.mean())
            rec["val_dice_per_class"] = {c: float(v) for c, v in zip(dataset.CLASSES, per_class)}
            log("validation Dice at full resolution: %.4f; lowest: %s" % (
                per_class.mean(), ", ".join("%s %.3f" % (dataset.CLASSES[i], per_class[i])
                                            for i in np.argsort(per_class)[:5])))
            if per_class.mean() > best:
                best = float(per_class.mean())
                torch.save({"model": model.state_dict(), "arch": args.arch, "size": args.size,
                            "epoch": epoch + 1, "val_dice": best},
                           os.path.join(args.run, "best.pt"))
        history.append(rec)
        ck = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
              "epoch": epoch + 1, "history": history, "best": best, "arch": args.arch,
              "size": args.size}
        torch.save(ck, last + ".tmp")
        os.replace(last + ".tmp", last)
        with open(os.path.join(args.run, "history.json"), "w") as f:
            json.dump(history, f, indent=1)
    log("done; best validation Dice %.4f" % best)


if __name__ == "__main__":
    main()

"""Reading osseg-phantom output folders (images/*.png + gt.csv) for training.

The model input is prepared exactly as the C pipeline prepares it
(imaging/osseg_imaging.h, osseg_preprocess_gray): image / 255 (or / 65535),
bilinear resize with F.interpolate(align_corners=False, antialias=False),
three identical channels. Targets are the full-resolution masks averaged
over each low-resolution pixel (area resampling): soft targets whose 0.5
level follows the true boundary with sub-pixel accuracy, which is what
lets logits upsampled to 2048 land on the right pixels.

Resized images and targets are cached as .npy next to nothing in the repo:
the cache folder is given by the caller (e.g. /work/train-data/cache).
"""
import csv
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLASSES = ["finger-%d" % i for i in range(1, 20)] + [
    "Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate",
    "Triquetrum", "Pisiform", "Radius", "Ulna"]

csv.field_size_limit(sys.maxsize)


def rle_decode(text, h, w):
    """1-based "start len ..." -> bool mask (h, w)."""
    m = np.zeros(h * w, dtype=bool)
    if text:
        v = np.asarray(text.split(), dtype=np.int64)
        for s, n in zip(v[0::2] - 1, v[1::2]):
            m[s:s + n] = True
    return m.reshape(h, w)


def rle_encode(mask):
    flat = mask.reshape(-1).astype(np.int8)
    d = np.diff(np.concatenate([[0], flat, [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return " ".join("%d %d" % (s + 1, e - s) for s, e in zip(starts, ends))


def read_gt(folder):
    """{image_name: [rle of class 0..28]} in canonical order."""
    gt = {}
    with open(os.path.join(folder, "gt.csv"), newline="") as f:
        r = csv.reader(f)
        header = next(r)
        assert header == ["image_name", "class", "rle"], header
        for name, cls, rle in r:
            # Keys are names without the extension (older phantom folders
            # wrote "phantom_7", current ones "phantom_7.png").
            if name.endswith(".png"):
                name = name[:-4]
            gt.setdefault(name, [None] * len(CLASSES))[CLASSES.index(cls)] = rle
    return gt


def load_gray(path):
    """PNG -> float32 array in [0, 1] (8- or 16-bit gray)."""
    im = Image.open(path)
    if im.mode in ("I;16", "I;16B", "I"):
        a = np.asarray(im, dtype=np.float32) / 65535.0
    else:
        a = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return a


def preprocess(gray01, size):
    """(H, W) float in [0, 1] -> (1, 3, S, S) float32 tensor, as the C side."""
    x = torch.from_numpy(np.ascontiguousarray(gray01))[None, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(1, 3, size, size).contiguous()


def soft_targets(masks, size):
    """(29, H, W) bool -> (29, S, S) float in [0, 1], area-averaged."""
    t = torch.from_numpy(masks.astype(np.float32))[None]
    return F.adaptive_avg_pool2d(t, (size, size))[0]


def build_cache(folder, size, cache_dir, log=print):
    """Returns (names, images (N,S,S) float32, targets (N,29,S,S) uint8 memmaps)."""
    os.makedirs(cache_dir, exist_ok=True)
    gt = read_gt(folder)
    names = sorted(gt, key=lambda n: int(n.rsplit("_", 1)[1]))
    img_path = os.path.join(cache_dir, "images_%d.npy" % size)
    tgt_path = os.path.join(cache_dir, "targets_%d.npy" % size)
    names_path = os.path.join(cache_dir, "names_%d.txt" % size)
    if os.path.exists(names_path) and open(names_path).read().split() == names:
        return names, np.load(img_path, mmap_mode="r"), np.load(tgt_path, mmap_mode="r")
    n = len(names)
    imgs = np.lib.format.open_memmap(img_path + ".tmp.npy", "w+", np.float32, (n, size, size))
    tgts = np.lib.format.open_memmap(tgt_path + ".tmp.npy", "w+", np.uint8,
                                     (n, len(CLASSES), size, size))
    for i, name in enumerate(names):
        a = load_gray(os.path.join(folder, "images", name + ".png"))
        h, w = a.shape
        imgs[i] = preprocess(a, size)[0, 0].numpy()
        masks = np.stack([rle_decode(r, h, w) for r in gt[name]])
        tgts[i] = np.round(soft_targets(masks, size).numpy() * 255).astype(np.uint8)
        if i % 50 == 0:
            log("cache %s: %d/%d" % (folder, i, n))
    imgs.flush()
    tgts.flush()
    del imgs, tgts
    os.replace(img_path + ".tmp.npy", img_path)
    os.replace(tgt_path + ".tmp.npy", tgt_path)
    with open(names_path, "w") as f:
        f.write("\n".join(names))
    return names, np.load(img_path, mmap_mode="r"), np.load(tgt_path, mmap_mode="r")


def dice(a, b):
    """The competition's Dice for two bool masks."""
    inter = np.logical_and(a, b).sum(dtype=np.int64)
    return (2 * inter + 1e-4) / (a.sum(dtype=np.int64) + b.sum(dtype=np.int64) + 1e-4)


@torch.no_grad()
def full_res_dice(model, folder, names, size, log=None):
    """Dice per class at the original resolution: logits upsampled bilinearly
    (align_corners=False), threshold 0.5 (logit > 0), as the C pipeline.
    Returns a (len(names), 29) array."""
    gt = read_gt(folder)
    model.eval()
    out = np.zeros((len(names), len(CLASSES)))
    for i, name in enumerate(names):
        a = load_gray(os.path.join(folder, "images", name + ".png"))
        h, w = a.shape
        logits = model(preprocess(a, size))
        for c in range(len(CLASSES)):
            up = F.interpolate(logits[:, c:c + 1], size=(h, w), mode="bilinear",
                               align_corners=False)[0, 0].numpy() > 0
            out[i, c] = dice(up, rle_decode(gt[name][c], h, w))
        if log:
            log("  %s: mean Dice %.4f" % (name, out[i].mean()))
    return out

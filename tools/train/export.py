#!/usr/bin/python3
"""Export a trained demo model to ONNX for osseg, and check the file.

  /usr/bin/python3 tools/train/export.py --ckpt /work/train-data/runs/unetpp/best.pt \
      --out data/models/unetpp_demo.onnx [--image some_phantom.png]

The graph has one input "input" (1, 3, S, S) float32 and one output
"logits" (1, 29, S, S), opset 13, fixed shapes, batch 1. metadata_props:
  osseg.classes     the 29 class names in canonical order, comma-separated
  osseg.input_size  S
  osseg.normalize   "div255" (image / 255, no mean/std)
  osseg.arch        unetpp | segformer
  osseg.trained_on  what the model was trained on
Before writing, the exported graph is run by tools/train/onnx_ref.py (a
NumPy interpreter of the ONNX operators, independent of PyTorch) on a real
phantom (or a random input) and must reproduce PyTorch's logits within
--atol / --rtol; the file is written only if it does. The check also
refuses operators outside the list the osseg engine supports.
"""
import argparse
import io
import os
import sys
import time

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
import models  # noqa: E402
import onnx_ref  # noqa: E402

ALLOWED_OPS = {"Conv", "Relu", "Add", "Concat", "Resize", "MatMul", "Softmax", "Transpose",
               "Reshape", "ReduceMean", "Sub", "Pow", "Sqrt", "Div", "Mul", "Erf",
               "BatchNormalization", "Constant", "Sigmoid", "Gemm", "Flatten"}


def drop_identities(m):
    """The exporter shares equal initializers through Identity nodes; point
    their consumers at the source instead, so the graph has no Identity."""
    alias = {}
    keep = []
    for n in m.graph.node:
        if n.op_type == "Identity":
            alias[n.output[0]] = alias.get(n.input[0], n.input[0])
        else:
            keep.append(n)
    outputs = {o.name for o in m.graph.output}
    assert not (outputs & set(alias)), "an Identity produces a graph output"
    for n in keep:
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]
    del m.graph.node[:]
    m.graph.node.extend(keep)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--image", help="a phantom PNG to check with (default: random input)")
    ap.add_argument("--atol", type=float, default=2e-3)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--trained-on", default="osseg-phantom seeds 0..439 (2048x2048)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    ck = torch.load(args.ckpt, map_location="cpu")
    arch, size = ck["arch"], ck["size"]
    model = models.build(arch)
    model.load_state_dict(ck["model"])
    model.eval()

    if args.image:
        x = dataset.preprocess(dataset.load_gray(args.image), size)
    else:
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).numpy()
        again = model(x).numpy()
    assert np.array_equal(ref, again), "PyTorch forward is not deterministic"

    buf = io.BytesIO()
    torch.onnx.export(model, x, buf, opset_version=13, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL)
    m = onnx.load_from_string(buf.getvalue())
    drop_identities(m)
    onnx.checker.check_model(m)

    # Structure: one input and one output with the fixed shapes we promise.
    def dims(v):
        return [d.dim_value for d in v.type.tensor_type.shape.dim]
    assert len(m.graph.input) == 1 and dims(m.graph.input[0]) == [1, 3, size, size], \
        "unexpected input %s" % m.graph.input
    assert len(m.graph.output) == 1 and dims(m.graph.output[0]) == [1, 29, size, size], \
        "unexpected output %s" % m.graph.output
    ops = onnx_ref.op_histogram(m)
    bad = sorted(set(ops) - ALLOWED_OPS)
    if bad:
        sys.exit("export.py: operators outside the engine's list: %s" % ", ".join(bad))

    t0 = time.time()
    got = onnx_ref.run(m, {"input": x.numpy()})["logits"]
    err = np.abs(got - ref)
    tol = args.atol + args.rtol * np.abs(ref)
    worst = float(err.max())
    agree = float(((got > 0) == (ref > 0)).mean())
    print("reference run %.1fs: max |onnx - torch| = %.2e, mask agreement %.6f, ops %s" %
          (time.time() - t0, worst, agree, ops))
    if not np.all(err <= tol):
        sys.exit("export.py: the ONNX graph does not reproduce PyTorch (max error %.3e)" % worst)

    def meta(k, v):
        p = m.metadata_props.add()
        p.key, p.value = k, str(v)
    meta("osseg.classes", ",".join(dataset.CLASSES))
    meta("osseg.input_size", size)
    meta("osseg.normalize", "div255")
    meta("osseg.arch", arch)
    meta("osseg.trained_on", args.trained_on)
    if "val_dice" in ck:
        meta("osseg.val_dice", "%.4f" % ck["val_dice"])
    m.producer_name = "osseg tools/train/export.py"
    m.doc_string = ("osseg demo %s, input (1,3,%d,%d) = image/255 in 3 identical channels, "
                    "output (1,29,%d,%d) logits" % (arch, size, size, size, size))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    onnx.save(m, tmp)
    os.replace(tmp, args.out)
    print("wrote %s (%.1f MB)" % (args.out, os.path.getsize(args.out) / 1e6))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Find the first node of an ONNX model where osseg and ONNX Runtime disagree.

    /usr/bin/python3 tools/onnx_bisect.py MODEL.onnx INPUT.npy [--osseg BIN]
                                          [--tol 1e-3] [--precision fp32]

For a model whose output differs from the reference, this bisects over the
float tensors the nodes produce, in file order: each probe cuts the model at
one tensor (onnx.utils.Extractor keeps just the nodes it needs), runs the cut
model through `osseg run-model` and through bench/ort/run.js (ONNX Runtime,
installed by `cd bench/ort && ONNXRUNTIME_NODE_INSTALL=skip npm ci`) on the
same input, and compares max |a - b| / max |b|. A probe that fails to load in
osseg, or gives NaN, counts as a difference. It prints every probe and the
first node whose output is off by more than --tol, with its attributes.

Cutting a model changes which fusions apply (the cut tensor is an output and
must stay), so a difference found here may also be one of those fusions; the
node printed is where to look first. Needs python3-onnx and numpy.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnx.utils
from onnx import shape_inference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("--osseg", default=os.path.join(ROOT, "build", "release", "bin", "osseg"))
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--precision", default="fp32")
    a = ap.parse_args()
    m = shape_inference.infer_shapes(onnx.load(a.model))
    vi = {v.name: v for v in list(m.graph.value_info) + list(m.graph.output)}
    cands = [n.output[0] for n in m.graph.node if n.op_type != "Constant" and n.output and
             n.output[0] in vi and vi[n.output[0]].type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    if not cands:
        sys.exit("onnx_bisect: no float tensors with known types in %s" % a.model)
    tmp = tempfile.mkdtemp(prefix="onnx_bisect.")
    cut, out_o, out_r = (os.path.join(tmp, f) for f in ("cut.onnx", "osseg.npy", "ort.npy"))

    def probe(t):
        onnx.save(onnx.utils.Extractor(m).extract_model([m.graph.input[0].name], [t]), cut)
        r = subprocess.run([a.osseg, "run-model", cut, "--input", a.input, "--output", out_o,
                            "--precision", a.precision], capture_output=True, text=True)
        if r.returncode:
            return float("inf"), "osseg: " + r.stderr.strip()[:200]
        r = subprocess.run(["node", "run.js", cut, "--input", os.path.abspath(a.input), "--output", out_r,
                            "--repeat", "1", "--warmup", "0"], capture_output=True, text=True,
                           cwd=os.path.join(ROOT, "bench", "ort"))
        if r.returncode:
            sys.exit("onnx_bisect: ONNX Runtime failed on %s: %s" % (t, r.stderr.strip()[:300]))
        x, y = np.load(out_o).reshape(-1), np.load(out_r).reshape(-1)
        if x.size != y.size:
            return float("inf"), "sizes %d vs %d" % (x.size, y.size)
        return float(np.abs(x - y).max() / (np.abs(y).max() + 1e-30)), ""

    lo, hi = 0, len(cands) - 1
    e, msg = probe(cands[hi])
    print("output %s: %.3g %s" % (cands[hi], e, msg), flush=True)
    if e <= a.tol:
        print("onnx_bisect: the output agrees within %g" % a.tol)
        return 0
    while lo < hi:
        mid = (lo + hi) // 2
        e, msg = probe(cands[mid])
        print("%5d %s: %.3g %s" % (mid, cands[mid], e, msg), flush=True)
        if e <= a.tol:  # (NaN compares false: a difference)
            lo = mid + 1
        else:
            hi = mid
    node = next(n for n in m.graph.node if n.output and n.output[0] == cands[lo])
    print("first difference at tensor %s, made by:" % cands[lo])
    print(node)
    return 1


if __name__ == "__main__":
    sys.exit(main())

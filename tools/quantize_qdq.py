#!/usr/bin/python3
"""Post-training static quantization of an osseg model into a QDQ ONNX file
(a Python prototype of `osseg quantize`; the C command is still to come).

  /usr/bin/python3 tools/quantize_qdq.py --model data/models/unetpp_demo.onnx \\
      --calib DIR|IMAGE.png... [--calib-count 16] -o OUT.onnx

Calibration: the radiographs go through the model's own preprocessing
(metadata osseg.input_size, osseg.normalize = div255: tools/train/dataset.py's
load_gray and preprocess, as in training and the C pipeline), and tools/train/onnx_ref.py (a NumPy ONNX interpreter) runs the fp32
graph with every Conv input as an extra output; the min/max over the
calibration images gives each Conv input a per-tensor uint8 scale and zero
point. Weights: per output channel, symmetric int8 (scale = max|w| / 127).
The written graph has QuantizeLinear -> DequantizeLinear in front of every
Conv's input and DequantizeLinear of int8 initializers for its weights
(ONNX Runtime's quantize_static QDQ layout, loadable by osseg and ORT), and
keeps the model's metadata_props (plus osseg.quantized).

Use calibration images disjoint from the ones you evaluate on (the phantom
seeds of data/samples are held out; make calibration phantoms with
`osseg-phantom --seed 2000000 --count 16 --out DIR`).
"""
import argparse
import glob
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train"))
import dataset  # noqa: E402
import onnx_ref  # noqa: E402


def load_input(path, size):
    """The model's preprocessing, as training and the C pipeline do it."""
    return dataset.preprocess(dataset.load_gray(path), size).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", nargs="+", required=True)
    ap.add_argument("--calib-count", type=int, default=16)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    m = onnx.load(a.model)
    meta = {p.key: p.value for p in m.metadata_props}
    size = int(meta.get("osseg.input_size", m.graph.input[0].type.tensor_type.shape.dim[2].dim_value))
    if meta.get("osseg.normalize", "div255") != "div255":
        sys.exit("quantize_qdq: only osseg.normalize=div255 models are supported")
    files = []
    for c in a.calib:
        files += sorted(glob.glob(os.path.join(c, "**", "*.png"), recursive=True)) if os.path.isdir(c) else [c]
    files = files[:a.calib_count]
    if not files:
        sys.exit("quantize_qdq: no calibration PNGs")
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    inits = {t.name: t for t in m.graph.initializer}
    # calibration: every conv input as an output of the fp32 graph
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    names = sorted({n.input[0] for n in convs})
    for t in names:
        probe.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    lo = {t: np.inf for t in names}
    hi = {t: -np.inf for t in names}
    for i, f in enumerate(files):
        out = onnx_ref.run(probe, {m.graph.input[0].name: load_input(f, size)})
        for t in names:
            lo[t] = min(lo[t], float(out[t].min()))
            hi[t] = max(hi[t], float(out[t].max()))
        print("calibration %d/%d %s" % (i + 1, len(files), os.path.basename(f)), flush=True)
    nodes, new_inits = [], []
    qdone = {}
    for n in m.graph.node:
        if n.op_type != "Conv":
            nodes.append(n)
            continue
        x = n.input[0]
        if x not in qdone:  # one Q -> DQ per tensor, shared by its convs
            l, h = min(lo[x], 0.0), max(hi[x], 0.0)
            s = max(h - l, 1e-8) / 255.0
            z = int(np.clip(np.round(-l / s), 0, 255))
            sn, zn, qn, dn = x + "_qs", x + "_qz", x + "_q", x + "_dq"
            new_inits += [numpy_helper.from_array(np.array(s, np.float32), sn),
                          numpy_helper.from_array(np.array(z, np.uint8), zn)]
            nodes += [helper.make_node("QuantizeLinear", [x, sn, zn], [qn], name=x + "_Q"),
                      helper.make_node("DequantizeLinear", [qn, sn, zn], [dn], name=x + "_DQ")]
            qdone[x] = dn
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        ws = np.maximum(np.abs(w).reshape(w.shape[0], -1).max(1) / 127.0, 1e-12).astype(np.float32)
        wq = np.clip(np.round(w / ws[:, None, None, None]), -127, 127).astype(np.int8)
        wn = n.input[1] + "_int8"
        new_inits += [numpy_helper.from_array(wq, wn), numpy_helper.from_array(ws, wn + "_s"),
                      numpy_helper.from_array(np.zeros(len(ws), np.int8), wn + "_z")]
        nodes.append(helper.make_node("DequantizeLinear", [wn, wn + "_s", wn + "_z"], [wn + "_dq"],
                                      name=wn + "_DQ", axis=0))
        conv = onnx.NodeProto()
        conv.CopyFrom(n)
        conv.input[0] = qdone[x]
        conv.input[1] = wn + "_dq"
        nodes.append(conv)
    used = {i for n in nodes for i in n.input}
    keep = [t for t in m.graph.initializer if t.name in used]
    g = helper.make_graph(nodes, m.graph.name, m.graph.input, m.graph.output, keep + new_inits)
    q = helper.make_model(g, opset_imports=[helper.make_opsetid("", max(13, m.opset_import[0].version))])
    q.ir_version = m.ir_version
    for p in m.metadata_props:
        q.metadata_props.add(key=p.key, value=p.value)
    q.metadata_props.add(key="osseg.quantized",
                         value="QDQ: uint8 conv inputs (min/max of %d calibration images), int8 "
                               "per-channel weights" % len(files))
    onnx.checker.check_model(q)
    onnx.save(q, a.output)
    print("quantize_qdq: %d convs quantized -> %s" % (len(convs), a.output))


if __name__ == "__main__":
    main()

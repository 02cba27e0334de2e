#!/usr/bin/python3
"""Distinct ONNX node signatures (op type, opset, attributes, inputs) across
a set of models, with the models that use each: the material for an op
fixture that reproduces exactly what an exporter emitted.

A signature is the op type, the model's default-domain opset, every
attribute (ints, floats, strings; tensors as shape) and, per input, either
"const[shape]=values" (an initializer or Constant output; values when at
most 8) or "x[shape]" (a computed tensor, shape from onnx shape inference,
'?' where unknown). Shapes are batch 1, so signatures differ by size; pass
--no-shapes to merge them.

Usage: /usr/bin/python3 tools/onnx_op_signatures.py [--ops Resize,Pad] [--no-shapes]
         [--max-models 6] MODEL.onnx|DIR ...
"""

import argparse
import collections
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference


def shapes_of(model):
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001
        inferred = model
    out = {}
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else "?" for d in t.shape.dim]
    return out


def fmt_vals(a):
    a = np.asarray(a)
    if a.size <= 8:
        v = a.flatten().tolist()
        v = [round(x, 6) if isinstance(x, float) else x for x in v]
        return "=" + str(v)
    return ""


def attr_str(a):
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode()
    elif isinstance(v, list):
        v = [x.decode() if isinstance(x, bytes) else (round(x, 6) if isinstance(x, float) else x)
             for x in v]
    elif isinstance(v, float):
        v = round(v, 6)
    elif isinstance(v, onnx.TensorProto):
        t = numpy_helper.to_array(v)
        v = "tensor%s%s" % (list(t.shape), fmt_vals(t))
    elif isinstance(v, onnx.GraphProto):
        v = "graph"
    return "%s=%s" % (a.name, v)


def signatures(path, ops, with_shapes):
    m = onnx.load(path)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    shp = shapes_of(m) if with_shapes else {}
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    for n in m.graph.node:
        if ops and n.op_type not in ops:
            continue
        ins = []
        for i in n.input:
            if i == "":
                ins.append("<none>")
            elif i in consts:
                c = consts[i]
                ins.append("const%s%s" % (list(c.shape), fmt_vals(c)))
            else:
                ins.append("x%s" % (shp.get(i, "?") if with_shapes else ""))
        outs = ["%s" % (shp.get(o, "?") if with_shapes else "") for o in n.output]
        sig = "%s (opset %d) %s | in: %s%s" % (
            n.op_type, opset, " ".join(sorted(attr_str(a) for a in n.attribute)) or "-",
            ", ".join(ins), (" | out: " + ", ".join(outs)) if with_shapes else "")
        yield n.op_type, sig


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--ops", default="")
    ap.add_argument("--no-shapes", action="store_true")
    ap.add_argument("--max-models", type=int, default=6)
    args = ap.parse_args()
    files = []
    for p in args.paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".onnx"))
        else:
            files.append(p)
    if not files:
        sys.exit("no .onnx files")
    ops = set(filter(None, args.ops.split(",")))
    users = collections.defaultdict(list)
    for f in files:
        name = os.path.basename(f)[:-5]
        seen = set()
        for op, sig in signatures(f, ops, not args.no_shapes):
            if sig not in seen:
                seen.add(sig)
                users[(op, sig)].append(name)
    for (op, sig), names in sorted(users.items()):
        more = "" if len(names) <= args.max_models else " +%d more" % (len(names) - args.max_models)
        print("%s\n    %d models: %s%s" % (sig, len(names), ", ".join(names[:args.max_models]), more))


if __name__ == "__main__":
    main()

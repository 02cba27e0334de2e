"""A small NumPy interpreter for the ONNX graphs the demo models export to.

onnx 1.12 (Debian 12) has no reference runtime and onnxruntime is not in
Debian, so export.py checks its files with this: it runs the graph as
written in the .onnx file (not the PyTorch module) and the result must
match PyTorch's output. It implements only the operators the two demo
architectures produce at opset 13, each from the ONNX specification, and
fails loudly on anything else.
"""
import math

import numpy as np
import onnx
from onnx import numpy_helper


def _attrs(node):
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


def _erf(x):
    # Abramowitz & Stegun 7.1.26 is 1.5e-7 accurate; use the exact math.erf
    # on float64 instead, vectorised (the check is not speed-critical).
    return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(x.dtype)


def _conv(x, w, b, a):
    group = a.get("group", 1)
    strides = a.get("strides", [1, 1])
    dil = a.get("dilations", [1, 1])
    pads = a.get("pads", [0, 0, 0, 0])
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (x.shape[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (x.shape[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, m, oh, ow), np.float32)
    mg = m // group
    for g in range(group):
        xs = x[:, g * cg:(g + 1) * cg]
        ws = w[g * mg:(g + 1) * mg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dil[0]:i * dil[0] + strides[0] * (oh - 1) + 1:strides[0],
                           j * dil[1]:j * dil[1] + strides[1] * (ow - 1) + 1:strides[1]]
                out[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, ws[:, :, i, j],
                                                         optimize=True)
    if b is not None:
        out += b[None, :, None, None]
    return out


def _resize(x, scales, sizes, a):
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    if sizes is not None and len(sizes):
        out_shape = [int(s) for s in sizes]
    else:
        out_shape = [int(math.floor(d * s)) for d, s in zip(x.shape, scales)]
    assert out_shape[:2] == list(x.shape[:2]), "Resize over N or C is not supported"
    ih, iw = x.shape[2:]
    oh, ow = out_shape[2:]
    if sizes is not None and len(sizes):
        sh, sw = oh / ih, ow / iw
    else:
        sh, sw = scales[2], scales[3]

    def src(o, scale, isz, osz):
        o = np.arange(o, dtype=np.float64)
        if ctm == "half_pixel":
            return (o + 0.5) / scale - 0.5
        if ctm == "pytorch_half_pixel":
            return (o + 0.5) / scale - 0.5 if osz > 1 else np.zeros_like(o)
        if ctm == "asymmetric":
            return o / scale
        if ctm == "align_corners":
            return o * (isz - 1) / (osz - 1) if osz > 1 else np.zeros_like(o)
        raise NotImplementedError("Resize coordinate_transformation_mode " + ctm)

    yy, xx = src(oh, sh, ih, oh), src(ow, sw, iw, ow)
    if mode == "nearest":
        nm = a.get("nearest_mode", "round_prefer_floor")
        f = {"floor": np.floor, "ceil": np.ceil,
             "round_prefer_floor": lambda v: np.ceil(v - 0.5),
             "round_prefer_ceil": lambda v: np.floor(v + 0.5)}[nm]
        yi = np.clip(f(yy).astype(int), 0, ih - 1)
        xi = np.clip(f(xx).astype(int), 0, iw - 1)
        return x[:, :, yi][:, :, :, xi]
    if mode == "linear":
        yy = np.clip(yy, 0, None)
        xx = np.clip(xx, 0, None)
        y0 = np.minimum(np.floor(yy).astype(int), ih - 1)
        x0 = np.minimum(np.floor(xx).astype(int), iw - 1)
        y1 = np.minimum(y0 + 1, ih - 1)
        x1 = np.minimum(x0 + 1, iw - 1)
        ly = (yy - y0).astype(np.float32)[:, None]
        lx = (xx - x0).astype(np.float32)[None, :]
        a00 = x[:, :, y0][:, :, :, x0]
        a01 = x[:, :, y0][:, :, :, x1]
        a10 = x[:, :, y1][:, :, :, x0]
        a11 = x[:, :, y1][:, :, :, x1]
        return (a00 * (1 - ly) * (1 - lx) + a01 * (1 - ly) * lx + a10 * ly * (1 - lx) +
                a11 * ly * lx).astype(x.dtype)
    raise NotImplementedError("Resize mode " + mode)


def run(model, inputs):
    """Runs an onnx.ModelProto on {name: array}; returns {output name: array}."""
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env.update(inputs)
    for node in model.graph.node:
        a = _attrs(node)
        x = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Conv":
            y = _conv(x[0], x[1], x[2] if len(x) > 2 else None, a)
        elif op == "BatchNormalization":
            sc, b, mean, var = x[1:5]
            inv = sc / np.sqrt(var + a.get("epsilon", 1e-5))
            y = (x[0] - mean[None, :, None, None]) * inv[None, :, None, None] + b[None, :, None, None]
        elif op == "Relu":
            y = np.maximum(x[0], 0)
        elif op == "Sigmoid":
            y = 1 / (1 + np.exp(-x[0]))
        elif op == "Add":
            y = x[0] + x[1]
        elif op == "Sub":
            y = x[0] - x[1]
        elif op == "Mul":
            y = x[0] * x[1]
        elif op == "Div":
            y = x[0] / x[1]
        elif op == "Pow":
            y = np.power(x[0], x[1])
        elif op == "Sqrt":
            y = np.sqrt(x[0])
        elif op == "Erf":
            y = _erf(x[0])
        elif op == "Concat":
            y = np.concatenate(x, axis=a["axis"])
        elif op == "Resize":
            y = _resize(x[0], x[2] if len(x) > 2 else None, x[3] if len(x) > 3 else None, a)
        elif op == "MatMul":
            y = np.matmul(x[0], x[1])
        elif op == "Gemm":
            A = x[0].T if a.get("transA", 0) else x[0]
            B = x[1].T if a.get("transB", 0) else x[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                y = y + a.get("beta", 1.0) * x[2]
        elif op == "Softmax":
            ax = a.get("axis", -1)
            e = np.exp(x[0] - x[0].max(axis=ax, keepdims=True))
            y = e / e.sum(axis=ax, keepdims=True)
        elif op == "Transpose":
            y = np.transpose(x[0], a.get("perm"))
        elif op == "Reshape":
            shape = [int(s) for s in x[1]]
            shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            y = x[0].reshape(shape)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            y = x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)
        elif op == "ReduceMean":
            y = x[0].mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))
        elif op == "Constant":
            y = numpy_helper.to_array(a["value"]) if "value" in a else None
            if y is None:
                raise NotImplementedError("Constant without a tensor value")
        elif op == "Shape":
            y = np.array(x[0].shape, np.int64)
        elif op == "Gather":
            y = np.take(x[0], x[1], axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            y = x[0]
            for ax in sorted(int(v) for v in x[1]):
                y = np.expand_dims(y, ax)
        elif op == "Squeeze":
            y = np.squeeze(x[0], axis=tuple(int(v) for v in x[1]) if len(x) > 1 else None)
        elif op == "Slice":
            starts, ends = x[1], x[2]
            axes = x[3] if len(x) > 3 and x[3] is not None else range(len(starts))
            steps = x[4] if len(x) > 4 and x[4] is not None else [1] * len(starts)
            sl = [slice(None)] * x[0].ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                sl[int(ax)] = slice(int(s), int(e), int(st))
            y = x[0][tuple(sl)]
        elif op == "Cast":
            y = x[0].astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
        elif op == "Identity":
            y = x[0]
        else:
            raise NotImplementedError("operator %s (node %s) is not implemented" %
                                      (op, node.name))
        if isinstance(y, np.ndarray) and y.dtype == np.float64:
            y = y.astype(np.float32)
        env[node.output[0]] = y
    return {o.name: env[o.name] for o in model.graph.output}


def op_histogram(model):
    h = {}
    for n in model.graph.node:
        h[n.op_type] = h.get(n.op_type, 0) + 1
    return dict(sorted(h.items()))

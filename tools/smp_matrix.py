#!/usr/bin/python3
"""Run every model exported by tools/fixtures/export_smp_matrix.py through
osseg and print the smp coverage matrix (architecture x encoder) as markdown.

For every cell of MODELS/MANIFEST.jsonl with status "ok":
  osseg run-model NAME.onnx --input NAME.input.npy --output TMP.npy  (fp32)
    -> rel = max|osseg - PyTorch| / max|PyTorch|; passes if rel <= --tol (1e-4)
  the same with --precision bf16
    -> fraction of pixels x classes whose thresholded mask (logit > 0) equals
       PyTorch fp32's; flagged when below PyTorch's own autocast-bf16 agreement
       (from the manifest) minus --bf16-slack (0.01), or, where autocast failed,
       below --bf16-min (0.99)
With NAME.output_fp64.npy (exporter --fp64) both osseg and PyTorch fp32 are
also compared with the float64 forward. A failing load is reported with osseg's message (e.g. the unsupported op).

Cell text: "13 ✓ 17 ✓" when every opset passes fp32 ("✓@384": exported at
the exporter's fallback size, see its manifest note); otherwise per opset the
reason (smp n/a, export failed, osseg error, parity off by X); "≈ X": off by
X > --tol against PyTorch fp32 but within --fp64-slack (1.25) times PyTorch
fp32's own error against the float64 forward (exporter --fp64). Per-model
details (rel error, bf16 agreement, osseg message) follow the table and go to
MODELS/RESULTS.jsonl; the table also to MODELS/MATRIX.md.

Usage: /usr/bin/python3 tools/smp_matrix.py [--models bench/models/smp]
         [--osseg build/release/bin/osseg] [--threads 1] [--only PATTERN,...]
         [--no-bf16] [--tol 1e-4] [--bf16-slack 0.01] [--bf16-min 0.99] [--table-only]
         [--skip-done]
--table-only rebuilds the table from MODELS/RESULTS.jsonl without running.
Exit status: 0 always after a complete run (the table is the result), 2 on
usage errors.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools", "fixtures"))
from export_smp_matrix import ARCHS, ENCODERS, EXTRA  # noqa: E402


def run_osseg(osseg, onnx_path, inp, precision, threads, timeout):
    fd, out = tempfile.mkstemp(suffix=".npy", prefix="smp_matrix_")
    os.close(fd)
    cmd = [osseg, "run-model", onnx_path, "--input", inp, "--output", out,
           "--precision", precision, "--threads", str(threads), "--json"]
    t = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, err, so = r.returncode, r.stderr.strip(), r.stdout.strip()
    except subprocess.TimeoutExpired:
        rc, err, so = -1, "timeout after %d s" % timeout, ""
    y = None
    if rc == 0:
        try:
            y = np.load(out)
        except Exception as e:  # noqa: BLE001
            rc, err = -2, "cannot read output: %s" % e
    os.remove(out) if os.path.exists(out) else None
    info = {}
    for line in so.splitlines():
        if line.startswith("{"):
            try:
                info = json.loads(line)
            except ValueError:
                pass
    return rc, err, y, info, time.time() - t


def first_error(err):
    lines = [l for l in err.splitlines() if l.strip()]
    # prefer a line that names an error
    for l in lines:
        if "error" in l.lower() or "unsupported" in l.lower() or "not supported" in l.lower():
            return l.strip()[:300]
    return (lines[0] if lines else "(no message)")[:300]


def short_reason(err):
    """A few words for a matrix cell from osseg's or the exporter's message."""
    m = re.search(r"op (\S+) \(opset \d+\) is not supported", err)
    if m:
        return "op %s unsupported" % m.group(1)
    m = re.search(r"op (\S+) of domain '([^']*)' is not supported", err)
    if m:
        return "op %s (domain %s) unsupported" % (m.group(1), m.group(2))
    m = re.search(r"\((\w+), opset \d+\): (.*)", err)
    if m:
        return "%s: %s" % (m.group(1), m.group(2)[:70])
    m = re.search(r"ONNX export of operator (\w+), ([^.]*)", err)
    if m:
        return "torch.onnx: %s, %s" % (m.group(1), m.group(2)[:50])
    err = re.sub(r"^.*?\.onnx: ", "", err)
    return err[:80]


def check(cell, args):
    name = cell["name"]
    base = os.path.join(args.models, name)
    res = dict(name=name, arch=cell["arch"], encoder=cell["encoder"], opset=cell["opset"],
               export_status=cell["status"], export_error=cell.get("error", ""),
               autocast_bf16_mask_agree=cell.get("autocast_bf16_mask_agree"),
               size=cell.get("size"), note=cell.get("note", ""))
    if cell["status"] != "ok":
        return res
    ref = np.load(base + ".output.npy")
    maxref = float(np.abs(ref).max())
    rc, err, y, info, dt = run_osseg(args.osseg, base + ".onnx", base + ".input.npy", "fp32",
                                     args.threads, args.timeout)
    res.update(fp32_rc=rc, fp32_err=err if rc else "", fp32_ms=info.get("median_ms"),
               max_abs_logit=maxref)
    if rc == 0:
        if y.shape != ref.shape:
            res.update(fp32_ok=False, fp32_note="shape %s vs %s" % (y.shape, ref.shape))
        else:
            d = np.abs(y.astype(np.float64) - ref)
            rel = float(d.max()) / max(maxref, 1e-30)
            res.update(fp32_rel=rel, fp32_ok=bool(rel <= args.tol and np.isfinite(y).all()),
                       fp32_mask_agree=float(((y > 0) == (ref > 0)).mean()))
            if os.path.exists(base + ".output_fp64.npy"):
                # both against the float64 forward: is osseg or PyTorch fp32 further off?
                r64 = np.load(base + ".output_fp64.npy")
                m64 = float(np.abs(r64).max())
                res.update(osseg_vs_fp64_rel=float(np.abs(y - r64).max()) / m64,
                           torch_vs_fp64_rel=float(np.abs(ref - r64).max()) / m64)
    else:
        res.update(fp32_ok=False)
    if not args.no_bf16 and rc == 0:
        rc2, err2, y2, info2, dt2 = run_osseg(args.osseg, base + ".onnx", base + ".input.npy",
                                              "bf16", args.threads, args.timeout)
        res.update(bf16_rc=rc2, bf16_err=err2 if rc2 else "", bf16_ms=info2.get("median_ms"))
        if rc2 == 0 and y2.shape == ref.shape:
            res.update(bf16_mask_agree=float(((y2 > 0) == (ref > 0)).mean()),
                       bf16_rel=float(np.abs(y2.astype(np.float64) - ref).max()) / max(maxref, 1e-30))
    return res


def bf16_flag(r, args):
    """'' when osseg's bf16 masks agree with PyTorch fp32 about as well as
    PyTorch's own autocast bf16 does (no worse than autocast - --bf16-slack),
    or, without an autocast figure, at least --bf16-min; else a short note."""
    if args.no_bf16:
        return ""
    if r.get("bf16_rc", 0) != 0:
        return "bf16 ✗ run"
    b = r.get("bf16_mask_agree")
    if b is None:
        return ""
    pt = r.get("autocast_bf16_mask_agree")
    if isinstance(pt, float):
        return "" if b >= pt - args.bf16_slack else "bf16 %.3f < pt %.3f" % (b, pt)
    return "" if b >= args.bf16_min else "bf16 %.3f" % b


def cell_text(rs, args):
    """Text of one matrix cell from its per-opset results."""
    if not rs:
        return "—"
    if all(r["export_status"] == "unsupported" for r in rs):
        return "n/a (smp)"
    parts = []
    notes = []
    for r in sorted(rs, key=lambda r: r["opset"]):
        o = r["opset"]
        if r["export_status"] != "ok":
            parts.append("%d ✗ export" % o)
            notes.append(short_reason(r["export_error"]))
        elif r.get("fp32_rc", 0) != 0:
            parts.append("%d ✗" % o)
            notes.append(short_reason(first_error(r.get("fp32_err", ""))))
        elif not r.get("fp32_ok") and "osseg_vs_fp64_rel" in r and \
                r["osseg_vs_fp64_rel"] <= max(args.fp64_slack * r["torch_vs_fp64_rel"], args.tol):
            # over --tol against PyTorch fp32, but about as close to the float64
            # forward as PyTorch fp32 itself: rounding noise, not a bug
            parts.append("%d ≈%s %.1e" % (o, "@%d" % r["size"] if r.get("note") else "", r["fp32_rel"]))
        elif not r.get("fp32_ok"):
            parts.append("%d ✗ parity %.1e" % (o, r.get("fp32_rel", float("nan"))))
        else:
            s = "%d ✓" % o
            if r.get("note"):
                s += "@%d" % r["size"]
            if bf16_flag(r, args):
                s += " (%s)" % bf16_flag(r, args)
            parts.append(s)
    text = " ".join(parts)
    uniq = list(dict.fromkeys(n for n in notes if n))
    if uniq:
        text += ": " + "; ".join(uniq)
    return text.replace("|", "\\|")


def table(results, args):
    by = collections.defaultdict(list)
    for r in results:
        by[(r["arch"], r["encoder"])].append(r)
    encs = ENCODERS + [e for _, e in EXTRA if e not in ENCODERS]
    lines = ["| arch \\ encoder | " + " | ".join(encs) + " |",
             "|---|" + "---|" * len(encs)]
    for a in ARCHS:
        row = [cell_text(by.get((a, e), []), args) for e in encs]
        lines.append("| %s | %s |" % (a, " | ".join(row)))
    return "\n".join(lines)


def details(results):
    out = ["", "| model | fp32 rel err | fp32 mask agree | bf16 mask agree | bf16 rel err "
               "| pt autocast mask agree | fp32 ms | bf16 ms | note |",
           "|---|---|---|---|---|---|---|---|---|"]
    f = lambda v, fmt: (fmt % v) if isinstance(v, (int, float)) else "-"  # noqa: E731
    for r in sorted(results, key=lambda r: r["name"]):
        if r["export_status"] == "unsupported":
            continue
        note = r.get("note", "")[:60]
        if r["export_status"] != "ok":
            note = "export: " + r["export_error"][:200]
        elif r.get("fp32_rc", 0) != 0:
            note = "osseg: " + first_error(r.get("fp32_err", ""))
        elif "osseg_vs_fp64_rel" in r:
            note = "vs float64: osseg %.2e, PyTorch fp32 %.2e" % (r["osseg_vs_fp64_rel"],
                                                                  r["torch_vs_fp64_rel"])
        elif r.get("bf16_rc", 0) != 0:
            note = "bf16 osseg: " + first_error(r.get("bf16_err", ""))
        pt = r.get("autocast_bf16_mask_agree")
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["name"], f(r.get("fp32_rel"), "%.2e"), f(r.get("fp32_mask_agree"), "%.5f"),
            f(r.get("bf16_mask_agree"), "%.5f"), f(r.get("bf16_rel"), "%.2e"),
            f(pt, "%.5f") if not isinstance(pt, str) else "failed",
            f(r.get("fp32_ms"), "%.0f"), f(r.get("bf16_ms"), "%.0f"), note.replace("|", "\\|")))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=os.path.join(REPO, "bench", "models", "smp"))
    ap.add_argument("--osseg", default=os.path.join(REPO, "build", "release", "bin", "osseg"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--bf16-min", type=float, default=0.99)
    ap.add_argument("--bf16-slack", type=float, default=0.01)
    ap.add_argument("--fp64-slack", type=float, default=1.25,
                    help="'≈' when osseg's error against float64 is at most this times PyTorch fp32's")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--skip-done", action="store_true",
                    help="skip models already in RESULTS.jsonl (run beside a running export)")
    args = ap.parse_args()

    resfile = os.path.join(args.models, "RESULTS.jsonl")
    old = {}
    if os.path.exists(resfile):
        for line in open(resfile):
            if line.strip():
                r = json.loads(line)
                old[r["name"]] = r
    if not args.table_only:
        if not os.access(args.osseg, os.X_OK):
            sys.exit("no osseg binary at %s (build first, or --osseg)" % args.osseg)
        cells = [json.loads(l) for l in open(os.path.join(args.models, "MANIFEST.jsonl")) if l.strip()]
        pats = [p.lower() for p in args.only.split(",") if p]
        for c in cells:
            if pats and not any(p in c["name"] for p in pats):
                continue
            if args.skip_done and c["name"] in old:
                continue
            r = check(c, args)
            old[r["name"]] = r
            st = ("fp32 rel %.2e %s" % (r["fp32_rel"], "ok" if r["fp32_ok"] else "FAIL")
                  if "fp32_rel" in r else (first_error(r.get("fp32_err", "")) if r.get("fp32_rc")
                                           else r["export_status"]))
            if r.get("bf16_mask_agree") is not None:
                st += ", bf16 masks %.5f" % r["bf16_mask_agree"]
            print("%-48s %s" % (r["name"], st), file=sys.stderr, flush=True)
            with open(resfile + ".tmp", "w") as f:
                for k in sorted(old):
                    f.write(json.dumps(old[k], sort_keys=True) + "\n")
            os.replace(resfile + ".tmp", resfile)
    results = list(old.values())
    md = table(results, args) + "\n" + details(results) + "\n"
    with open(os.path.join(args.models, "MATRIX.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()

#!/bin/sh
# Compare osseg's engine with ONNX Runtime (CPU EP) on the full-size models in
# bench/models (made by tools/fixtures/make_bench_models.py).
#
#   bench/compare_ort.sh [-r ROUNDS] [-k RUNS] [-t THREADS] [-p fp32|bf16]
#                        [-d MODEL_DIR] [-b OSSEG_BIN] [-o OUT_DIR] [--ort-only]
#                        [--osseg-only] [--no-parity] [MODEL.onnx | NAME ...]
#   bench/compare_ort.sh --summarize OUT_DIR   (table of an earlier run)
#
# For every model the two engines are run alternately, ROUNDS times (default 3):
#   node bench/ort/run.js MODEL --repeat K --warmup 1 --threads T --input NAME.input.npy
#   osseg run-model MODEL --repeat K --threads T --json --input NAME.input.npy
# (K = RUNS per process, default 2; osseg warms up once itself when K > 1), each
# as a fresh process so that both pay for their own load.  The table shows the
# median of the per-process medians, the min of the mins, ORT/osseg (> 1 means
# osseg is faster) and peak RSS (VmHWM).  Parity against PyTorch's
# NAME.output.npy is computed from the first round's outputs (--output):
# max |logit - ref| and the agreement of the masks logit > 0 (threshold 0.5).
# Raw JSON lines go to OUT_DIR/results.jsonl.
#
# Models missing from bench/models: run tools/fixtures/make_bench_models.py.
# ORT missing: (cd bench/ort && ONNXRUNTIME_NODE_INSTALL=skip npm ci).
# osseg missing (build/release/bin/osseg): only the ORT half is run.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rounds=3
runs=2
threads=2
precision=fp32
model_dir=$root/bench/models
osseg=$root/build/release/bin/osseg
out_dir=
do_ort=1
do_osseg=1
parity=1
summarize_only=0
py=/usr/bin/python3
per_process_timeout=${COMPARE_TIMEOUT:-3600}

usage() {
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

while [ $# -gt 0 ]; do
    case $1 in
        -r) rounds=$2; shift 2 ;;
        -k) runs=$2; shift 2 ;;
        -t) threads=$2; shift 2 ;;
        -p) precision=$2; shift 2 ;;
        -d) model_dir=$2; shift 2 ;;
        -b) osseg=$2; shift 2 ;;
        -o) out_dir=$2; shift 2 ;;
        --ort-only) do_osseg=0; shift ;;
        --osseg-only) do_ort=0; shift ;;
        --no-parity) parity=0; shift ;;
        --summarize) summarize_only=1; out_dir=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        --) shift; break ;;
        -*) echo "compare_ort.sh: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
case $rounds$runs$threads in *[!0-9]*) echo "compare_ort.sh: -r/-k/-t need integers" >&2; exit 2 ;; esac
[ "$rounds" -ge 1 ] && [ "$runs" -ge 1 ] && [ "$threads" -ge 1 ] || { echo "compare_ort.sh: -r/-k/-t must be >= 1" >&2; exit 2; }

if [ "$summarize_only" = 1 ]; then
    [ -s "$out_dir/results.jsonl" ] || { echo "compare_ort.sh: no $out_dir/results.jsonl" >&2; exit 2; }
fi

# model list
models=
if [ "$summarize_only" = 1 ]; then
    :
elif [ $# -eq 0 ]; then
    for m in "$model_dir"/*.onnx; do
        [ -e "$m" ] && models="$models $m"
    done
    [ -n "$models" ] || { echo "compare_ort.sh: no models in $model_dir (run tools/fixtures/make_bench_models.py)" >&2; exit 2; }
else
    for a in "$@"; do
        case $a in
            *.onnx) m=$a ;;
            *) m=$model_dir/$a.onnx ;;
        esac
        [ -e "$m" ] || { echo "compare_ort.sh: no such model: $m" >&2; exit 2; }
        models="$models $m"
    done
fi

if [ "$summarize_only" = 0 ] && [ "$do_ort" = 1 ] && [ ! -d "$here/ort/node_modules/onnxruntime-node" ]; then
    echo "compare_ort.sh: ONNX Runtime not installed: (cd bench/ort && ONNXRUNTIME_NODE_INSTALL=skip npm ci)" >&2
    exit 2
fi
if [ "$summarize_only" = 0 ] && [ "$do_osseg" = 1 ] && [ ! -x "$osseg" ]; then
    echo "compare_ort.sh: $osseg not built: running the ORT half only" >&2
    do_osseg=0
fi

[ -n "$out_dir" ] || out_dir=$(mktemp -d "${TMPDIR:-/tmp}/osseg-compare.XXXXXX")
mkdir -p "$out_dir"
results=$out_dir/results.jsonl
[ "$summarize_only" = 1 ] || : > "$results"
[ "$summarize_only" = 1 ] || echo "compare_ort.sh: rounds=$rounds runs/process=$runs threads=$threads precision=$precision -> $results" >&2

# tag a JSON line (or an error) with engine/model/round and append it
record() { # engine name round status json_or_message
    $py - "$1" "$2" "$3" "$4" "$5" >> "$results" <<'EOF'
import json, sys
engine, name, rnd, status, payload = sys.argv[1:6]
rec = {"engine": engine, "name": name, "round": int(rnd), "status": status}
if status == "ok":
    try:
        rec.update(json.loads(payload.strip().splitlines()[-1]))
    except Exception as e:  # not JSON: keep the text
        rec.update(status="bad-json", message=payload[-2000:])
else:
    rec["message"] = payload[-2000:]
print(json.dumps(rec))
EOF
}

run_one() { # engine model name round
    engine=$1 m=$2 name=$3 rnd=$4
    inp=${m%.onnx}.input.npy
    set -- 
    [ -e "$inp" ] && set -- --input "$inp"
    outp=
    if [ "$parity" = 1 ] && [ "$rnd" = 1 ]; then
        outp=$out_dir/$name.$engine.npy
        rm -f "$outp"
        set -- "$@" --output "$outp"
    fi
    err=$out_dir/$name.$engine.r$rnd.stderr
    if [ "$engine" = ort ]; then
        if out=$(timeout "$per_process_timeout" node "$here/ort/run.js" "$m" --repeat "$runs" \
                 --warmup 1 --threads "$threads" "$@" 2>"$err"); then
            record ort "$name" "$rnd" ok "$out"
        else
            record ort "$name" "$rnd" "failed" "$(tail -c 2000 "$err")"
            [ -z "$outp" ] || rm -f "$outp"
        fi
    else
        if out=$(timeout "$per_process_timeout" "$osseg" run-model "$m" --repeat "$runs" \
                 --threads "$threads" --precision "$precision" --json "$@" 2>"$err"); then
            record osseg "$name" "$rnd" ok "$out"
        else
            record osseg "$name" "$rnd" "failed" "$(tail -c 2000 "$err")"
            [ -z "$outp" ] || rm -f "$outp"
        fi
    fi
}

for m in $models; do
    name=$(basename "$m" .onnx)
    r=1
    while [ "$r" -le "$rounds" ]; do
        # alternate which engine goes first so neither always runs on a
        # freshly idle (or freshly busy) machine
        if [ $((r % 2)) = 1 ]; then order="ort osseg"; else order="osseg ort"; fi
        for e in $order; do
            if [ "$e" = ort ] && [ "$do_ort" = 1 ]; then run_one ort "$m" "$name" "$r"; fi
            if [ "$e" = osseg ] && [ "$do_osseg" = 1 ]; then run_one osseg "$m" "$name" "$r"; fi
        done
        echo "  $name round $r/$rounds done" >&2
        r=$((r + 1))
    done
done

# summary table (+ parity against PyTorch from the first round's outputs)
$py - "$results" "$out_dir" "$model_dir" "$parity" <<'EOF'
import json, os, statistics, sys
import numpy as np

results, out_dir, model_dir, parity = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
recs = [json.loads(l) for l in open(results) if l.strip()]
names = list(dict.fromkeys(r["name"] for r in recs))


def agg(name, engine):
    ok = [r for r in recs if r["name"] == name and r["engine"] == engine and r["status"] == "ok"]
    bad = [r for r in recs if r["name"] == name and r["engine"] == engine and r["status"] != "ok"]
    if not ok:
        return None, (bad[0].get("message", "").strip().splitlines() or ["failed"])[-1] if bad else None
    return dict(median=statistics.median(r["median_ms"] for r in ok),
                min=min(r["min_ms"] for r in ok),
                rss=max(r.get("peak_rss_mb") or 0 for r in ok),
                load=statistics.median(r["load_ms"] for r in ok),
                cpu=(statistics.median(r["cpu_median_ms"] for r in ok)
                     if all("cpu_median_ms" in r for r in ok) else None),
                n=len(ok), version=ok[0].get("ort_version") or ok[0].get("precision")), None


def par(name, engine):
    ref = os.path.join(model_dir, name + ".output.npy")
    got = os.path.join(out_dir, "%s.%s.npy" % (name, engine))
    if not (parity and os.path.exists(ref) and os.path.exists(got)):
        return None
    a = np.load(got, mmap_mode="r")
    b = np.load(ref, mmap_mode="r")
    if a.shape != b.shape:
        return "shape %s vs %s" % (a.shape, b.shape)
    d = 0.0
    agree = 0
    n = a.size
    fa, fb = a.reshape(-1), b.reshape(-1)
    step = 1 << 22
    for i in range(0, n, step):
        x = np.asarray(fa[i:i + step], dtype=np.float32)
        y = np.asarray(fb[i:i + step], dtype=np.float32)
        dd = np.abs(x - y)
        d = max(d, float(np.nanmax(dd)) if not np.isnan(dd).any() else float("nan"))
        agree += int(np.count_nonzero((x > 0) == (y > 0)))
    return "%.2e / %.6f" % (d, agree / n)


def fmt(v, f="%.1f"):
    return "-" if v is None else f % v


hdr = ("model", "ORT ms", "osseg ms", "ORT/osseg", "ORT min", "osseg min", "ORT cpu",
       "ORT load", "osseg load", "ORT RSS MB", "osseg RSS MB", "ORT vs torch",
       "osseg vs torch")
rows = []
notes = []
for n in names:
    o, oerr = agg(n, "ort")
    s, serr = agg(n, "osseg")
    ratio = o["median"] / s["median"] if o and s else None
    rows.append((n, fmt(o and o["median"]), fmt(s and s["median"]), fmt(ratio, "%.2f"),
                 fmt(o and o["min"]), fmt(s and s["min"]), fmt(o and o["cpu"]),
                 fmt(o and o["load"], "%.0f"), fmt(s and s["load"], "%.0f"), fmt(o and o["rss"]),
                 fmt(s and s["rss"]), par(n, "ort") or "-", par(n, "osseg") or "-"))
    for eng, err in (("ORT", oerr), ("osseg", serr)):
        if err:
            notes.append("%s on %s failed: %s" % (eng, n, err))
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
line = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))
print(line(hdr))
print("  ".join("-" * x for x in w))
for r in rows:
    print(line(r))
vers = sorted({r.get("ort_version") for r in recs if r.get("engine") == "ort" and r.get("ort_version")})
print("\nms = median over rounds of per-process medians; min = min over all runs; "
      "ORT cpu = process CPU ms per run (all threads); load = session/model load ms; "
      "parity = max|logit - PyTorch| / mask (logit>0) agreement.  ORT %s.  raw: %s"
      % (",".join(vers) or "-", results))
for x in notes:
    print("note: " + x)
EOF

#!/bin/bash
# Golden-output harness for the inference engine: proves that a change to the
# engine leaves every output bit-identical (and every load error the same).
#
#   tools/engine_golden.sh OSSEG_BIN OUT_DIR
#       runs `OSSEG_BIN run-model` on every model of the project at each
#       precision (fp32, bf16, bf16-mixed) with 2 threads, writes
#       OUT_DIR/NAME.PRECISION.npy and OUT_DIR/SUMS (one line per
#       model x precision: the output's sha256, or the load/run error text).
#   tools/engine_golden.sh --compare DIR_A DIR_B
#       compares two such runs file by file (cmp) and prints a table; exit
#       status 1 on any difference (output bytes, error text, a model that
#       loads in one run and not in the other, a run missing from one side,
#       or runs that did not use the same input).
#
# SUMS: tab-separated KEY PRECISION STATUS INPUT_SHA256 DETAIL, one line a
# run; KEY is the model's path without .onnx, '/' as '__' (output file
# OUT_DIR/KEY.PRECISION.npy); STATUS ok (DETAIL: the output's sha256, and
# " size=256" for a symbolic-size model), fail (DETAIL: "rc=N: " and the
# stderr text, newlines as " \n ", the model's path as MODEL, OUT_DIR and
# the input cache as OUT_DIR and INPUTS), timeout or skip; INPUT_SHA256 is
# "none" for a model model-info cannot load (run without --input).
# OUT_DIR/run.log has each run's exit status and wall time.
#
# Models: every .onnx under tests/ (including the deliberately broken ones:
# their error text is what is compared), data/models/*.onnx,
# bench/models/*.onnx and bench/models/smp/*.onnx (gitignored; taken from the
# main worktree when this worktree has none).
#
# Inputs: a fixture's NAME.input.npy beside the model when there is one;
# otherwise a float32 NCHW tensor of the shape `osseg model-info` prints,
# values k/2^24 (k uniform in [0, 2^24), so in [0,1)) from Python's
# random.Random seeded with crc32 of the model's key, cached in
# $GOLDEN_INPUTS (default /work/golden/inputs) so that both runs of a
# comparison read the very same file. SUMS records each input's sha256 and
# --compare refuses rows whose inputs differ.
#
# A model whose input size is symbolic runs with --size 256. Models over
# 200 MB and runs over $GOLDEN_TIMEOUT s (default 60) are skipped and noted
# in SUMS ("skip" / "timeout"); --compare lists them but does not fail on
# them.
#
# Environment: GOLDEN_ROOT (repository whose tests/ and data/ are used;
# default: the one holding this script), GOLDEN_BENCH (default
# ROOT/bench/models, else the main worktree's), GOLDEN_INPUTS,
# GOLDEN_TIMEOUT, GOLDEN_PRECISIONS (default "fp32 bf16 bf16-mixed"),
# GOLDEN_FILTER (extended regexp on the model key; for quick partial runs).
# OSSEG_*, DNNL_* and ONEDNN_* variables are cleared for the runs, and
# OMP_NUM_THREADS=2 OMP_DYNAMIC=false are set.

set -u

usage() {
    echo "usage: $0 OSSEG_BIN OUT_DIR" >&2
    echo "       $0 --compare DIR_A DIR_B" >&2
    exit 2
}

# --------------------------------------------------------------- compare --
compare() {
    local a=$1 b=$2
    [ -f "$a/SUMS" ] || { echo "$0: $a/SUMS: missing" >&2; exit 2; }
    [ -f "$b/SUMS" ] || { echo "$0: $b/SUMS: missing" >&2; exit 2; }
    local keys ndiff=0 nsame=0 nskip=0 nrow=0
    keys=$( { cut -f1,2 "$a/SUMS"; cut -f1,2 "$b/SUMS"; } | LC_ALL=C sort -u)
    printf '%-62s %-10s %-8s %-8s %s\n' MODEL PRECISION A B RESULT
    local key prec la lb sa sb ia ib da db res
    while IFS=$'\t' read -r key prec; do
        [ -n "$key" ] || continue
        nrow=$((nrow + 1))
        la=$(awk -F'\t' -v k="$key" -v p="$prec" '$1==k && $2==p' "$a/SUMS" | head -n1)
        lb=$(awk -F'\t' -v k="$key" -v p="$prec" '$1==k && $2==p' "$b/SUMS" | head -n1)
        sa=$(printf '%s' "$la" | cut -f3); sb=$(printf '%s' "$lb" | cut -f3)
        ia=$(printf '%s' "$la" | cut -f4); ib=$(printf '%s' "$lb" | cut -f4)
        da=$(printf '%s' "$la" | cut -f5-); db=$(printf '%s' "$lb" | cut -f5-)
        [ -n "$la" ] || sa=missing
        [ -n "$lb" ] || sb=missing
        if [ "$sa" = missing ] || [ "$sb" = missing ]; then
            res=DIFF-missing
        elif [ "$sa" = skip ] || [ "$sb" = skip ] || [ "$sa" = timeout ] || [ "$sb" = timeout ]; then
            if [ "$sa" = "$sb" ]; then res=skipped; else res=UNCOMPARED; fi
        elif [ "$ia" != "$ib" ]; then
            res=DIFF-input
        elif [ "$sa" != "$sb" ]; then
            res=DIFF-status            # loads in one run, not in the other
        elif [ "$sa" = ok ]; then
            if cmp -s "$a/$key.$prec.npy" "$b/$key.$prec.npy" && [ "$da" = "$db" ]; then
                res=same
            else
                res=DIFF-output
            fi
        elif [ "$da" = "$db" ]; then
            res=same
        else
            res=DIFF-error
        fi
        case $res in
            same) nsame=$((nsame + 1)) ;;
            skipped|UNCOMPARED) nskip=$((nskip + 1)) ;;
            *) ndiff=$((ndiff + 1)) ;;
        esac
        printf '%-62s %-10s %-8s %-8s %s\n' "$key" "$prec" "$sa" "$sb" "$res"
        case $res in
            DIFF-error|DIFF-status)
                printf '    A: %s\n    B: %s\n' "$da" "$db" ;;
            DIFF-input)
                printf '    A input: %s\n    B input: %s\n' "$ia" "$ib" ;;
        esac
    done <<<"$keys"
    echo
    echo "rows $nrow: same $nsame, different $ndiff, skipped/uncompared $nskip"
    [ "$ndiff" -eq 0 ] || exit 1
    exit 0
}

# ------------------------------------------------------------------- run --

# make_input OUT.npy KEY D0 D1 ...: seeded float32 tensor in [0,1), written
# atomically (a temporary file renamed) so concurrent runs share the cache.
make_input() {
    local out=$1
    shift
    /usr/bin/python3 - "$out" "$@" <<'EOF'
import os, random, struct, sys, zlib
from array import array
out, key, shape = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]]
n = 1
for d in shape:
    n *= d
r = random.Random(zlib.crc32(key.encode()))
a = array('f', (r.getrandbits(24) * (1.0 / 16777216) for _ in range(n)))
if sys.byteorder != 'little':
    a.byteswap()
dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % dims
pad = (64 - (10 + len(header) + 1) % 64) % 64
header = (header + " " * pad + "\n").encode("latin1")
tmp = "%s.tmp.%d" % (out, os.getpid())
with open(tmp, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)
    f.write(a.tobytes())
os.rename(tmp, out)
EOF
}

# one line of text from a file: newlines as " \n ", tabs as spaces, the
# model's path, the output directory and the input cache replaced by
# placeholders (so the text compares across worktrees and output dirs)
flatten() {
    local f=$1 m=$2
    sed -e "s#$OUT#OUT_DIR#g" -e "s#$INPUTS#INPUTS#g" -e "s#$m#MODEL#g" \
        -e 's/\t/ /g' "$f" | awk 'NR > 1 { printf " \\n " } { printf "%s", $0 }'
}

run_all() {
    BIN=$1
    OUT=$2
    case $BIN in /*) ;; */*) BIN=$PWD/$BIN ;; esac
    [ -x "$BIN" ] || { echo "$0: $BIN: not an executable" >&2; exit 2; }
    mkdir -p "$OUT" || exit 1
    OUT=$(cd "$OUT" && pwd)
    local here
    here=$(cd "$(dirname "$0")" && pwd)
    ROOT=${GOLDEN_ROOT:-$(git -C "$here" rev-parse --show-toplevel)}
    BENCH=${GOLDEN_BENCH:-}
    if [ -z "$BENCH" ]; then
        BENCH=$ROOT/bench/models
        if [ ! -d "$BENCH" ]; then
            local common
            common=$(cd "$ROOT" && cd "$(git rev-parse --git-common-dir)" && pwd)
            BENCH=$(dirname "$common")/bench/models
        fi
    fi
    INPUTS=${GOLDEN_INPUTS:-/work/golden/inputs}
    mkdir -p "$INPUTS" || exit 1
    INPUTS=$(cd "$INPUTS" && pwd)
    local timeout_s=${GOLDEN_TIMEOUT:-60}
    local precisions=${GOLDEN_PRECISIONS:-fp32 bf16 bf16-mixed}
    local max_bytes=$((200 * 1000 * 1000))

    # the runs' environment: nothing that changes the engine's choices
    local v
    for v in $(env | sed -n 's/^\(\(OSSEG\|DNNL\|ONEDNN\)_[A-Za-z0-9_]*\)=.*/\1/p'); do
        unset "$v"
    done
    export OMP_NUM_THREADS=2 OMP_DYNAMIC=false
    export LC_ALL=C

    cd "$ROOT" || exit 1
    local models=()
    mapfile -t models < <(find tests -name '*.onnx' -type f | sort
                          ls data/models/*.onnx 2>/dev/null | sort
                          ls "$BENCH"/*.onnx 2>/dev/null | sort
                          ls "$BENCH"/smp/*.onnx 2>/dev/null | sort)

    local sums=$OUT/SUMS.tmp log=$OUT/run.log
    : >"$sums"
    {
        echo "# $(date -u +%FT%TZ) bin=$BIN root=$ROOT bench=$BENCH inputs=$INPUTS"
        echo "# bin sha256 $(sha256sum "$BIN" | cut -d' ' -f1)"
        echo "# $(nproc) cpus; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    } >"$log"
    local t_all=$SECONDS m key rel in insha size_args info shape p t0 rc err dt
    local tmp_err=$OUT/.stderr tmp_info=$OUT/.info
    for m in "${models[@]}"; do
        case $m in
            "$BENCH"/smp/*) rel=bench/models/smp/${m#"$BENCH"/smp/} ;;
            "$BENCH"/*) rel=bench/models/${m#"$BENCH"/} ;;
            *) rel=$m ;;
        esac
        key=${rel%.onnx}
        key=${key//\//__}
        if [ -n "${GOLDEN_FILTER:-}" ] && ! [[ $key =~ $GOLDEN_FILTER ]]; then
            continue
        fi
        if [ "$(stat -c %s "$m")" -gt "$max_bytes" ]; then
            for p in $precisions; do
                printf '%s\t%s\tskip\t-\tmodel over 200 MB (%s bytes)\n' \
                    "$key" "$p" "$(stat -c %s "$m")" >>"$sums"
            done
            echo "skip $key: $(stat -c %s "$m") bytes" >>"$log"
            continue
        fi
        # input size: symbolic -> --size 256
        size_args=()
        timeout "$timeout_s" "$BIN" model-info "$m" >"$tmp_info" 2>"$tmp_err"
        if [ $? -ne 0 ] && grep -q 'symbolic size' "$tmp_err"; then
            size_args=(--size 256)
            timeout "$timeout_s" "$BIN" model-info "$m" --size 256 >"$tmp_info" 2>"$tmp_err"
        fi
        # input: the fixture's, else a cached seeded one, else none (a model
        # that model-info cannot load: run-model is expected to fail loading)
        # (a symbolic-size model runs at 256 on a generated input even if
        # its fixture input has another size)
        in=${m%.onnx}.input.npy
        if [ ${#size_args[@]} -gt 0 ] || [ ! -f "$in" ]; then
            in=$INPUTS/$key${size_args:+.s256}.npy
            if [ ! -f "$in" ]; then
                shape=$(sed -n 's/^input  *[^ ]* \[\([0-9, ]*\)\] float32$/\1/p' "$tmp_info" | head -n1 | tr -d ,)
                if [ -n "$shape" ]; then
                    # shellcheck disable=SC2086
                    make_input "$in" "$key" $shape || { echo "$0: cannot make $in" >&2; exit 1; }
                    echo "input $key: made $in ($shape)" >>"$log"
                else
                    in=
                fi
            fi
        fi
        local in_args=()
        if [ -n "$in" ]; then
            in_args=(--input "$in")
            insha=$(sha256sum "$in" | cut -d' ' -f1)
        else
            insha=none
        fi
        for p in $precisions; do
            rm -f "$OUT/$key.$p.npy"
            t0=$(date +%s.%N)
            timeout "$timeout_s" "$BIN" run-model "$m" "${in_args[@]}" "${size_args[@]}" \
                --output "$OUT/$key.$p.npy" --precision "$p" --threads 2 \
                >/dev/null 2>"$tmp_err"
            rc=$?
            dt=$(echo "$(date +%s.%N) - $t0" | bc)
            echo "run $key $p rc=$rc ${dt}s" >>"$log"
            if [ $rc -eq 124 ]; then
                printf '%s\t%s\ttimeout\t%s\tover %s s\n' "$key" "$p" "$insha" "$timeout_s" >>"$sums"
            elif [ $rc -eq 0 ] && [ -f "$OUT/$key.$p.npy" ]; then
                printf '%s\t%s\tok\t%s\t%s%s\n' "$key" "$p" "$insha" \
                    "$(sha256sum "$OUT/$key.$p.npy" | cut -d' ' -f1)" \
                    "${size_args:+ size=256}" >>"$sums"
            else
                err=$(flatten "$tmp_err" "$m")
                printf '%s\t%s\tfail\t%s\trc=%s: %s\n' "$key" "$p" "$insha" "$rc" "$err" >>"$sums"
            fi
        done
    done
    rm -f "$tmp_err" "$tmp_info"
    mv "$sums" "$OUT/SUMS"
    echo "# total ${SECONDS}s wall ($((SECONDS - t_all))s for the runs)" >>"$log"
    local n nok nfail nskip
    n=$(wc -l <"$OUT/SUMS")
    nok=$(cut -f3 "$OUT/SUMS" | grep -c '^ok$')
    nfail=$(cut -f3 "$OUT/SUMS" | grep -c '^fail$')
    nskip=$(cut -f3 "$OUT/SUMS" | grep -cE '^(skip|timeout)$')
    echo "$n runs: $nok ok, $nfail failed (error text recorded), $nskip skipped; $((SECONDS - t_all)) s; $OUT/SUMS"
}

case ${1:-} in
    --compare) [ $# -eq 3 ] || usage; compare "$2" "$3" ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) [ $# -eq 2 ] || usage; run_all "$1" "$2" ;;
esac

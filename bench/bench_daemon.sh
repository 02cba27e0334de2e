#!/bin/bash
# ossegd side by side with in-process `osseg predict`, in one run:
#
#   1. latency of one 2048² PNG: `osseg segment --json` through the socket
#      (Done.total_ms minus the inference times: the daemon's time from the
#      request received to its Done; and the client's round_trip_ms minus
#      the inference: request sent to Done read, the socket both ways and
#      every mask frame included; beside the client's wall time) vs
#      `osseg predict --json` on the
#      same image and model (warm images of one process); the two CSVs must
#      be byte-identical (cmp);
#   2. throughput, images/s, with 1, 4 and 16 concurrent clients (one
#      `osseg segment` process each, over its own copy of the image list)
#      vs `osseg predict` over the same images in one process; every
#      client's CSV must equal predict's;
#   3. Health round trips while the 4-client run goes (bench_health: fresh
#      connection per probe as `osseg health` does, and one kept open; plus
#      the wall time of `osseg health` itself);
#   4. cancel latency through a daemon with --workers 1 and a slow model
#      (UNet++ R50 @1024): Cancel -> CANCELLED, and -> the next request
#      starting (bench_daemon_cancel);
#   5. peak RSS (VmHWM) of each ossegd and of osseg predict;
#   6. 64 concurrent clients x 10 requests with the tiny model on small
#      images: every CSV identical to the single-client one, none lost
#      (also checked against Stats), and ossegd's peak RSS.
# Each part starts its own ossegd on a socket in a temporary directory,
# waits for `osseg health` to succeed, and stops it (SIGTERM, then SIGKILL)
# when done or on any exit; every command runs under `timeout`. Numbers are
# medians over repeats; the exact commands are printed. Not a test (not in
# ctest); on a shared machine the numbers move with the load.
#
#   bench/bench_daemon.sh [BUILD_DIR] [options]      (default build/release)
#
# options:
#   --model PATH          model for parts 1-3 and 5 (default
#                         MODELS_DIR/unetpp_r18_512.onnx)
#   --cancel-model PATH   slow model for part 4 (MODELS_DIR/unetpp_r50_1024.onnx)
#   --tiny-model PATH     model for part 6 and the request after a cancel
#                         (tests/data/models/unetpp_r18_tiny_op13.onnx)
#   --models-dir DIR      where the bench models are (default bench/models;
#                         made by tools/fixtures/make_bench_models.py)
#   --image PNG           image of parts 1 and 4 (data/samples/images/
#                         phantom_1000100.png)
#   --images DIR          the image list of part 2 (*.png, default
#                         data/samples/images)
#   --repeats N           part 1: segment runs and warm predict images (5)
#   --rounds N            part 2: rounds of predict + each client count (3)
#   --clients LIST        part 2: client counts (1,4,16)
#   --health-clients C    part 3 runs beside the C-client runs (4)
#   --health-interval-ms MS  (200)
#   --in-flight K         osseg segment --in-flight in parts 2 and 6
#                         (default: the client's)
#   --cancel-trials N     part 4 (5)
#   --stress-clients N    part 6 (64)
#   --stress-requests N   part 6, images per client (10)
#   --stress-size PX      part 6 image side (256; phantoms by osseg-phantom)
#   --threads N           --threads of ossegd and osseg predict (default: theirs)
#   --workers N           --workers of the daemon of parts 1-3 (default: its)
#   --only LIST           parts to run: latency,throughput,cancel,stress
#                         (health runs with throughput; RSS with each)
#   --timeout S           limit per command (900)
#   --start-timeout S     limit for a daemon to load and answer Health (600)
#   --keep                keep the temporary directory (its path is printed)
#   -h, --help
#
# Default run: about 5-10 minutes on the 2-core VM (most of it the 16-client
# rounds and the R50 cancel trials). Exit status 0 when every check passed
# (identical CSVs, no lost request, no failed client), 1 otherwise, 2 for
# bad usage or missing files.
set -euo pipefail

prog=bench_daemon
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/release
models_dir=$root/bench/models
model='' cancel_model='' tiny_model=$root/tests/data/models/unetpp_r18_tiny_op13.onnx
image=$root/data/samples/images/phantom_1000100.png
images_dir=$root/data/samples/images
repeats=5 rounds=3 clients_list=1,4,16 health_clients=4 health_interval=200
in_flight='' cancel_trials=5 stress_clients=64 stress_requests=10 stress_size=256
threads='' workers='' only=latency,throughput,cancel,stress
cmd_timeout=900 start_timeout=600 keep=0

usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
  exit "${1:-2}"
}
die() { echo "$prog: $*" >&2; exit 2; }

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  build=$1
  shift
fi
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage 0 ;;
    --keep) keep=1; shift; continue ;;
  esac
  [ $# -ge 2 ] || die "$1: missing value or unknown option (see --help)"
  case $1 in
    --model) model=$2 ;;
    --cancel-model) cancel_model=$2 ;;
    --tiny-model) tiny_model=$2 ;;
    --models-dir) models_dir=$2 ;;
    --image) image=$2 ;;
    --images) images_dir=$2 ;;
    --repeats) repeats=$2 ;;
    --rounds) rounds=$2 ;;
    --clients) clients_list=$2 ;;
    --health-clients) health_clients=$2 ;;
    --health-interval-ms) health_interval=$2 ;;
    --in-flight) in_flight=$2 ;;
    --cancel-trials) cancel_trials=$2 ;;
    --stress-clients) stress_clients=$2 ;;
    --stress-requests) stress_requests=$2 ;;
    --stress-size) stress_size=$2 ;;
    --threads) threads=$2 ;;
    --workers) workers=$2 ;;
    --only) only=$2 ;;
    --timeout) cmd_timeout=$2 ;;
    --start-timeout) start_timeout=$2 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift 2
done
[ -n "$model" ] || model=$models_dir/unetpp_r18_512.onnx
[ -n "$cancel_model" ] || cancel_model=$models_dir/unetpp_r50_1024.onnx

posint() { # name value
  case $2 in '' | *[!0-9]* | 0*) die "$1 needs a positive integer, not '$2'" ;; esac
}
for v in repeats rounds health_clients health_interval cancel_trials stress_clients \
  stress_requests stress_size cmd_timeout start_timeout; do
  posint "--${v//_/-}" "${!v}"
done
[ -z "$in_flight" ] || posint --in-flight "$in_flight"
[ -z "$threads" ] || posint --threads "$threads"
[ -z "$workers" ] || posint --workers "$workers"
case ,$clients_list, in *,,* | *[!0-9,]*) die "--clients: comma-separated counts" ;; esac
IFS=, read -r -a clients <<<"$clients_list"
for c in "${clients[@]}"; do posint --clients "$c"; done
want() { case ,$only, in *,$1,*) return 0 ;; *) return 1 ;; esac; }
for p in ${only//,/ }; do
  case $p in latency | throughput | cancel | stress) ;; *) die "--only: unknown part '$p'" ;; esac
done

bin=$build/bin
osseg=$bin/osseg ossegd=$bin/ossegd phantom=$bin/osseg-phantom
helper_health=$bin/bench_health helper_cancel=$bin/bench_daemon_cancel
for f in "$osseg" "$ossegd" "$phantom" "$helper_health" "$helper_cancel"; do
  [ -x "$f" ] || die "$f not built (./dev build; the helpers are targets bench_health, bench_daemon_cancel)"
done
need_file() { [ -f "$2" ] || die "$1 $2: no such file${3:+ ($3)}"; }
if want latency || want throughput; then need_file --model "$model" "run tools/fixtures/make_bench_models.py, or --models-dir/--model"; fi
if want cancel; then need_file --cancel-model "$cancel_model" "run tools/fixtures/make_bench_models.py, or --models-dir/--cancel-model"; fi
if want cancel || want stress; then need_file --tiny-model "$tiny_model"; fi
if want latency || want cancel; then need_file --image "$image"; fi
images=()
if want throughput; then
  for f in "$images_dir"/*.png; do [ -f "$f" ] && images+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"); done
  [ ${#images[@]} -gt 0 ] || die "--images $images_dir: no *.png"
fi
image=$(cd "$(dirname "$image")" && pwd)/$(basename "$image")
if [ -x /usr/bin/time ] && /usr/bin/time -f %M true >/dev/null 2>&1; then gnu_time=1; else gnu_time=0; fi

# ------------------------------------------------------------ housekeeping ---
tmp=$(mktemp -d "${TMPDIR:-/tmp}/osseg-bd.XXXXXX")
daemon_pid='' daemon_sock=''
bg_pids=()
failures=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${bg_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -z "$daemon_pid" ] || stop_daemon quiet
  if [ "$keep" = 1 ]; then echo "$prog: kept $tmp" >&2; else rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "$prog: interrupted" >&2; exit 130' INT TERM

fail() { echo "  FAILED: $*"; failures=$((failures + 1)); }
# q CMD...: the command, shell-quoted, on one line.
q() { local s; printf -v s '%q ' "$@"; echo "${s% }"; }
show() { echo "  \$ $(q "$@")"; }
now() { echo "$EPOCHREALTIME"; }
ms_since() { awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", (e - s) * 1000 }'; }
# median / max of the numbers on stdin ("-" when none)
median() { sort -g | awk -v f="${1:-%.1f}" '{ a[NR] = $1 } END { if (!NR) { print "-"; exit } printf f "\n", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
maxof() { sort -g | awk -v f="${1:-%.1f}" '{ m = $1 } END { if (!NR) print "-"; else printf f "\n", m }'; }
# jfield FIELD < json lines: the numeric values of "FIELD":N, one a line
jfield() { grep -o "\"$1\":[-0-9.e+]*" | cut -d: -f2 || true; }
kv() { # key < "name k=v k=v" line: the value
  tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'
}
vmhwm() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
vmrss() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
# T CMD...: CMD under timeout. In the background, use "${TO[@]}" CMD & (not
# T CMD &, a subshell) so that $! is timeout's pid, which cleanup can stop.
TO=(timeout -k 10 "$cmd_timeout")
T() { "${TO[@]}" "$@"; }

thread_opt=()
[ -z "$threads" ] || thread_opt=(--threads "$threads")
inflight_opt=()
[ -z "$in_flight" ] || inflight_opt=(--in-flight "$in_flight")

# start_daemon TAG ARGS...: ossegd on $tmp/TAG.sock, waits for Health.
start_daemon() {
  local tag=$1
  shift
  daemon_sock=$tmp/$tag.sock
  local log=$tmp/$tag.ossegd.log
  local cmd=("$ossegd" --socket "$daemon_sock" "${thread_opt[@]}" "$@")
  show "${cmd[@]}"
  local t0
  t0=$(now)
  "${cmd[@]}" >"$log" 2>&1 &
  daemon_pid=$!
  local deadline=$((SECONDS + start_timeout))
  until timeout 10 "$osseg" health --socket "$daemon_sock" >/dev/null 2>&1; do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
      wait "$daemon_pid" 2>/dev/null || true
      daemon_pid=
      sed 's/^/    /' "$log" >&2
      echo "$prog: ossegd ($tag) exited during start-up" >&2
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "$prog: ossegd ($tag) not healthy after ${start_timeout}s" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "  ossegd ($tag) pid $daemon_pid ready after $(ms_since "$t0") ms (load + warm-up), RSS $(vmrss "$daemon_pid") MiB"
}
# stop_daemon [quiet]: SIGTERM (drain), SIGKILL after 60 s.
stop_daemon() {
  [ -n "$daemon_pid" ] || return 0
  kill -TERM "$daemon_pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$daemon_pid" 2>/dev/null; then
    [ "${1:-}" = quiet ] || echo "  ossegd pid $daemon_pid did not stop in 60 s: SIGKILL"
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
}

# run_rss OUT_KB_FILE CMD...: runs CMD (under timeout) and writes its peak
# RSS in kB (GNU time's %M, or VmHWM polled every 20 ms).
run_rss() {
  local out=$1
  shift
  if [ "$gnu_time" = 1 ]; then
    T /usr/bin/time -f %M -o "$out" "$@"
    return
  fi
  "${TO[@]}" "$@" &
  local p=$! hwm=0 v rc=0
  while kill -0 "$p" 2>/dev/null; do
    v=$(pgrep -P "$p" | head -1)
    [ -n "$v" ] && v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$v/status" 2>/dev/null) && [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
    sleep 0.02
  done
  wait "$p" || rc=$?
  echo "$hwm" >"$out"
  return $rc
}
kb_to_mib() { awk '{ printf "%.0f", $1 / 1024 }' "$1" 2>/dev/null || echo "?"; }

summary=()
add_row() { summary+=("$(printf '%-46s %s' "$1" "$2")"); }

echo "$prog: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  build $build (source $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "  model $model"
want cancel && echo "  cancel model $cancel_model"
{ want cancel || want stress; } && echo "  tiny model $tiny_model"
echo "  temporary directory $tmp ($([ "$keep" = 1 ] && echo kept || echo 'removed at exit'))"
echo "  peak RSS of osseg predict: $([ "$gnu_time" = 1 ] && echo '/usr/bin/time -f %M' || echo 'VmHWM polled every 20 ms')"
echo

# ============================================== parts 1, 2, 3 and 5: model ===
if want latency || want throughput; then
  echo "== ossegd with $(basename "$model") (parts 1-3)"
  start_daemon main --model "bench=$model" ${workers:+--workers "$workers"}
  main_idle_rss=$(vmrss "$daemon_pid")
  # warm both workers' workspaces up at this image size
  warm=("${images[@]:0:2}")
  [ ${#warm[@]} -ge 2 ] || warm=("$image" "$image")
  mkdir -p "$tmp/warm"
  for i in 0 1; do ln -sf "${warm[$i]}" "$tmp/warm/w$i.png"; done
  T "$osseg" segment --socket "$daemon_sock" --model bench --in-flight 2 -o /dev/null \
    "$tmp/warm/w0.png" "$tmp/warm/w1.png" 2>/dev/null || fail "warm-up segment failed"
  echo
fi

if want latency; then
  echo "== 1. latency of one image: $(basename "$image") through the socket vs in-process"
  d=$tmp/latency
  mkdir -p "$d"
  seg_lat() { T "$osseg" segment --socket "$daemon_sock" --model bench --in-flight 1 --json -o "$1" "$image"; }
  show "$osseg" segment --socket "$daemon_sock" --model bench --in-flight 1 --json -o "$d/seg.R.csv" "$image"
  echo "    ($repeats times, one process each; the daemon warm)"
  # predict: a cold first image, then $repeats warm ones (symlinks with
  # distinct names) in one process; and the image alone for the CSV check
  mkdir -p "$d/copies"
  pred_list=("$image")
  for ((r = 1; r <= repeats; r++)); do
    ln -sf "$image" "$d/copies/r$r.$(basename "$image")"
    pred_list+=("$d/copies/r$r.$(basename "$image")")
  done
  pred_cmd=("$osseg" predict --model "$model" "${thread_opt[@]}" --json -o "$d/pred.csv" "${pred_list[@]}")
  pred1_cmd=("$osseg" predict --model "$model" "${thread_opt[@]}" -o "$d/pred1.csv" "$image")
  show "${pred_cmd[0]}" predict --model "$model" "${thread_opt[@]}" --json -o "$d/pred.csv" "$image" "$d/copies/r{1..$repeats}.$(basename "$image")"
  show "${pred1_cmd[@]}"
  : >"$d/seg.jsonl"
  : >"$d/seg_wall"
  identical=0
  for ((r = 1; r <= repeats; r++)); do
    t0=$(now)
    if seg_lat "$d/seg.$r.csv" >>"$d/seg.jsonl" 2>"$d/seg.$r.err"; then
      ms_since "$t0" >>"$d/seg_wall"
    else
      fail "osseg segment run $r: $(tail -1 "$d/seg.$r.err")"
    fi
  done
  t0=$(now)
  if run_rss "$d/pred.rss" "${pred_cmd[@]}" >"$d/pred.jsonl" 2>"$d/pred.err"; then
    pred_wall=$(ms_since "$t0")
  else
    fail "osseg predict: $(tail -1 "$d/pred.err")"
    pred_wall=-
  fi
  run_rss "$d/pred1.rss" "${pred1_cmd[@]}" 2>"$d/pred1.err" || fail "osseg predict (one image): $(tail -1 "$d/pred1.err")"
  for ((r = 1; r <= repeats; r++)); do
    if [ -f "$d/seg.$r.csv" ] && [ -f "$d/pred1.csv" ] && cmp -s "$d/seg.$r.csv" "$d/pred1.csv"; then
      identical=$((identical + 1))
    fi
  done
  echo "  $ cmp seg.R.csv pred1.csv   (R = 1..$repeats)"
  [ "$identical" = "$repeats" ] || fail "only $identical of $repeats segment CSVs are byte-identical to predict's"
  csv_bytes=$(stat -c %s "$d/pred1.csv" 2>/dev/null || echo 0)
  # daemon side, per run
  s_total=$(jfield total_ms <"$d/seg.jsonl" | median)
  s_inf=$(jfield inference_ms <"$d/seg.jsonl" | median)
  s_queue=$(jfield queue_ms <"$d/seg.jsonl" | median)
  s_dec=$(jfield decode_ms <"$d/seg.jsonl" | median)
  s_post=$(jfield postprocess_ms <"$d/seg.jsonl" | median)
  s_over=$(paste -d' ' <(jfield total_ms <"$d/seg.jsonl") <(jfield inference_ms <"$d/seg.jsonl") | awk '{ print $1 - $2 }' | median)
  s_wall=$(median <"$d/seg_wall")
  # The client's view: request sent -> Done read, minus the inference.
  s_rt_over=$(paste -d' ' <(jfield round_trip_ms <"$d/seg.jsonl") <(jfield inference_ms <"$d/seg.jsonl") | awk '{ print $1 - $2 }' | median)
  s_over_max=$(paste -d' ' <(jfield total_ms <"$d/seg.jsonl") <(jfield inference_ms <"$d/seg.jsonl") | awk '{ print $1 - $2 }' | maxof)
  # predict: warm images only (the first of the process is cold)
  tail -n +2 "$d/pred.jsonl" >"$d/pred.warm.jsonl"
  p_total=$(jfield total_ms <"$d/pred.warm.jsonl" | median)
  p_inf=$(jfield inference_ms <"$d/pred.warm.jsonl" | median)
  p_dec=$(jfield decode_ms <"$d/pred.warm.jsonl" | median)
  p_post=$(jfield postprocess_ms <"$d/pred.warm.jsonl" | median)
  p_over=$(paste -d' ' <(jfield total_ms <"$d/pred.warm.jsonl") <(jfield inference_ms <"$d/pred.warm.jsonl") | awk '{ print $1 - $2 }' | median)
  p_cold=$(head -1 "$d/pred.jsonl" | jfield total_ms | median)
  echo
  printf '  %-34s %10s %10s\n' "median ms ($repeats runs / warm images)" "ossegd" "predict"
  printf '  %-34s %10s %10s\n' "client process wall" "$s_wall" "-"
  printf '  %-34s %10s %10s\n' "total_ms (daemon: receipt->Done)" "$s_total" "$p_total"
  printf '  %-34s %10s %10s\n' "  queue_ms" "$s_queue" "-"
  printf '  %-34s %10s %10s\n' "  decode_ms" "$s_dec" "$p_dec"
  printf '  %-34s %10s %10s\n' "  inference_ms" "$s_inf" "$p_inf"
  printf '  %-34s %10s %10s\n' "  postprocess_ms" "$s_post" "$p_post"
  printf '  %-34s %10s %10s\n' "total - inference" "$s_over" "$p_over"
  printf '  %-34s %10s %10s\n' "total - inference, max" "$s_over_max" "-"
  printf '  %-34s %10s %10s\n' "client round trip - inference" "$s_rt_over" "-"
  printf '  %-34s %10s %10s\n' "predict: cold first image total_ms" "" "$p_cold"
  printf '  %-34s %10s %10s\n' "predict process wall (1+$repeats images)" "" "$pred_wall"
  echo "  CSV ($csv_bytes bytes): $identical of $repeats segment CSVs byte-identical to predict's (cmp)"
  add_row "1. latency total-inference, ossegd" "$s_over ms (max $s_over_max; total $s_total, inference $s_inf, client wall $s_wall)"
  add_row "1. client round trip - inference" "$s_rt_over ms (request sent -> Done read, as osseg segment sees it)"
  add_row "1. latency total-inference, predict" "$p_over ms (total $p_total, inference $p_inf)"
  add_row "1. segment CSV == predict CSV (cmp)" "$identical/$repeats identical"
  add_row "5. peak RSS osseg predict ($((repeats + 1)) images)" "$(kb_to_mib "$d/pred.rss") MiB"
  rm -f "$d"/seg.*.csv "$d/pred.csv"
  echo
fi

if want throughput; then
  n=${#images[@]}
  echo "== 2. throughput over $n image(s) of $images_dir, $rounds round(s); 3. Health during the $health_clients-client runs"
  d=$tmp/throughput
  mkdir -p "$d"
  tp_pred=("$osseg" predict --model "$model" "${thread_opt[@]}" --json -o "$d/pred.csv" "${images[@]}")
  tp_seg() { cmd=("$osseg" segment --socket "$daemon_sock" --model bench "${inflight_opt[@]}" -o "$1" "${images[@]}"); }
  show "$osseg" predict --model "$model" "${thread_opt[@]}" --json -o "$d/pred.csv" "$images_dir/*.png"
  show "$osseg" segment --socket "$daemon_sock" --model bench "${inflight_opt[@]}" -o "$d/cK.csv" "$images_dir/*.png"
  echo "    (C = ${clients[*]} such processes at once, K = 1..C, each its own CSV; wall time from the first start to the last exit; each CSV cmp'd with predict's)"
  health_on=0
  for c in "${clients[@]}"; do [ "$c" = "$health_clients" ] && health_on=1; done
  if [ "$health_on" = 1 ]; then
    show "$helper_health" --socket "$daemon_sock" --interval-ms "$health_interval" --samples "$d/health.samples.R"
    echo "    and, in a loop every ${health_interval} ms: wall time of"
    show "$osseg" health --socket "$daemon_sock"
    echo "    (both from the start of the $health_clients clients to the exit of the last)"
    echo "  idle Health baseline (20 probes, 50 ms apart):"
    show "$helper_health" --socket "$daemon_sock" --count 20 --interval-ms 50
    T "$helper_health" --socket "$daemon_sock" --count 20 --interval-ms 50 >"$d/health.idle" 2>&1 || fail "bench_health (idle) failed"
    sed 's/^/    /' "$d/health.idle"
  else
    echo "  (no run with $health_clients clients: part 3 skipped)"
  fi
  : >"$d/health.samples"
  : >"$d/health.load"
  : >"$d/health.cli"
  : >"$d/pred.ips"
  : >"$d/pred.pipe.ips"
  bad_csv=0 bad_rc=0
  for ((r = 1; r <= rounds; r++)); do
    # predict, then each client count (interleaved across rounds)
    t0=$(now)
    if run_rss "$d/pred.rss.$r" "${tp_pred[@]}" >"$d/pred.$r.jsonl" 2>"$d/pred.$r.err"; then
      w=$(ms_since "$t0")
      awk -v n="$n" -v w="$w" 'BEGIN { printf "%.3f\n", n / (w / 1000) }' >>"$d/pred.ips"
      jfield total_ms <"$d/pred.$r.jsonl" | awk -v n="$n" '{ s += $1 } END { printf "%.3f\n", n / (s / 1000) }' >>"$d/pred.pipe.ips"
    else
      fail "round $r: osseg predict: $(tail -1 "$d/pred.$r.err")"
    fi
    for c in "${clients[@]}"; do
      pids=()
      hpid='' lpid=''
      if [ "$health_on" = 1 ] && [ "$c" = "$health_clients" ]; then
        "${TO[@]}" "$helper_health" --socket "$daemon_sock" --interval-ms "$health_interval" \
          --samples "$d/health.samples.$r" >"$d/health.$r.out" 2>&1 &
        hpid=$!
        bg_pids+=("$hpid")
        rm -f "$d/health.stop"
        (
          while [ ! -e "$d/health.stop" ]; do
            s=$EPOCHREALTIME
            if timeout 10 "$osseg" health --socket "$daemon_sock" >/dev/null 2>&1; then
              awk -v s="$s" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }'
            else
              echo fail
            fi
            sleep "$(awk -v m="$health_interval" 'BEGIN { print m / 1000 }')"
          done
        ) >>"$d/health.cli" &
        lpid=$!
        bg_pids+=("$lpid")
      fi
      t0=$(now)
      for ((k = 1; k <= c; k++)); do
        tp_seg "$d/c$k.csv"
        "${TO[@]}" "${cmd[@]}" 2>"$d/c$k.err" &
        pids+=($!)
      done
      bg_pids+=("${pids[@]}")
      rcs=()
      for p in "${pids[@]}"; do
        if wait "$p"; then rcs+=(0); else rcs+=($?); fi
      done
      [ -n "$hpid" ] || bg_pids=()
      w=$(ms_since "$t0")
      if [ -n "$hpid" ]; then
        touch "$d/health.stop"
        kill -TERM "$hpid" 2>/dev/null || true
        wait "$hpid" || fail "round $r: bench_health: $(tail -1 "$d/health.$r.out")"
        wait "$lpid" || true
        bg_pids=()
        cat "$d/health.samples.$r" >>"$d/health.samples" 2>/dev/null || true
        grep '^load' "$d/health.$r.out" >>"$d/health.load" || true
      fi
      ok=0
      for ((k = 1; k <= c; k++)); do
        if [ "${rcs[$((k - 1))]}" != 0 ]; then
          bad_rc=$((bad_rc + 1))
          echo "  round $r, $c clients: client $k exit ${rcs[$((k - 1))]}: $(tail -1 "$d/c$k.err")"
        elif [ -f "$d/pred.csv" ] && cmp -s "$d/c$k.csv" "$d/pred.csv"; then
          ok=$((ok + 1))
        else
          bad_csv=$((bad_csv + 1))
          echo "  round $r, $c clients: client $k's CSV differs from predict's"
        fi
        rm -f "$d/c$k.csv"
      done
      ips=$(awk -v n="$((n * c))" -v w="$w" 'BEGIN { printf "%.3f", n / (w / 1000) }')
      echo "$ips" >>"$d/tp.$c"
      printf '  round %d: %2d client(s) %4d images in %8.1f ms = %6.2f images/s, CSVs identical %d/%d\n' \
        "$r" "$c" "$((n * c))" "$w" "$ips" "$ok" "$c"
    done
    printf '  round %d: predict       %4d images, %.2f images/s (process wall), %.2f images/s (sum of per-image total_ms)\n' \
      "$r" "$n" "$(tail -1 "$d/pred.ips" 2>/dev/null || echo 0)" "$(tail -1 "$d/pred.pipe.ips" 2>/dev/null || echo 0)"
  done
  [ "$bad_rc" = 0 ] || fail "$bad_rc client run(s) failed"
  [ "$bad_csv" = 0 ] || fail "$bad_csv client CSV(s) differ from predict's"
  pw=$(median %.3f <"$d/pred.ips")
  pp=$(median %.3f <"$d/pred.pipe.ips")
  echo
  printf '  %-26s %12s %22s %22s\n' "median of $rounds round(s)" "images/s" "daemon/predict (wall)" "daemon/predict (pipe)"
  printf '  %-26s %12s %22s %22s\n' "osseg predict (wall)" "$pw" "" ""
  printf '  %-26s %12s %22s %22s\n' "osseg predict (pipeline)" "$pp" "" ""
  for c in "${clients[@]}"; do
    m=$(median %.3f <"$d/tp.$c")
    rw=$(awk -v a="$m" -v b="$pw" 'BEGIN { if (b + 0 > 0 && a != "-") printf "%.2f", a / b; else print "-" }')
    rp=$(awk -v a="$m" -v b="$pp" 'BEGIN { if (b + 0 > 0 && a != "-") printf "%.2f", a / b; else print "-" }')
    printf '  %-26s %12s %22s %22s\n' "ossegd, $c client(s)" "$m" "$rw" "$rp"
    add_row "2. throughput ossegd, $c client(s)" "$m images/s (x$rw of predict's wall rate, x$rp of its pipeline rate)"
  done
  echo "  predict (wall): images / process wall time, model load included; predict (pipeline): images / sum of its per-image total_ms."
  add_row "2. throughput osseg predict" "$pw images/s wall incl. load, $pp images/s pipeline"
  add_row "2. client CSVs == predict CSV, failed clients" "$bad_csv differing, $bad_rc failed"
  add_row "5. peak RSS osseg predict ($n images)" "$(sort -n "$d"/pred.rss.* 2>/dev/null | tail -1 | awk '{ printf "%.0f", $1 / 1024 }') MiB (max of rounds)"
  if [ "$health_on" = 1 ]; then
    echo
    echo "  3. Health while $health_clients clients run (all rounds):"
    for kind in fresh persistent; do
      awk -v k="$kind" '$1 == k && $2 >= 0 { print $2 }' "$d/health.samples" >"$d/h.$kind"
      nf=$(awk -v k="$kind" '$1 == k && $2 < 0' "$d/health.samples" | wc -l)
      printf '    bench_health %-10s  probes %4d  failed %d  median %7s ms  max %7s ms\n' "$kind" \
        "$(wc -l <"$d/h.$kind")" "$nf" "$(median %.3f <"$d/h.$kind")" "$(maxof %.3f <"$d/h.$kind")"
      [ "$nf" = 0 ] || fail "$nf $kind Health probe(s) failed under load"
    done
    grep -v fail "$d/health.cli" >"$d/h.cli" || true
    ncf=$(grep -c fail "$d/health.cli" || true)
    printf '    osseg health (wall)      probes %4d  failed %d  median %7s ms  max %7s ms\n' \
      "$(wc -l <"$d/h.cli")" "$ncf" "$(median <"$d/h.cli")" "$(maxof <"$d/h.cli")"
    [ "$ncf" = 0 ] || fail "$ncf osseg health call(s) failed under load"
    echo "    $(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[2] > m[kv[1]]) m[kv[1]] = kv[2] } } END { printf "daemon load seen by the probes: max queue depth %d, max in flight %d, max connections %d", m["max_queue_depth"], m["max_in_flight"], m["max_connections"] }' "$d/health.load" 2>/dev/null)"
    echo "    idle: $(grep -E '^(fresh|persistent)' "$d/health.idle" | awk '{ printf "%s%s median %s ms, max %s ms", (NR > 1 ? "; " : ""), $1, substr($4, 11), substr($6, 8) }')"
    add_row "3. Health under load, bench_health fresh" "median $(median %.3f <"$d/h.fresh") ms, max $(maxof %.3f <"$d/h.fresh") ms (connect+request+answer)"
    add_row "3. Health under load, bench_health persistent" "median $(median %.3f <"$d/h.persistent") ms, max $(maxof %.3f <"$d/h.persistent") ms"
    add_row "3. Health under load, osseg health (wall)" "median $(median <"$d/h.cli") ms, max $(maxof <"$d/h.cli") ms (process start included)"
  fi
  rm -f "$d/pred.csv"
  echo
fi

if want latency || want throughput; then
  main_hwm=$(vmhwm "$daemon_pid")
  echo "== 5. ossegd ($(basename "$model")) peak RSS: VmHWM $main_hwm MiB (idle after start-up $main_idle_rss MiB)"
  add_row "5. peak RSS ossegd ($(basename "$model"))" "$main_hwm MiB (idle after start-up $main_idle_rss MiB)"
  stop_daemon
  echo
fi

# ================================================================ 4. cancel ===
if want cancel; then
  echo "== 4. cancel latency: $(basename "$cancel_model") on $(basename "$image"), next request $(basename "$tiny_model")"
  d=$tmp/cancel
  mkdir -p "$d"
  T "$phantom" --seed 3000 --count 1 --size "$stress_size" --out "$d/next" >/dev/null
  next_imgs=("$d"/next/images/*.png)
  next_img=${next_imgs[0]}
  start_daemon cancel --workers 1 --model "slow=$cancel_model" --model "tiny=$tiny_model"
  ccmd=("$helper_cancel" --socket "$daemon_sock" --model slow --image "$image" --next-model tiny
    --next-image "$next_img" --trials "$cancel_trials")
  show "${ccmd[@]}"
  if T "${ccmd[@]}" >"$d/out" 2>"$d/err"; then
    sed 's/^/    /' "$d/out"
    line=$(grep '^cancel ' "$d/out")
    base=$(grep '^baseline ' "$d/out")
    echo
    printf '  %-44s %9s %9s\n' "Cancel sent -> (ms, $(kv cancelled <<<"$line") cancelled)" median max
    printf '  %-44s %9s %9s\n' "CANCELLED error arrives" "$(kv cancelled_median_ms <<<"$line")" "$(kv cancelled_max_ms <<<"$line")"
    printf '  %-44s %9s %9s\n' "Cancel acknowledged (empty Done)" "$(kv ack_median_ms <<<"$line")" "-"
    printf '  %-44s %9s %9s\n' "next request starts (its Done.queue_ms)" "$(kv next_queue_median_ms <<<"$line")" "$(kv next_queue_max_ms <<<"$line")"
    printf '  %-44s %9s %9s\n' "next request's Done arrives" "$(kv next_done_median_ms <<<"$line")" "$(kv next_done_max_ms <<<"$line")"
    printf '  %-44s %9s %9s\n' "  minus its time alone ($(kv next_wall_ms <<<"$base") ms)" "$(kv next_extra_median_ms <<<"$line")" "$(kv next_extra_max_ms <<<"$line")"
    echo "  (uncancelled: inference $(kv inference_ms <<<"$base") ms, total $(kv total_ms <<<"$base") ms; $(kv finished <<<"$line") trial(s) finished before the Cancel)"
    add_row "4. cancel -> CANCELLED" "median $(kv cancelled_median_ms <<<"$line") ms, max $(kv cancelled_max_ms <<<"$line") ms ($(kv cancelled <<<"$line")/$(kv trials <<<"$line") cancelled; inference $(kv inference_ms <<<"$base") ms)"
    add_row "4. cancel -> next request starts" "median $(kv next_queue_median_ms <<<"$line") ms, max $(kv next_queue_max_ms <<<"$line") ms (--workers 1)"
  else
    sed 's/^/    /' "$d/out" "$d/err"
    fail "bench_daemon_cancel failed"
  fi
  hwm=$(vmhwm "$daemon_pid")
  echo "  5. ossegd (cancel: $(basename "$cancel_model") + tiny, 1 worker) peak RSS: VmHWM $hwm MiB"
  add_row "5. peak RSS ossegd ($(basename "$cancel_model") + tiny)" "$hwm MiB"
  stop_daemon
  echo
fi

# ================================================================ 6. stress ===
if want stress; then
  echo "== 6. $stress_clients concurrent clients x $stress_requests requests, $(basename "$tiny_model"), ${stress_size}² images"
  d=$tmp/stress
  mkdir -p "$d"
  show "$phantom" --seed 2000 --count "$stress_requests" --size "$stress_size" --out "$d/img"
  T "$phantom" --seed 2000 --count "$stress_requests" --size "$stress_size" --out "$d/img" >/dev/null
  simgs=("$d"/img/images/*.png)
  start_daemon stress --model "tiny=$tiny_model"
  st_seg() { cmd=("$osseg" segment --socket "$daemon_sock" --model tiny "${inflight_opt[@]}" -o "$1" "${simgs[@]}"); }
  show "$osseg" segment --socket "$daemon_sock" --model tiny "${inflight_opt[@]}" -o "$d/ref.csv" "$d/img/images/*.png"
  show "$osseg" predict --model "$tiny_model" "${thread_opt[@]}" -o "$d/pred.csv" "$d/img/images/*.png"
  st_seg "$d/ref.csv"
  T "${cmd[@]}" 2>"$d/ref.err" || fail "single-client reference run: $(tail -1 "$d/ref.err")"
  T "$osseg" predict --model "$tiny_model" "${thread_opt[@]}" -o "$d/pred.csv" "${simgs[@]}" 2>"$d/pred.err" ||
    fail "predict reference run: $(tail -1 "$d/pred.err")"
  if cmp -s "$d/ref.csv" "$d/pred.csv"; then ref_vs_pred=identical; else ref_vs_pred=DIFFERENT; fail "single-client CSV differs from predict's"; fi
  echo "  single-client CSV vs predict's: $ref_vs_pred; rows $(($(wc -l <"$d/ref.csv") - 1))"
  show "$osseg" segment --socket "$daemon_sock" --model tiny "${inflight_opt[@]}" -o "$d/cK.csv" "$d/img/images/*.png"
  echo "    ($stress_clients such processes at once, K = 1..$stress_clients)"
  pids=()
  t0=$(now)
  for ((k = 1; k <= stress_clients; k++)); do
    st_seg "$d/c$k.csv"
    "${TO[@]}" "${cmd[@]}" 2>"$d/c$k.err" &
    pids+=($!)
  done
  bg_pids+=("${pids[@]}")
  sbad_rc=0 sbad_csv=0 sok=0 k=0
  for p in "${pids[@]}"; do
    k=$((k + 1))
    if ! wait "$p"; then
      sbad_rc=$((sbad_rc + 1))
      echo "  client $k failed: $(tail -1 "$d/c$k.err")"
    elif cmp -s "$d/c$k.csv" "$d/ref.csv"; then
      sok=$((sok + 1))
    else
      sbad_csv=$((sbad_csv + 1))
      echo "  client $k: CSV differs from the single-client one"
    fi
  done
  w=$(ms_since "$t0")
  bg_pids=()
  T "$osseg" stats --socket "$daemon_sock" --json >"$d/stats.json" 2>"$d/stats.err" || fail "osseg stats: $(tail -1 "$d/stats.err")"
  outcomes=$(grep -o '"outcomes":{[^}]*}' "$d/stats.json" | sed 's/^"outcomes"://' || true)
  ok_count=$(grep -o '"outcomes":{[^}]*}' "$d/stats.json" | grep -o '"ok":[0-9]*' | cut -d: -f2 || true)
  expect=$(((stress_clients + 1) * stress_requests))
  hwm=$(vmhwm "$daemon_pid")
  echo "  $stress_clients clients done in $w ms ($(awk -v n="$((stress_clients * stress_requests))" -v w="$w" 'BEGIN { printf "%.1f", n / (w / 1000) }') images/s): $sok identical, $sbad_csv differing, $sbad_rc failed"
  echo "  $ osseg stats --socket ... --json  -> outcomes $outcomes (expected ok = $expect: reference + $stress_clients x $stress_requests)"
  [ $((sbad_rc + sbad_csv)) = 0 ] || fail "stress: $sbad_csv differing CSV(s), $sbad_rc failed client(s)"
  [ "${ok_count:-0}" = "$expect" ] || fail "stress: Stats counts ${ok_count:-?} ok requests, expected $expect"
  echo "  5. ossegd (tiny) peak RSS: VmHWM $hwm MiB"
  add_row "6. $stress_clients clients x $stress_requests, identical / lost" "$sok/$stress_clients CSVs identical, $((stress_clients - sok)) client(s) failed or differing; Stats ok ${ok_count:-?}/$expect"
  add_row "5./6. peak RSS ossegd (tiny, $stress_clients clients)" "$hwm MiB"
  stop_daemon
  rm -f "$d"/c*.csv
  echo
fi

echo "== summary ($(nproc) cores, load average now $(cut -d' ' -f1-3 /proc/loadavg); provisional on a shared machine)"
for row in "${summary[@]}"; do echo "  $row"; done
if [ "$failures" = 0 ]; then
  echo "  all checks passed"
else
  echo "  $failures check(s) FAILED (see above)"
  exit 1
fi

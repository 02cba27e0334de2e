#!/bin/sh
# The engine's dependency rules, checked on the compiled library (its
# call graph between files, from the symbols each object file defines and
# uses, read with nm) and on the sources' #include lines:
#
#  1. no circle between engine files (tsort finds none);
#  2. an op file (engine/ops/F.c) calls only the build API and the IR
#     (build.c, view.c, ir.c, dims.c, resample.c, const.c, requant.c),
#     never the driver nor another op file, except within its family
#     (ops/conv*.c share ops/conv.h); nothing but op_table.c refers to an
#     op file;
#  3. a pass (engine/passes/*.c) calls only the IR, the views and the other
#     passes' shared helpers, never an op file nor the driver;
#  4. an op file includes only build.h, ir.h, view.h, its family's header
#     and the header-only loop utilities (bf16.h, isa_variants.h), plus
#     engine_test_hooks.h for test overrides.
#
#   tools/check_engine_deps.sh LIBOSSEG_ENGINE.a ENGINE_SRC_DIR
#   tools/check_engine_deps.sh --self-test    (the checker finds a planted circle)
#
# Exit status 0 when every rule holds, 1 with the offending files named.
set -eu

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Edges "A B" (file A calls or reads a symbol defined in file B) -> rule 1.
check_cycles() {
  if ! tsort "$1" >/dev/null 2>"$tmp/tsort.err"; then
    echo "check_engine_deps: circle between engine files:" >&2
    sed -n 's/^tsort: /  /p' "$tmp/tsort.err" >&2
    return 1
  fi
}

if [ "${1:-}" = "--self-test" ]; then
  printf 'compile build\nbuild conv\nconv build\n' >"$tmp/edges"
  if check_cycles "$tmp/edges" 2>/dev/null; then
    echo "check_engine_deps: self-test: the planted circle was not found" >&2
    exit 1
  fi
  printf 'compile build\nop_table conv\nconv build\n' >"$tmp/edges"
  check_cycles "$tmp/edges" || { echo "check_engine_deps: self-test: false circle" >&2; exit 1; }
  echo "check_engine_deps: self-test ok"
  exit 0
fi

[ $# -eq 2 ] || { echo "usage: $0 LIBOSSEG_ENGINE.a ENGINE_SRC_DIR | --self-test" >&2; exit 2; }
lib=$1
src=$2

# member (object file, without .c.o) -> defined and undefined global symbols
nm -A -g "$lib" 2>/dev/null | awk -v d="$tmp/def" -v u="$tmp/und" '
  { n = split($0, f, ":"); m = f[2]; sub(/\.c\.o$/, "", m)
    k = split(f[n], w, " "); sym = w[k]; type = w[k - 1]
    if (type == "U") print m, sym > u; else print sym, m > d }'
awk 'NR == FNR { def[$1] = $2; next }
     ($2 in def) && def[$2] != $1 { print $1, def[$2] }' "$tmp/def" "$tmp/und" | sort -u >"$tmp/edges"
[ -s "$tmp/edges" ] || { echo "check_engine_deps: no symbols read from $lib" >&2; exit 1; }

# which member is an op file, a pass
for f in "$src"/ops/*.c; do basename "$f" .c; done >"$tmp/ops"
: >"$tmp/passes"
if [ -d "$src/passes" ]; then for f in "$src"/passes/*.c; do basename "$f" .c; done >"$tmp/passes"; fi

status=0
check_cycles "$tmp/edges" || status=1

awk -v opsf="$tmp/ops" -v passf="$tmp/passes" '
  BEGIN {
    while ((getline l < opsf) > 0) op[l] = 1
    while ((getline l < passf) > 0) pass[l] = 1
    split("build view ir dims resample const requant", a, " "); for (i in a) api[a[i]] = 1
    split("ir dims resample const view", a, " "); for (i in a) graph[a[i]] = 1
  }
  function family(x) { return x ~ /^conv/ ? "conv" : x }
  ($1 in op) && !($2 in api) && !(($2 in op) && family($1) == family($2)) {
    printf "check_engine_deps: op file ops/%s.c calls %s.c\n", $1, $2; bad = 1 }
  !($1 in op) && $1 != "op_table" && ($2 in op) {
    printf "check_engine_deps: %s.c calls op file ops/%s.c (only op_table.c may)\n", $1, $2; bad = 1 }
  ($1 in pass) && !($2 in graph) && !($2 in pass) {
    printf "check_engine_deps: pass passes/%s.c calls %s.c\n", $1, $2; bad = 1 }
  END { exit bad }' "$tmp/edges" >&2 || status=1

for f in "$src"/ops/*.c; do
  grep -h '^#include "' "$f" | sed 's/^#include "\(.*\)".*/\1/' | while read -r h; do
    case $h in
      build.h | ir.h | view.h | bf16.h | isa_variants.h | engine_test_hooks.h | ops/conv.h) ;;
      *) echo "check_engine_deps: ops/$(basename "$f") includes $h" ;;
    esac
  done
done >"$tmp/includes"
if [ -s "$tmp/includes" ]; then cat "$tmp/includes" >&2; status=1; fi

[ $status -eq 0 ] && echo "check_engine_deps: $(wc -l <"$tmp/edges") file dependencies, no circle; op files and passes keep to their APIs"
exit $status

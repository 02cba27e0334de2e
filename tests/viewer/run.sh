#!/bin/sh
# CTest's entry to the viewer test (run.mjs): exits 77 (skipped) when node,
# Debian's chromium or tests/viewer/node_modules are missing, so that a
# machine without them skips the test instead of failing it.
#   run.sh OSSEG GEN_PREDICTIONS WORKDIR
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: no node (apt-get install --no-install-recommends nodejs npm)"
  exit 77
fi
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "SKIP: no ${CHROMIUM:-/usr/bin/chromium} (apt-get install --no-install-recommends chromium)"
  exit 77
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "SKIP: no playwright-core: (cd tests/viewer && npm ci)"
  exit 77
fi
[ -n "$3" ] && [ "$3" != / ] || { echo "usage: run.sh OSSEG GEN_PREDICTIONS WORKDIR" >&2; exit 2; }
rm -rf "$3" && mkdir -p "$3" || exit 1
exec node "$here/run.mjs" --osseg "$1" --gen "$2" --work "$3"

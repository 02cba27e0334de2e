#!/bin/sh
# The README's main job. Placeholder until the offline tools land.
set -eu
echo "osseg demo: nothing to run yet"

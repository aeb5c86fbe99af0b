#!/usr/bin/env bash
# Fails when generated files (deepcopy code, deploy/charts/strait/crds) differ from what
# "make generate" produces: regenerates into a scratch copy of the tree and
# compares, so the working tree is never touched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d -t strait-verify-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# Copy what git knows of (tracked and untracked-but-not-ignored files).
(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$root" && xargs -0 cp --parents -t "$scratch" 2>/dev/null || true)

make -s -C "$scratch" generate >/dev/null
status=0
for dir in deploy/charts/strait/crds pkg/apis; do
  if ! diff -ru "$root/$dir" "$scratch/$dir"; then status=1; fi
done
if [ "$status" -ne 0 ]; then
  echo "verify: generated files are stale or were edited by hand; run 'make generate' and commit the result" >&2
fi
exit "$status"

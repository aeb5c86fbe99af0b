#!/usr/bin/env bash
# Fails when a package imports the wrong way. The rules (docs/architecture.md,
# "Imports"):
#   1. Nothing that ships imports test/: only test/ and _test.go files may.
#   2. pkg/ is the shared library: it never imports a component (gateway/,
#      routeagent/, lighthouse/, globalnet/). Only the CLI's library
#      (pkg/cmd/, pkg/member) may import broker/, the broker's client library.
#   3. Components never import one another; broker/ imports no component.
#   4. straitctl links no data plane: no netlink, WireGuard or iptables
#      package among `go list -deps ./cmd/straitctl`.
# Usage: hack/check-imports.sh   (exit 1 and a line per violation)
set -euo pipefail
cd "$(dirname "$0")/.."
mod=strait.dev/strait
components='gateway|routeagent|lighthouse|globalnet'
status=0
fail() { echo "imports: $*" >&2; status=1; }

# Each shipped package (non-test files only) with its direct imports.
while read -r pkg imports; do
  rel=${pkg#"$mod"}; rel=${rel#/}
  for imp in $imports; do
    case $imp in "$mod"/*) ;; *) continue ;; esac
    dep=${imp#"$mod"/}
    if [[ $dep == test/* || $dep == test ]] && [[ $rel != test/* ]]; then
      fail "$rel imports $dep (only test/ may import test/)"
    fi
    if [[ $rel == pkg/* ]] && [[ $dep =~ ^($components)(/|$) ]]; then
      fail "$rel imports the component $dep (pkg/ never imports a component)"
    fi
    if [[ $rel == pkg/* ]] && [[ $rel != pkg/cmd/* && $rel != pkg/member ]] && [[ $dep =~ ^broker(/|$) ]]; then
      fail "$rel imports $dep (only pkg/cmd and pkg/member use the broker library)"
    fi
    if [[ $rel =~ ^($components|broker)(/|$) ]] && [[ $dep =~ ^($components)(/|$) ]]; then
      own=${rel%%/*}; other=${dep%%/*}
      if [[ $own != "$other" ]]; then
        fail "$rel imports $dep (components do not import one another)"
      fi
    fi
  done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)

bad=$(go list -deps ./cmd/straitctl | grep -E 'vishvananda/netlink|golang\.zx2c4\.com/wireguard|coreos/go-iptables' || true)
if [ -n "$bad" ]; then
  fail "straitctl links data-plane packages: $(echo "$bad" | tr '\n' ' ')"
fi
exit $status

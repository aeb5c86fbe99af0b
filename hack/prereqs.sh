#!/usr/bin/env bash
# Checks that this machine has what Strait's build and tests need, and installs
# what is missing from Debian's package archive when run as root. Nothing is
# fetched from anywhere but the package registries (apt and the Go module proxy).
#
# Usage: hack/prereqs.sh            check, and install as root
#        hack/prereqs.sh --check    check only
set -euo pipefail

# command -> Debian package that provides it
declare -A need=(
  [ip]=iproute2          # network namespaces, veth, bridges, routes, rules
  [bridge]=iproute2      # FDB entries for VXLAN
  [iptables]=iptables    # kube-proxy, masquerade, our chains (nf_tables backend)
  [ip6tables]=iptables
  [iptables-save]=iptables      # pkg/nodenet reads chains with it
  [iptables-restore]=iptables   # and swaps them in one --noflush commit
  [ip6tables-save]=iptables
  [ip6tables-restore]=iptables
  [conntrack]=conntrack  # kube-proxy clears stale UDP flows with it
  [nft]=nftables         # kube-proxy's nftables mode (--proxy-mode nftables) runs it
  [nsenter]=util-linux   # entering pod and node namespaces
  [unshare]=util-linux
  [ping]=iputils-ping    # ICMP checks across tunnels
  [iperf3]=iperf3        # throughput benchmarks
  [curl]=curl            # HTTP checks in demos
  [crun]=crun            # the sandbox's OCI runtime (strait-sandbox up --runtime oci: test/sandbox/node/oci.go); crun over runc: it runs with its cgroup manager disabled
  [busybox]=busybox      # the sandbox's busybox, alpine/socat and netshoot images (test/sandbox/node/images.go)
  [dig]=bind9-dnsutils   # netshoot's dig and nslookup
  [nslookup]=bind9-dnsutils
  [nc]=netcat-openbsd    # netshoot's nc
  [socat]=socat          # the alpine/socat image's entrypoint, and netshoot's socat
  [promtool]=prometheus  # deploy/monitoring checks and unit-tests the alert rules
  [git]=git              # make verify compares generated files
  [make]=make
)

missing_pkgs=()
missing_cmds=()
for cmd in "${!need[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/sbin/$cmd" ]; then
    missing_cmds+=("$cmd")
    missing_pkgs+=("${need[$cmd]}")
  fi
done

go_ok=1
if ! command -v go >/dev/null 2>&1; then
  go_ok=0
else
  # go1.26 or newer: the modules say "go 1.26.0".
  v=$(go env GOVERSION | sed 's/^go//')
  major=${v%%.*}; rest=${v#*.}; minor=${rest%%.*}
  if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 26 ]; }; then go_ok=0; fi
fi
if [ "$go_ok" -eq 0 ]; then
  echo "prereqs: Go 1.26 or newer is required (https://go.dev/doc/install); found: $(go version 2>/dev/null || echo none)" >&2
  exit 1
fi

if [ "${#missing_pkgs[@]}" -eq 0 ]; then
  exit 0
fi
pkgs=$(printf '%s\n' "${missing_pkgs[@]}" | sort -u | tr '\n' ' ')
if [ "${1:-}" = "--check" ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "prereqs: missing ${missing_cmds[*]}; install with: apt-get install -y $pkgs" >&2
  exit 1
fi
echo "prereqs: installing $pkgs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null

#!/usr/bin/env bash
# The main job, in the sandbox: two clusters of three nodes on this machine,
# the test workload in each, and traffic across nodes and through Services.
# It ends with the main job as users see it: the app team exports web from both
# clusters, and a pod in c1 reaches it by its clusterset.local name, first in
# its own cluster, then, with c1's web scaled to zero, in c2.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=_output/bin
sbx="$bin/strait-sandbox"

# kubectl is the one built from source with the other Kubernetes binaries
# ("make kube-binaries"; the Makefile exports STRAIT_KUBE_BIN), never one that
# happens to be on PATH: the function shadows any installed kubectl.
if [ -z "${STRAIT_KUBE_BIN:-}" ]; then
  STRAIT_KUBE_BIN="$PWD/_output/kube/$(awk '$1 == "k8s.io/kubernetes" { print $2 }' test/kube/go.mod)"
fi
KUBECTL="$STRAIT_KUBE_BIN/kubectl"
if ! [ -x "$KUBECTL" ]; then
  echo "demo: $KUBECTL is missing; run 'make kube-binaries' (or 'make demo')" >&2
  exit 1
fi
kubectl() { "$KUBECTL" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Bringing up a sandbox: 2 clusters x 3 nodes, in network namespaces"
"$sbx" up --clusters 2 --nodes 3

for c in c1 c2; do
  kc=".sandbox/$c.kubeconfig"
  kubectl --kubeconfig "$kc" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: strait/testpod:demo
        args: [serve]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
YAML
done
for c in c1 c2; do
  kubectl --kubeconfig ".sandbox/$c.kubeconfig" rollout status deployment/web --timeout=90s >/dev/null
  say "Cluster $c: the test workload, one pod per node"
  kubectl --kubeconfig ".sandbox/$c.kubeconfig" get pods -o wide
done

kc=.sandbox/c1.kubeconfig
pods=($(kubectl --kubeconfig "$kc" get pods -l app=web -o jsonpath='{.items[*].metadata.name}'))
ip2=$(kubectl --kubeconfig "$kc" get pod "${pods[1]}" -o jsonpath='{.status.podIP}')
svc=$(kubectl --kubeconfig "$kc" get service web -o jsonpath='{.spec.clusterIP}')
say "c1: ${pods[0]} asks ${pods[1]} ($ip2) directly, across nodes"
"$sbx" exec "c1/default/${pods[0]}" -- "$PWD/$bin/strait-testpod" connect --http "http://$ip2:8080/"
say "c1: ${pods[0]} asks Service web ($svc) through kube-proxy"
"$sbx" exec "c1/default/${pods[0]}" -- "$PWD/$bin/strait-testpod" connect --http "http://$svc/"

ctl="$PWD/$bin/straitctl"
admin() { "$sbx" admin -- "$@"; }
say "Deploying the Strait broker into c1 (from the admin host, which reaches every apiserver)"
admin "$ctl" deploy-broker --kubeconfig .sandbox/admin/c1.kubeconfig --output .sandbox/broker-info.strait
for c in c1 c2; do
  say "Joining $c (WireGuard, gateways ${c}-n1 and ${c}-n2)"
  admin "$ctl" join .sandbox/broker-info.strait --kubeconfig ".sandbox/admin/$c.kubeconfig" --clusterid "$c" \
    --gateway-nodes "$c-n1,$c-n2" --pod-cidr "10.${c#c}.0.0/16"
done
say "Waiting for each cluster to see the other through the broker"
for i in $(seq 1 60); do
  n1=$("$ctl" show endpoints --kubeconfig .sandbox/c1.kubeconfig | tail -n +2 | wc -l)
  n2=$("$ctl" show endpoints --kubeconfig .sandbox/c2.kubeconfig | tail -n +2 | wc -l)
  [ "$n1" -ge 2 ] && [ "$n2" -ge 2 ] && break
  sleep 1
done
say "c1: straitctl show clusters"
"$ctl" show clusters --kubeconfig .sandbox/c1.kubeconfig
say "c1: straitctl show endpoints"
"$ctl" show endpoints --kubeconfig .sandbox/c1.kubeconfig
say "c2: straitctl show gateways"
"$ctl" show gateways --kubeconfig .sandbox/c2.kubeconfig

# pod_on CLUSTER NAME NODE: a serving test pod on NODE; prints its IP once Ready.
pod_on() {
  local kc=".sandbox/$1.kubeconfig"
  kubectl --kubeconfig "$kc" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $2, namespace: default}
spec:
  nodeName: $3
  containers:
  - name: c
    image: strait/testpod:demo
    args: [serve]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
YAML
  kubectl --kubeconfig "$kc" wait --for=condition=Ready "pod/$2" --timeout=60s >/dev/null
  kubectl --kubeconfig "$kc" get pod "$2" -o jsonpath='{.status.podIP}'
}

# A pod on each cluster's active gateway node (the holder of the gateway
# Lease), and traffic between them through the WireGuard cable.
declare -A podip
for c in c1 c2; do
  node=$(kubectl --kubeconfig ".sandbox/$c.kubeconfig" -n strait-system get lease strait-gateway -o jsonpath='{.spec.holderIdentity}')
  podip[$c]=$(pod_on "$c" gw-side "$node")
done
say "c1 gw-side (${podip[c1]}) pings c2 gw-side (${podip[c2]}) through the WireGuard cable"
for i in $(seq 1 30); do
  "$sbx" exec c1/default/gw-side -- ping -c 1 -W 1 "${podip[c2]}" >/dev/null 2>&1 && break
  sleep 1
done
"$sbx" exec c1/default/gw-side -- ping -c 3 "${podip[c2]}"
say "c1 gw-side fetches a page from c2 gw-side"
"$sbx" exec c1/default/gw-side -- "$PWD/$bin/strait-testpod" connect --http "http://${podip[c2]}:8080/"
say "c1: straitctl show connections"
"$ctl" show connections --kubeconfig .sandbox/c1.kubeconfig

# Pods on the non-gateway nodes: their traffic goes through the route
# agents' overlay to the active gateway, then through the cable.
declare -A n3ip
for c in c1 c2; do
  n3ip[$c]=$(pod_on "$c" n3-side "$c-n3")
done
say "c1 n3-side (non-gateway node c1-n3, ${n3ip[c1]}) fetches a page from c2 n3-side (c2-n3, ${n3ip[c2]})"
for i in $(seq 1 30); do
  "$sbx" exec c1/default/n3-side -- "$PWD/$bin/strait-testpod" connect --http "http://${n3ip[c2]}:8080/" --timeout 1s >/dev/null 2>&1 && break
  sleep 1
done
"$sbx" exec c1/default/n3-side -- "$PWD/$bin/strait-testpod" connect --http "http://${n3ip[c2]}:8080/"
say "c1-n3's routes to c2 (table 151: through the overlay to the active gateway)"
ip -n strait-c1-n3 route show table 151

# The main job: the app team exports web (a ServiceExport next to the
# Service, in each cluster), and a pod in c1 reaches it by name.
for c in c1 c2; do
  kubectl --kubeconfig ".sandbox/$c.kubeconfig" apply -f - >/dev/null <<YAML
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {name: web, namespace: default}
YAML
done
say "The app team exported web from c1 and c2 (kubectl apply of a ServiceExport in each)"
kubectl --kubeconfig "$kc" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  containers:
  - {name: c, image: nicolaka/netshoot, command: [sleep, infinity]}
YAML
kubectl --kubeconfig "$kc" wait --for=condition=Ready pod/client --timeout=60s >/dev/null
kubectl --kubeconfig "$kc" wait --for=condition=Ready serviceexport/web --timeout=90s >/dev/null
say "c1: the ServiceExport's conditions"
kubectl --kubeconfig "$kc" get serviceexport web -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
for i in $(seq 1 60); do
  [ "$(kubectl --kubeconfig "$kc" get serviceimport web -o jsonpath='{.status.clusters[*].cluster}')" = "c1 c2" ] && break
  sleep 1
done
say "c1: the ServiceImport (its IP is the clusterset IP)"
kubectl --kubeconfig "$kc" get serviceimport web -o jsonpath='type: {.spec.type}{"\n"}ips: {.spec.ips}{"\n"}ports: {.spec.ports}{"\n"}clusters: {.status.clusters[*].cluster}{"\n"}'
# curl_web: the client's request to web by its clusterset name.
curl_web() { kubectl --kubeconfig "$kc" exec client -- curl -s --max-time 3 http://web.default.svc.clusterset.local/; }
say "c1 client: curl http://web.default.svc.clusterset.local/ (served in c1: local first)"
for i in $(seq 1 60); do curl_web >/dev/null 2>&1 && break; sleep 1; done
curl_web
say "c1: web scaled to zero"
kubectl --kubeconfig "$kc" scale deployment/web --replicas=0 >/dev/null
kubectl --kubeconfig "$kc" wait --for=delete pod -l app=web --timeout=60s >/dev/null 2>&1 || true
say "c1 client: the same curl, now served in c2"
for i in $(seq 1 60); do curl_web 2>/dev/null | grep -q '"c2-' && break; sleep 1; done
curl_web

cat <<MSG

$(printf '\033[1m')The sandbox stays up. Look around:$(printf '\033[0m')
  $KUBECTL --kubeconfig .sandbox/c1.kubeconfig get nodes,pods -A -o wide
  $sbx status
  $sbx exec c1/default/client -- ip addr
  $sbx logs c2/default/gw-side
  $sbx admin -- $ctl show endpoints --kubeconfig .sandbox/admin/c2.kubeconfig
Bring it down:
  make sandbox-down
MSG

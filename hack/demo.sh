#!/usr/bin/env bash
# The main job, in the sandbox: two clusters of three nodes on this machine,
# the test workload in each, and traffic across nodes and through Services.
# Later stages of Strait extend it until pods in the two clusters talk through
# clusterset.local names.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=_output/bin
sbx="$bin/strait-sandbox"
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

cat <<MSG

$(printf '\033[1m')The sandbox stays up. Look around:$(printf '\033[0m')
  kubectl --kubeconfig .sandbox/c1.kubeconfig get nodes,pods -A -o wide
  $sbx status
  $sbx exec c1/default/${pods[0]} -- ip addr
  $sbx logs c1/default/${pods[0]}
Bring it down:
  make sandbox-down
MSG

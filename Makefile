# Strait's build, test and demo entry points. "make help" lists them.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO ?= go
OUT := _output
BIN := $(OUT)/bin

# The Kubernetes release the tests and the sandbox run, built from source by the
# test/kube module: the k8s.io/kubernetes version its go.mod requires.
KUBE_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" { print $$2 }' test/kube/go.mod)
KUBE_BIN := $(OUT)/kube/$(KUBE_VERSION)
KUBE_CMDS := kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl
export STRAIT_KUBE_BIN := $(abspath $(KUBE_BIN))

# Tools run at pinned versions through the Go module proxy.
CONTROLLER_GEN := $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# gotestsum runs go test -json, prints go test's own output (or the format in
# GOTESTSUM_FORMAT, e.g. testname) and keeps every test's events and time in
# _output/test/<tier>.json, from which each tier lists its slowest tests.
GOTESTSUM := $(GO) run gotest.tools/gotestsum@v1.13.0
export GOTESTSUM_FORMAT ?= standard-quiet

# Extra flags for "make sandbox", e.g. SANDBOX_ARGS="--clusters 3 --nat c2".
SANDBOX_ARGS ?= --clusters 2 --nodes 3

# go test's own bound on the whole run; CI allows 90 minutes and the suite is
# meant to take well under 30.
TEST_TIMEOUT ?= 30m

.PHONY: help
help: ## List the targets.
	@awk -F ':.*## ' '/^[a-z0-9-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: prereqs
prereqs: ## Check (and as root, install) the system packages the tests need.
	@hack/prereqs.sh

.PHONY: build
build: ## Build every Strait binary (and the sandbox's test binaries) into _output/bin/
	$(GO) build -o $(BIN)/ ./cmd/... ./test/cmd/...

# The architectures and the tag of "make images" (the tag is also linked into
# the binaries as their version; straitctl join's default --image-tag is the
# same "devel" for a build from a checkout).
IMAGES_ARCH ?= amd64,arm64
IMAGES_TAG ?= devel

.PHONY: images
images: ## Build an OCI image of every component into _output/images/<component>.tar (linux/amd64 and arm64; no daemon, no base image; docs/images.md).
	$(GO) run ./hack/images -arch $(IMAGES_ARCH) -version $(IMAGES_TAG)

.PHONY: test-images
test-images: ## Build every image twice and compare their digests, check each architecture's ELF files; as root also run the gateway image's own iptables and the test workload's ping chrooted in a network namespace.
	STRAIT_IMAGES_TEST=1 STRAIT_IMAGES_ARCH=$(IMAGES_ARCH) $(GO) test -count=1 -v $(TESTFLAGS) ./hack/images

.PHONY: kube-binaries
kube-binaries: $(KUBE_BIN)/.built $(KUBE_BIN)/coredns ## Build etcd, the Kubernetes binaries and CoreDNS from source (once).

$(KUBE_BIN)/.built: test/kube/go.mod test/kube/go.sum test/kube/etcd/main.go
	@echo "Building etcd and Kubernetes $(KUBE_VERSION) from source into $(KUBE_BIN) (a few minutes the first time)"
	cd test/kube && $(GO) build -trimpath -o $(STRAIT_KUBE_BIN)/ ./etcd $(addprefix k8s.io/kubernetes/cmd/,$(KUBE_CMDS))
	touch $@

# CoreDNS, the sandbox clusters' DNS: the version the root go.mod pins with its
# tool directive (test/sandbox/clusterdns names the same tag). It depends on the
# root go.mod alone, so that a change there rebuilds CoreDNS (about 3 minutes
# cold) and not Kubernetes.
$(KUBE_BIN)/coredns: go.mod go.sum
	@echo "Building CoreDNS $$($(GO) list -m -f '{{.Version}}' github.com/coredns/coredns) from source into $(KUBE_BIN)"
	$(GO) build -trimpath -o $(STRAIT_KUBE_BIN)/coredns github.com/coredns/coredns

# The helm CLI, for helm lint, helm template and helm install in the tests
# (deploy/manifests, pkg/cmd/straitctl, pkg/member, test/e2e): built from source through the Go module proxy at the
# version go.mod requires, the one whose Go SDK straitctl renders the chart
# with. go install ...@version builds it with helm's own go.mod.
HELM_VERSION := $(shell awk '$$1 == "helm.sh/helm/v3" { print $$2 }' go.mod)
HELM := $(BIN)/helm
export STRAIT_HELM := $(abspath $(HELM))

.PHONY: helm
helm: $(HELM) ## Build the helm CLI from source (the version go.mod requires) into _output/bin/helm.

$(HELM): go.mod
	@echo "Building helm $(HELM_VERSION) from source into $(BIN)"
	GOBIN=$(abspath $(BIN)) $(GO) install -trimpath helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# Extra flags for go test in the test targets, e.g. TESTFLAGS="-run TestDataplane"
# (with GOTESTSUM_FORMAT=standard-verbose for go test -v's output).
TESTFLAGS ?=

# The packages of each test tier: hack/testsplit decides from the import graph
# (a package whose tests import test/kubetest is integration, test/e2e is e2e,
# every other package is unit), so a new package lands in exactly one tier.
testsplit = $$($(GO) run ./hack/testsplit $(1))
# gotest runs go test on a tier's packages through gotestsum, events into
# _output/test/<name>.json (the folder made first): gotest,<name>,<go test flags and packages>.
gotest = $(GOTESTSUM) --jsonfile $(OUT)/test/$(1).json -- $(2)
# slowest lists the tests (and subtests) of a tier that took over 20 s.
slowest = echo "slowest tests of $(1) (over 20 s):"; $(GOTESTSUM) tool slowest --jsonfile $(OUT)/test/$(1).json --threshold 20s | head -30 || true

.PHONY: test
test: prereqs verify lint build kube-binaries ## Run every test: unit, integration (real apiserver) and e2e (sandbox).
	@# All three tiers run even when one fails, so one run shows every failure.
	@failed=; for tier in test-unit test-integration test-e2e; do \
	  start=$$(date +%s); \
	  if $(MAKE) --no-print-directory $$tier; then result=ok; else result=FAIL; failed="$$failed $$tier"; fi; \
	  echo "make $$tier: $$result in $$(( $$(date +%s) - start ))s"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed"; exit 1; fi

.PHONY: test-unit
test-unit: prereqs helm ## Unit tests: no root, no Kubernetes binaries (kernel tests skip without root).
	@# A unit test that reached for the Kubernetes binaries would fail here,
	@# naming this folder, instead of quietly becoming an integration test.
	pkgs=$(call testsplit,unit); mkdir -p $(OUT)/test; \
	rc=0; STRAIT_KUBE_BIN=$(abspath $(OUT))/no-kubernetes-binaries-in-unit-tests $(call gotest,unit,-count=1 -timeout 5m $(TESTFLAGS) $$pkgs) || rc=1; \
	$(call slowest,unit); exit $$rc

# INTEGRATION_P is how many integration test packages run at once (go test
# -p). Their tests mostly wait on apiservers and timers, and ./gateway alone
# takes about 270 s, so with go test's default (one per core, 2 here) every
# other package queued behind one slot: 558 s on the 2-core machine.
INTEGRATION_P ?= 3

.PHONY: test-integration
test-integration: prereqs helm kube-binaries ## Integration tests against a real etcd and kube-apiserver (test/kubetest).
	pkgs=$(call testsplit,integration); mkdir -p $(OUT)/test; \
	rc=0; $(call gotest,integration,-count=1 -p $(INTEGRATION_P) -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $$pkgs) || rc=1; \
	$(call slowest,integration); exit $$rc

# E2E_RUNTIME is how the e2e sandbox's nodes run Strait's components and the
# test workload: "oci" (the default) runs the images users deploy, built for this machine's
# architecture into _output/images/ first, as containers under Debian's crun;
# "host" runs the binaries of _output/bin/ in the pods' namespaces
# (docs/images.md, "How the sandbox runs the images").
E2E_RUNTIME ?= oci
HOST_ARCH = $(shell $(GO) env GOARCH)

.PHONY: e2e-images
e2e-images: ## The images the e2e runs with E2E_RUNTIME=oci: make images for this machine's architecture only (as root: the e2e skips without).
	@if [ "$(E2E_RUNTIME)" = oci ] && [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory images IMAGES_ARCH=$(HOST_ARCH); fi

.PHONY: test-e2e
test-e2e: prereqs helm build kube-binaries e2e-images ## End-to-end tests in a sandbox of three clusters, then TestGlobalnet in one whose clusters overlap, then the sandbox's own tests, the data-plane matrix and the MCS API per IP family in a dual-stack one, Strait's components running from their images (E2E_RUNTIME; needs root; skips without).
	export STRAIT_E2E_RUNTIME=$(E2E_RUNTIME); \
	pkgs=$(call testsplit,e2e); mkdir -p $(OUT)/test; rc=0; \
	$(call gotest,e2e,-count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $$pkgs) || rc=1; \
	$(call slowest,e2e); \
	STRAIT_E2E_SANDBOX=overlapping $(call gotest,e2e-overlapping,-count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) -run '^TestGlobalnet$$' ./test/e2e) || rc=1; \
	$(call slowest,e2e-overlapping); \
	STRAIT_E2E_SANDBOX=dual $(call gotest,e2e-dual,-count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) -run '^(TestSandbox|TestDataplaneFamilies$$|TestMCSFamilies$$)' ./test/e2e) || rc=1; \
	$(call slowest,e2e-dual); exit $$rc

.PHONY: sandbox
sandbox: build kube-binaries ## Bring up a sandbox of 2 clusters x 3 nodes (kubeconfigs in .sandbox/).
	$(BIN)/strait-sandbox up $(SANDBOX_ARGS)

.PHONY: sandbox-down
sandbox-down: ## Take the sandbox down and remove everything it made.
	@if [ -x $(BIN)/strait-sandbox ]; then $(BIN)/strait-sandbox down; fi

.PHONY: demo
demo: prereqs build kube-binaries ## The main job: run Strait in a sandbox of two clusters and show it working.
	@hack/demo.sh

.PHONY: bench-dns-sandbox
bench-dns-sandbox: prereqs build kube-binaries ## Time clusterset.local answers in a sandbox pod: export -> answer against stock, withdrawal gaps; writes _output/bench/dns-sandbox.json.
	@mkdir -p $(OUT)/bench
	$(GO) build -o $(BIN)/strait-bench-dns-sandbox ./test/bench/dnssandbox
	$(BIN)/strait-bench-dns-sandbox

# Extra flags for "make bench-tunnel" and "make bench-dataplane", e.g.
# BENCH_ARGS="-pairs 2 -seconds 2 -kills 2 -freeze 5s" for a quick try (a ratio
# of fewer than 5 pairs is reported inconclusive); defaults: 5 A/B pairs of
# 5 s per ratio, 10 kills per failover measurement, a 10 s broker freeze, both
# IP families (-families ipv4,ipv6: IPv6 in a dual-stack sandbox; "-families
# ipv4" halves the time), both drivers (-drivers wireguard,vxlan)
# ("$(BIN)/strait-bench-tunnel -h" lists them).
BENCH_ARGS ?=

.PHONY: bench-tunnel
bench-tunnel: prereqs build kube-binaries ## Benchmark the cables against bare ones per IP family, alternating A/B pairs (median ratio, spread, load average); writes _output/bench/tunnel.json.
	@mkdir -p $(OUT)/bench
	$(GO) build -o $(BIN)/strait-bench-tunnel ./test/bench/tunnel
	$(BIN)/strait-bench-tunnel $(BENCH_ARGS) tunnel

.PHONY: bench-dataplane
bench-dataplane: prereqs build kube-binaries ## Benchmark pod-to-pod through gateways and overlay (A/B pairs against a bare cable), failover gaps with and without the broker frozen, per IP family and driver, and Globalnet (IPv4, an overlapping sandbox); writes _output/bench/dataplane.json.
	@mkdir -p $(OUT)/bench
	$(GO) build -o $(BIN)/strait-bench-tunnel ./test/bench/tunnel
	$(BIN)/strait-bench-tunnel $(BENCH_ARGS) dataplane

# Extra flags for "make bench-dns", e.g. BENCH_DNS_ARGS="-imports 500 -rounds 2 -duration 2s"
# for a quick run; every flag also has a BENCH_DNS_* environment variable
# ("$(BIN)/strait-bench-dns -h" lists them).
BENCH_DNS_ARGS ?=

.PHONY: bench-dns
bench-dns: prereqs build kube-binaries ## Benchmark strait-dns against stock CoreDNS on 5,000 imports; writes _output/bench/dns.json.
	@mkdir -p $(OUT)/bench
	$(GO) build -o $(BIN)/strait-bench-dns ./test/bench/dns
	$(BIN)/strait-bench-dns $(BENCH_DNS_ARGS)

.PHONY: generate
generate: ## Regenerate deepcopy code and the chart's CRDs (deploy/charts/strait/crds).
	$(CONTROLLER_GEN) object paths=./pkg/apis/...
	$(CONTROLLER_GEN) crd paths=./pkg/apis/... output:crd:dir=deploy/charts/strait/crds
	$(GO) run ./hack/mcscrds deploy/charts/strait/crds

.PHONY: verify
verify: ## Fail if generated files are stale or were edited by hand.
	@hack/verify-generated.sh

.PHONY: lint
lint: ## gofmt, go vet, staticcheck and the import rules (hack/check-imports.sh).
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd test/kube && $(GO) vet ./etcd
	$(STATICCHECK) ./...
	@hack/check-imports.sh

.PHONY: clean
clean: ## Remove build output (including the cached Kubernetes binaries).
	rm -rf $(OUT)

# routepush: `make demo` runs it on a local lab, `make test` runs every test.
# Both install what they need first (scripts/install-deps.sh) and need root
# for the lab's network namespaces.

GO         ?= go
GOBIN      := $(shell $(GO) env GOPATH)/bin
STATICCHECK = $(GOBIN)/staticcheck

.PHONY: build deps kube-apiserver lint unit e2e deploy-check fuzz test demo bench lab-clean clean

build:
	$(GO) build -o bin/routepush ./cmd/routepush

deps:
	./scripts/install-deps.sh

lint: deps
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Unit tests, the route parsers' checked-in fuzz seeds included.
unit:
	$(GO) test -count=1 -race ./route/... ./inventory/... ./orchestrator/... ./remote/... ./cmd/... ./internal/... ./watch/... ./host/... ./bench/...

# The Kubernetes API server the e2e tests run, built from k8s.io/kubernetes
# (test/kube-apiserver) into ~/.cache/routepush once per version: minutes
# the first time, nothing after.
kube-apiserver:
	$(GO) run ./test/kube/build

# End-to-end tests on labs of real sshd nodes, and a real kube-apiserver
# over etcd (root).
e2e: deps kube-apiserver
	FAULT_SUITE_OUT=$(CURDIR)/.lab-fault-suite.txt $(GO) test -count=1 -timeout 20m ./test/...
	@cat $(CURDIR)/.lab-fault-suite.txt

# deploy/'s manifests against the lab's kube-apiserver: server-side dry-run
# with strict field validation and PodSecurity's restricted level, then
# created, and the ServiceAccount's access checked (root; about 10 s warm).
# make test runs it as part of e2e (./test/...).
deploy-check: deps kube-apiserver
	$(GO) test -count=1 -timeout 5m -v ./test/deploy/

# A short fuzzing run of the text route parser on top of its seeds. The
# budget is a count, not a duration: Go 1.26's fuzz coordinator can fail a
# clean run with "context deadline exceeded" when a duration runs out
# (golang/go#75804, fixed in Go 1.27). 400k runs take about 15 s here.
fuzz:
	$(GO) test ./route -run '^$$' -fuzz FuzzParseText -fuzztime 400000x

test: deps kube-apiserver lint unit e2e fuzz demo

# Brings up a 5-node lab, shows the diff, applies, pings pod to pod before
# and after, and tears the lab down (KEEP=1 leaves it up).
demo: deps build
	$(GO) run ./test/lab/demo -routepush bin/routepush -nodes 5 $(if $(KEEP),-keep)

# routepush against OpenSSH fan-out, the bare SSH connection floor and
# Ansible on labs of BENCH_NODES (default 10,20,50,200; BENCH_NODES=1000 for
# the big run; from 2,000 nodes, BENCH_NODES=5000, the scale sequence of
# issue 19 instead); routepush watch against the lab's kube-apiserver at 50 and
# 200 nodes (BENCH_WATCH_NODES): a node joining and leaving, and the idle
# watcher for a minute; then the Go benchmarks of plan+diff and parsing.
# Writes bench/out/results.{md,json} and the watchers' logs;
# bench/RESULTS.md keeps a committed run.
bench: build kube-apiserver
	./scripts/install-deps.sh bench
	$(GO) run ./bench -routepush bin/routepush
	$(GO) test -run '^$$' -bench . -benchmem ./orchestrator ./route

# Removes lab namespaces left behind by a killed test or demo.
lab-clean:
	$(GO) run ./test/lab/labctl clean

clean:
	rm -rf bin .lab
	rm -f $${ROUTEPUSH_CACHE:-$$HOME/.cache/routepush}/kube-apiserver-*

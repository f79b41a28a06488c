# The two commands of the README: `make run` starts the whole system on the
# local dev server and shows a lifecycle; `make test` runs every test.

SHELL := /bin/bash
TEMPORAL_CLI_VERSION := v1.5.1
TOOLS := $(CURDIR)/.tools/bin
TEMPORAL := $(TOOLS)/temporal
export TEMPORAL_CLI := $(TEMPORAL)

.PHONY: run stop test test-go test-short test-cluster cluster-up cluster-down build tools fmt vet replay-record bench

## tools: build the pinned Temporal CLI (dev server + Web UI) from the Go
## module proxy (it stays out of this module's dependency graph), and
## install what the tests use from Debian if it is missing (root): Chromium
## for the Web UI test, jq for the old system's script, docker-compose to
## check docker-compose.yml, Node.js and npm for the TypeScript master
## (examples/ts-master, whose npm packages it installs too), Prometheus and
## its promtool for the metrics tests and the alert rules' tests.
## scripts/cluster.sh installs PostgreSQL and builds the Temporal server itself.
tools: $(TEMPORAL)
	@# Only what is missing: a machine whose Node.js comes from elsewhere
	@# (nodesource's package bundles npm) cannot take Debian's npm beside it.
	@missing=""; \
	for cmd in chromium jq docker-compose node npm prometheus promtool; do \
		command -v $$cmd >/dev/null || case $$cmd in node) missing="$$missing nodejs";; promtool) ;; *) missing="$$missing $$cmd";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian's$$missing for the tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@test -d examples/ts-master/node_modules || { echo "Installing the TypeScript master's npm packages..."; cd examples/ts-master && npm ci --no-audit --no-fund; }

$(TEMPORAL):
	@echo "Building the Temporal CLI $(TEMPORAL_CLI_VERSION) (3-4 minutes the first time)..."
	GOBIN=$(TOOLS) GOFLAGS= go install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

build:
	go build -o bin/ ./worker ./cmd/starter ./cmd/demo-agent

## run: dev server with Web UI on :8233, the worker program, and a demo worker.
run: $(TEMPORAL) build
	./scripts/run-demo.sh

## stop: stop what `make run` started (and the demo workers).
stop:
	./scripts/stop-demo.sh

## test: every test: gofmt, vet, the unit and integration tests with the
## race detector against a dev server, then the cluster tests.
test: test-go test-cluster

## test-go: gofmt, vet, and `go test -race ./...` (dev server, docker-compose
## config check). The bench's smoke run goes last, alone: it measures, and
## beside the integration suite on a shared machine its figures (and its
## strict 6 s zombie limit) would measure the suite instead.
test-go: tools
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...
	go test -race -count=1 -timeout 30m $$(go list ./... | grep -v /cmd/bench$$)
	go test -race -count=1 -timeout 10m ./cmd/bench

## test-cluster: the integration tests of spawn, heartbeats, zombies,
## shutdown, archival, budget and host loss against a fresh production-shaped
## cluster (Temporal server v1.29.1 on PostgreSQL, no Docker): 3-4 minutes
## once the server is built.
test-cluster: tools
	./scripts/test-cluster.sh

## cluster-up: that cluster for use, with two worker programs (state in
## var/cluster); cluster-down stops it, keeping the data.
cluster-up:
	./scripts/cluster.sh up --workers 2

cluster-down:
	./scripts/cluster.sh down

## test-short: unit tests only (no dev server).
test-short:
	go test -race -count=1 -short ./...

## bench: the benchmarks of docs/BENCHMARKS.md against a dev server of
## their own (about 25 minutes); prints the table, writes bench-results.json.
## `go test ./...` runs the seconds-long smoke profile (`--smoke`).
bench: tools
	go run ./cmd/bench $(BENCH_FLAGS)

## replay-record: record the workflow histories of the integration tests
## into testdata/histories as <name>-<release>.json (the release tag is in
## internal/integration/harness_test.go; HISTORY_TAG=x overrides it). The
## files there are append-only: an existing one is never overwritten.
replay-record: tools
	RECORD_HISTORIES=$(or $(HISTORY_TAG),1) go test -count=1 -timeout 30m ./internal/integration/

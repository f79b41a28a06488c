#!/usr/bin/env bash
# `make test-cluster`: the integration tests of spawn, heartbeats, zombies,
# shutdown, archival, budget (and its throughput under 50 masters) and the loss
# of one of several hosts, against a
# fresh production-shaped cluster (scripts/cluster.sh: Temporal server
# v1.29.1, four services, PostgreSQL), deleted again afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

# Ports apart from a `make cluster-up` (17200) that may be running.
export CLUSTER_PORT_BASE="${CLUSTER_PORT_BASE:-27200}"
export CLUSTER_DIR
CLUSTER_DIR=$(mktemp -d /tmp/lifecycle-cluster.XXXXXX)
trap 'scripts/cluster.sh destroy >/dev/null || true' EXIT

scripts/cluster.sh up
TESTS='^(TestLifecycleEndToEnd|TestZombieIsCleanedUp|TestBudgetRefusedStartsNothing|TestCrashIsCompensated|TestKillStopsAtOnce|TestContinueAsNewLosesNoHeartbeat|TestHundredSpawnsOverABudgetForTen|TestDuplicateStopsRefundOnce|TestShutdownAllOverTwentyWorkers|TestRecalcFixesADriftedLedger|TestArchiveOnDemand|TestArchivalSchedule|TestSweepFindsAZombieAndAnOrphan|TestLostHostIsCleanedUpWithinItsBound|TestLosingOneHostOfThree|TestLedgerThroughputUnderFiftyMasters)$'
LIFECYCLE_TEST_SERVER="127.0.0.1:$((CLUSTER_PORT_BASE + 33))" \
  go test -race -count=1 -timeout 15m -v -run "$TESTS" ./internal/integration/

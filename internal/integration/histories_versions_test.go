package integration

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// The two GetVersion branches of the workflows, each driven by the same
// scenario on the code with the version (version 1, the default) and on the
// code before it (workflow.DefaultVersion). The pre-version histories come
// from a checkout of the parent of the commit that introduced the
// GetVersion call, with this file and histories_helpers_test.go copied in:
//
//	git worktree add /tmp/old-cleanup 989625e^   # cancelled-cleanup-retries
//	git worktree add /tmp/old-ledger bb3b325^    # ledger-survives-cancel
//	cd /tmp/old-X && HISTORIES_PRE_VERSION=1 RECORD_HISTORIES=1 go test -count=1 -run 'TestHistory...' ./internal/integration/
//
// HISTORIES_PRE_VERSION=1 makes the tests expect that older behaviour and
// name the files ...-v0; against the released code it must be unset.

func preVersion() bool { return os.Getenv("HISTORIES_PRE_VERSION") == "1" }

// branch names a history file by the branch it records.
func branch(name string) string {
	if preVersion() {
		return name + "-v0"
	}
	return name + "-v1"
}

// TestHistoryCancelledCleanupRetries cancels a lifecycle whose host's
// worker program is gone, so its compensation cannot stop the process.
// Version 1 of "cancelled-cleanup-retries" keeps it in zombie, retrying on a
// disconnected context, and `starter cleanup` finishes the job once the host
// is back. Before the version, the cancelled lifecycle gave up at once and
// ended in zombie with its process still running.
func TestHistoryCancelledCleanupRetries(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	const host = "it-host-hist-cancel"
	id, pid := spawnOnOwnHost(t, host, "task-hist-cancel-cleanup")
	wid := workflows.WorkflowID(id)

	h.crashWorker(t, host)
	require.NoError(t, h.client.CancelWorkflow(ctx, wid, ""))
	var spec workflows.WorkerSpec
	require.Eventually(t, func() bool {
		spec, _ = h.fleet.Status(ctx, id)
		return spec.Status == workflows.StatusZombie && spec.Cleanup != nil && spec.Cleanup.Refunded == 1000
	}, 60*time.Second, 200*time.Millisecond, "the compensation runs and its stop fails")
	require.Contains(t, spec.Cleanup.Reason, "lifecycle cancelled; cleanup incomplete: stop process")
	require.True(t, procfs.Alive(pid), "nobody could stop it")
	require.Equal(t, before, h.budget(t), "the refund went through")

	if preVersion() {
		// The cancelled lifecycle gives up: it ends as it is, in zombie,
		// and nothing will ever stop its process.
		final, err := h.fleet.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, workflows.StatusZombie, final.Status)
		require.Nil(t, final.Cleanup.CleanedAt)
		require.True(t, procfs.Alive(pid), "the process is left running (the defect the version fixed)")
		rh := fetchHistory(t, wid, "")
		require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, rh.last())
		require.Equal(t, 1, rh.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED))
		require.Len(t, rh.activities("StopProcess"), 1, "one stop, never retried")
		require.Empty(t, rh.versions(t), "no version marker before the version")
		recordRun(t, branch("lifecycle-cancelled-cleanup"), rh)
		return
	}

	// Version 1: still open, waiting to retry the stop.
	desc, err := h.client.DescribeWorkflowExecution(ctx, wid, "")
	require.NoError(t, err)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.WorkflowExecutionInfo.Status, "the cancelled lifecycle keeps retrying")
	require.NoError(t, h.startWorker(host))
	// The caller hears how the retry it asked for ended (version
	// cancelled-cleanup-answer; before it, "canceled").
	answer, _, err := h.fleet.Cleanup(ctx, id)
	require.NoError(t, err, "cleanup of a cancelled lifecycle")
	require.Equal(t, workflows.StatusCleanedUp, answer.Status)
	final, err := h.fleet.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCleanedUp, final.Status)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Equal(t, "lifecycle cancelled", final.Cleanup.Reason)
	require.Equal(t, workflows.ProcessStopped, final.Cleanup.Process)
	require.Equal(t, int64(1000), final.Cleanup.Refunded, "refunded once")
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))

	rh := fetchHistory(t, wid, "")
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, rh.last())
	require.Equal(t, 1, rh.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED))
	// cancelled-cleanup-retries and cancelled-cleanup-answer, implied;
	// its failed cleanup raised an event.
	require.Equal(t, leanVersionsWithEvents(), rh.versions(t))
	require.Len(t, rh.activities("StopProcess"), 2, "the failed stop and its retry")
	rh.refundedBySignal(t)
	recordRun(t, branch("lifecycle-cancelled-cleanup"), rh)
}

// TestHistoryLedgerCancel cancels the budget ledger while a lifecycle holds
// an allocation. Version 1 of "ledger-survives-cancel" continues as new with
// its allocations; before the version the ledger run ended cancelled.
func TestHistoryLedgerCancel(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-hist-ledger-cancel", "--master", "development-master", "--worker-id", id)
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })
	pid := h.status(t, id).PID
	withLive := h.budget(t)
	require.Equal(t, before.Used+1000, withLive.Used)
	wid := workflows.LedgerWorkflowID
	run := currentRunID(t, wid)

	require.NoError(t, h.client.CancelWorkflow(ctx, wid, run))
	var closed enumspb.WorkflowExecutionStatus
	require.Eventually(t, func() bool {
		desc, err := h.client.DescribeWorkflowExecution(ctx, wid, run)
		if err != nil {
			return false
		}
		closed = desc.WorkflowExecutionInfo.Status
		return closed != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}, 20*time.Second, 100*time.Millisecond, "the cancelled ledger run closes")
	rh := fetchHistory(t, wid, run)
	require.Equal(t, 1, rh.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED))

	if preVersion() {
		require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, closed)
		require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, rh.last())
		require.Empty(t, rh.versions(t), "no version marker before the version")
		recordRun(t, branch("ledger-cancel"), rh)
		// The allocations went with it; the lifecycle still stops.
		h.starterOK(t, "kill", id)
		requireGone(t, pid)
		return
	}

	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW, closed)
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, rh.last())
	require.Equal(t, map[string]int{workflows.VersionLedgerSurvivesCancel: 1, workflows.VersionLedgerClosing: 1}, rh.versions(t))
	next := decodeInput[workflows.LedgerState](t, rh)
	require.Contains(t, next.Allocations, id, "the allocation survives the cancel")
	require.Equal(t, withLive, h.budget(t), "a cancel loses nothing")

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id)
	require.Equal(t, int64(1000), final.Cleanup.Refunded, "the refund finds its allocation in the new run")
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))
	recordRun(t, branch("ledger-cancel"), rh)
}

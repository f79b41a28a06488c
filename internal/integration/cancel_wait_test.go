package integration

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestHistoryCancelDuringCleanupWait cancels a zombie while it waits to
// retry a cleanup that cannot reach its host. With the version
// "cancel-during-cleanup-wait" it retries at once and goes on retrying until
// the host is back and the process is stopped; before it (the first
// release), the lifecycle ended in zombie with the process left running.
//
// This file uses only harness calls the first release has too, so that the
// -v0 history can be recorded from a checkout of it:
//
//	git worktree add --detach /tmp/old 2945e95
//	cp internal/integration/cancel_wait_test.go /tmp/old/internal/integration/
//	cd /tmp/old && CANCEL_WAIT_V0=1 RECORD_HISTORIES=1 go test -count=1 -run TestHistoryCancelDuringCleanupWait ./internal/integration/
func TestHistoryCancelDuringCleanupWait(t *testing.T) {
	ctx := context.Background()
	v0 := os.Getenv("CANCEL_WAIT_V0") == "1"
	before := h.budget(t)
	const host = "it-host-hist-cancel-wait"
	require.NoError(t, h.startWorker(host))
	t.Cleanup(func() { h.stopWorker(host, syscall.SIGTERM) })
	id := newID("sleeper")
	wid := workflows.WorkflowID(id)
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-hist-cancel-wait", "--master", "cleanup-master",
		"--worker-id", id, "--host", host, "--zombie-after", "6s", "--host-loss-after", "3s", "--watch-heartbeat", "2m")
	t.Cleanup(func() { killAll(workerProcesses(id)) })

	h.crashWorker(t, host)
	require.Eventually(t, func() bool {
		spec, _ := h.fleet.Status(ctx, id)
		return spec.Cleanup != nil && spec.Status == workflows.StatusZombie && spec.Cleanup.Refunded == 1000
	}, 60*time.Second, 200*time.Millisecond, "a zombie whose stop cannot reach its host")
	require.NotEmpty(t, workerProcesses(id), "nobody could stop it")

	require.NoError(t, h.client.CancelWorkflow(ctx, wid, ""))
	if v0 {
		final := waitEnded(t, id)
		require.Equal(t, workflows.StatusZombie, final.Status, "the first release gave up")
		require.NotEmpty(t, workerProcesses(id), "and left the process running")
		h.recordHistory(t, "lifecycle-cancel-during-cleanup-wait-v0", wid)
		return
	}
	// The cancel retries at once: one more stop, which times out unstarted.
	time.Sleep(5 * time.Second)
	spec := h.status(t, id)
	require.Equal(t, workflows.StatusZombie, spec.Status, "still owing its process a stop")
	require.NotEmpty(t, workerProcesses(id))

	require.NoError(t, h.startWorker(host))
	final := starterJSON[workflows.WorkerSpec](t, "cleanup", id)
	require.Equal(t, workflows.StatusCleanedUp, final.Status)
	require.Equal(t, workflows.ProcessStopped, final.Cleanup.Process)
	require.Equal(t, int64(1000), final.Cleanup.Refunded, "refunded once")
	require.Eventually(t, func() bool { return len(workerProcesses(id)) == 0 }, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-cancel-during-cleanup-wait-v1", wid)
}

// waitEnded waits for the lifecycle's run to close and returns its result.
func waitEnded(t *testing.T, id string) workflows.WorkerSpec {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var spec workflows.WorkerSpec
	require.NoError(t, h.client.GetWorkflow(ctx, workflows.WorkflowID(id), "").Get(ctx, &spec))
	return spec
}

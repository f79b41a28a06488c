package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestLeanLifecycleHistory: a lifecycle without heartbeats, spawned with
// no host named and shut down, is at most 40 events and 5 workflow tasks
// (issue 16; version lean-lifecycle): one version marker, the ask and the
// host pick as local activities (a marker each, no activity, no task of
// their own), no pending upsert after the start that set it.
func TestLeanLifecycleHistory(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("sleeper")
	wid := workflows.WorkflowID(id)
	_, err := h.fleet.Start(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-lean",
		Master: "development-master", Priority: "high", Budget: 500})
	require.NoError(t, err)
	t.Cleanup(func() { killAll(workerProcesses(id)) })
	running := h.waitStatus(t, id, workflows.StatusRunning, 30*time.Second)
	require.NotEmpty(t, running.Host, "the host pick named the host")
	require.Equal(t, before.Available-500, h.budget(t).Available, "the ask reserved it")
	requireListed(t, `WorkflowId = "`+wid+`" AND WorkerStatus = "running" AND TaskId = "task-lean" AND Priority = "high"`)

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id, "--grace", "2s")
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusShuttingDown, workflows.StatusCompleted}, statuses(final))
	require.Equal(t, int64(500), final.Cleanup.Refunded)
	requireGone(t, running.PID)
	require.Equal(t, before, h.budget(t))

	rh := fetchHistory(t, wid, "")
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, rh.last())
	tasks := rh.count(enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
	t.Logf("lean lifecycle: %d events, %d workflow tasks", len(rh.events), tasks)
	require.LessOrEqual(t, len(rh.events), 40, "events of a lifecycle without heartbeats")
	require.LessOrEqual(t, tasks, 5, "workflow tasks of a lifecycle without heartbeats")
	require.Equal(t, leanVersions(), rh.versions(t), "one version marker implies the rest")
	require.Empty(t, rh.activities("ReserveBudget"), "asked by a local activity")
	require.Len(t, rh.localActivities(t, "ReserveBudget"), 1)
	require.Empty(t, rh.activities("PickHost"), "picked by a local activity")
	require.Len(t, rh.localActivities(t, "PickHost"), 1)
	require.Equal(t, 3, rh.count(enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)-1, "running, shutting_down, completed: pending was set by the start")
	rh.refundedBySignal(t)
	recordRun(t, "lifecycle-lean", rh)
}

package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestGoClientDrivesALifecycle is a Go master and its agent on the public
// client: spawn, heartbeats from a Heartbeater, status, shutdown, and every
// token back, with the errors a master branches on along the way.
func TestGoClientDrivesALifecycle(t *testing.T) {
	ctx := context.Background()
	fc := h.fleet
	before := h.budget(t)
	id := newID("sleeper")
	spec, err := fc.Spawn(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker",
		TaskID: "task-go-client", Master: "go-master", MaxRestarts: -1})
	require.NoError(t, err)
	require.Equal(t, workflows.StatusRunning, spec.Status)
	require.True(t, procfs.Alive(spec.PID), "the worker's process runs")
	require.Equal(t, int64(1000), spec.TokenBudget.Allocated, "the type's budget")
	require.Equal(t, before.Available-1000, h.budget(t).Available)

	// A second spawn of a live id is refused and changes nothing.
	_, err = fc.Spawn(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker",
		TaskID: "task-go-client", Master: "go-master", MaxRestarts: -1})
	require.ErrorIs(t, err, fleet.ErrAlreadyLive)
	require.Equal(t, before.Available-1000, h.budget(t).Available)

	// The agent's heartbeats, every second.
	hb, err := fc.Heartbeater(id, time.Second)
	require.NoError(t, err)
	require.NoError(t, hb.SetTokens(300))
	require.NoError(t, hb.SetStatus(workflows.HeartbeatBusy, "compiling"))
	agent, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	beating := make(chan error, 1)
	go func() { beating <- hb.Run(agent) }()
	require.Eventually(t, func() bool {
		spec, err = fc.Status(ctx, id)
		return err == nil && spec.Heartbeat.Count >= 3
	}, 30*time.Second, 100*time.Millisecond, "three heartbeats in about three seconds")
	require.Equal(t, int64(300), spec.TokenBudget.Used)
	require.Equal(t, "compiling", spec.Heartbeat.Message)
	require.Equal(t, workflows.StatusRunning, spec.Status)

	require.NoError(t, hb.AddTokens(200))
	require.NoError(t, hb.SetStatus(workflows.HeartbeatIdle, "done"))
	spec = h.waitStatus(t, id, workflows.StatusIdle, 10*time.Second)
	require.Equal(t, int64(500), spec.TokenBudget.Used)

	listed, err := fc.List(ctx, fleet.Filter{Master: "go-master"})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Equal(t, id, listed[0].WorkerID)

	stopping, err := fc.Shutdown(ctx, id, workflows.ShutdownRequest{Reason: "task merged"})
	require.NoError(t, err)
	require.Contains(t, []workflows.Status{workflows.StatusShuttingDown, workflows.StatusCompleted}, stopping.Status)
	final, err := fc.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, int64(500), final.TokenBudget.Used)
	requireGone(t, spec.PID)
	h.requireReleased(t, id)
	require.Equal(t, before.Available, h.budget(t).Available, "every token back")

	// The agent's loop ends by itself once its lifecycle has: nobody
	// accounts for its work any more.
	select {
	case err := <-beating:
		require.ErrorIs(t, err, fleet.ErrEnded)
	case <-time.After(10 * time.Second):
		t.Fatal("the Heartbeater went on after its lifecycle ended")
	}
	_, err = fc.Kill(ctx, id, workflows.KillRequest{})
	require.ErrorIs(t, err, fleet.ErrEnded)
	_, err = fc.Status(ctx, newID("never"))
	require.ErrorIs(t, err, fleet.ErrUnknownWorker)
}

// TestGoClientRefusesBadInputBeforeAnyCall: the client names every bad
// field, as the CLI does, and nothing is started.
func TestGoClientRefusesBadInputBeforeAnyCall(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("sleeper")
	_, err := h.fleet.Spawn(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker",
		TaskID: "task 1", Priority: "urgent", Master: "go-master", Budget: -5})
	var invalid *fleet.InvalidError
	require.ErrorAs(t, err, &invalid)
	require.NotNil(t, invalid.Field("task_id"))
	require.NotNil(t, invalid.Field("priority"))
	require.NotNil(t, invalid.Field("budget"))

	// The CLI refuses the same input with the same message.
	_, stderr, code := h.spawn(t, id, "--type", "sleeper-worker", "--task-id", "task 1", "--priority", "urgent", "--master", "go-master")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, invalid.Field("task_id").Message)
	require.Contains(t, stderr, invalid.Field("priority").Message)

	_, err = h.client.DescribeWorkflowExecution(ctx, workflows.WorkflowID(id), "")
	var notFound *serviceerror.NotFound
	require.True(t, errors.As(err, &notFound), "no lifecycle was started: %v", err)
	require.Equal(t, before.Available, h.budget(t).Available)
}

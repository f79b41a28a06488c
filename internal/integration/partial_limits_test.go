package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestHistoryPartialLimits: a lifecycle that sets its heartbeat alerts but
// takes the zombie limit from the defaults. Its replay must not depend on
// the defaults of the day: validated against today's, a lowered zombie
// default would make the recorded request invalid on replay.
func TestHistoryPartialLimits(t *testing.T) {
	before := h.budget(t)
	id := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-partial-limits", "--master", "development-master",
		"--worker-id", id, "--heartbeat-warning", "1s", "--heartbeat-critical", "2s")
	deadline := time.Now().Add(30 * time.Second)
	for h.status(t, id).Heartbeat.Alert != workflows.AlertCritical && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	spec := h.status(t, id)
	require.Equal(t, workflows.AlertCritical, spec.Heartbeat.Alert, "no heartbeat for 2s")
	require.Equal(t, workflows.StatusRunning, spec.Status, "the zombie limit is the default 5m")

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id, "--grace", "2s")
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, int64(1000), final.Cleanup.Refunded)
	requireGone(t, spec.PID)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-partial-limits", workflows.WorkflowID(id))
}

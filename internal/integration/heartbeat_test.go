package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// An agent's last count, sent with `starter heartbeat` from its SIGTERM
// trap while its lifecycle stops it, is counted (issue 16: it was lost);
// the heartbeat names the process from its environment, and one naming
// another process of the worker is rejected, not counted.
func TestLastWordOnSIGTERMIsCounted(t *testing.T) {
	id := newID("lastword")
	h.spawnOK(t, id, "--type", "last-word-worker", "--task-id", "task-last-word", "--master", "development-master")
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })
	spec := h.status(t, id)
	tag := procfs.EnvValue(spec.PID, activities.ProcessEnv)
	require.Regexp(t, `^[0-9a-f]{16}$`, tag, "the process is given its name")

	// From inside another process of the worker (a stale one): rejected.
	_, errOut, code := h.starterWith(t, []string{"WORKER_ID=" + id, activities.ProcessEnv + "=0123456789abcdef"}, "heartbeat", id, "--tokens-used", "500")
	require.Zero(t, code, errOut)
	require.Eventually(t, func() bool { return h.status(t, id).Heartbeat.Rejected == 1 }, 10*time.Second, 100*time.Millisecond)
	require.Zero(t, h.status(t, id).TokenBudget.Used, "its tokens are not the current process's")

	h.starterOK(t, "shutdown", id)
	final := h.waitStatus(t, id, workflows.StatusCompleted, 30*time.Second)
	require.EqualValues(t, 77, final.TokenBudget.Used, "the last word, sent during the stop, is counted")
	require.EqualValues(t, 1, final.Heartbeat.Count)
	require.EqualValues(t, 1, final.Heartbeat.Rejected)
	h.recordHistory(t, "lifecycle-last-word", workflows.WorkflowID(id))
}

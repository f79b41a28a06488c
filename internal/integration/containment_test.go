package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// daemonPID waits for a daemon-worker's daemon to write its PID.
func daemonPID(t *testing.T, id string) int {
	t.Helper()
	file := filepath.Join(h.dir, "daemon-"+id+".pid")
	var pid int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(file)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil && pid > 0
	}, 10*time.Second, 50*time.Millisecond, "the daemon wrote its PID")
	return pid
}

// The escape: a descendant that clears its environment, leaves
// its group and session and is orphaned to init is stopped with its
// worker, whichever way the worker ends.
func TestDaemonizedDescendantIsStopped(t *testing.T) {
	for _, end := range []string{"shutdown", "kill", "zombie cleanup"} {
		t.Run(end, func(t *testing.T) {
			before := h.budget(t)
			id := newID("daemon")
			args := []string{"--type", "daemon-worker", "--task-id", "task-daemon", "--master", "development-master"}
			if end == "zombie cleanup" {
				args = append(args, "--zombie-after", "4s")
			}
			h.spawnOK(t, id, args...)
			daemon := daemonPID(t, id)
			t.Cleanup(func() { _ = syscall.Kill(daemon, syscall.SIGKILL) })
			spec := h.status(t, id)
			require.Equal(t, "cgroup", spec.Containment, "CI runs as root on a host with cgroup v2")
			require.False(t, procfs.HasEnv(daemon, "WORKER_ID="+id), "it cleared its environment")
			st, err := procfs.ReadStat(daemon)
			require.NoError(t, err)
			leader, err := procfs.ReadStat(spec.PID)
			require.NoError(t, err)
			require.NotEqual(t, leader.Session, st.Session, "it left the session")
			require.NotEqual(t, spec.PID, st.PPID, "it was orphaned")

			switch end {
			case "shutdown":
				final := starterJSON[workflows.WorkerSpec](t, "shutdown", id, "--grace", "1s")
				require.Equal(t, workflows.StatusCompleted, final.Status)
			case "kill":
				h.starterOK(t, "kill", id)
				final := h.waitStatus(t, id, workflows.StatusCompleted, 30*time.Second)
				require.Equal(t, "kill requested", final.Cleanup.Reason)
			case "zombie cleanup":
				final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
				require.Contains(t, final.Cleanup.Reason, "no heartbeat for")
			}
			requireGone(t, daemon)
			requireGone(t, spec.PID)
			require.Equal(t, before, h.budget(t))
		})
	}
}

// The deploy case: the worker program is killed, its agent ends
// while it is down, and the program that comes back reports the agent's
// true end: exit 0 completes, exit 3 is what its type's rule says (fail),
// neither restarted nor counted by the breaker.
func TestEndWhileTheWorkerProgramIsDownKeepsItsStatus(t *testing.T) {
	for _, tc := range []struct {
		typ    string
		code   int
		status workflows.Status
		reason string
	}{
		{"exit-on-worker", 0, workflows.StatusCompleted, "process exited with code 0"},
		// Its type's rule: exit 3 fails, though max_restarts is 2.
		{"exit3-on-worker", 3, workflows.StatusCleanedUp, "process exited with code 3 (exit_rules[0] (exit code 3): fail); not restarted"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			before := h.budget(t)
			id := newID("exiton")
			h.spawnOK(t, id, "--type", tc.typ, "--task-id", "task-deploy", "--master", "development-master")
			pid := h.status(t, id).PID

			h.crashWorker(t, "it-host-a")
			require.True(t, procfs.Alive(pid), "the agent outlives its worker program")
			require.NoError(t, os.WriteFile(filepath.Join(h.dir, "exit-"+id), nil, 0o644))
			requireGone(t, pid)
			require.NoError(t, h.startWorker("it-host-a"))

			final := h.waitStatus(t, id, tc.status, 30*time.Second)
			require.NotNil(t, final.ExitCode, "the exit code is known: %s", final.Cleanup.Reason)
			require.Equal(t, tc.code, *final.ExitCode)
			require.Equal(t, tc.reason, final.Cleanup.Reason)
			require.Equal(t, "exit", final.ExitReason)
			require.Empty(t, final.Restarts, "not run again")
			_, err := h.client.DescribeWorkflowExecution(context.Background(), workflows.BreakerWorkflowID(tc.typ), "")
			var notFound *serviceerror.NotFound
			require.True(t, errors.As(err, &notFound), "the type's circuit breaker was never told of a crash: %v", err)
			require.Equal(t, before, h.budget(t))
			h.recordHistory(t, "lifecycle-"+strings.TrimSuffix(tc.typ, "-worker")+"-after-restart", workflows.WorkflowID(id))
		})
	}
}

// A type's memory limit holds through the worker program: the agent that
// allocates past it is ended by the oom killer, reported as oom, and its
// type's rule (oom: fail) ends the lifecycle without a restart.
func TestMemoryLimitEndsTheWorkerWithOOM(t *testing.T) {
	before := h.budget(t)
	id := newID("capped")
	h.spawnOK(t, id, "--type", "capped-hog-worker", "--task-id", "task-oom", "--master", "development-master", "--wait=false")
	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 60*time.Second)
	require.Equal(t, "oom", final.ExitReason)
	require.NotNil(t, final.ExitCode)
	require.Equal(t, 137, *final.ExitCode)
	require.Equal(t, "process killed by the out-of-memory killer (SIGKILL) (exit_rules[0] (oom): fail); not restarted", final.Cleanup.Reason)
	require.Empty(t, final.Restarts)
	require.Equal(t, "cgroup", final.Containment)
	require.Equal(t, before, h.budget(t))
}

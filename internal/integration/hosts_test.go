package integration

import (
	"fmt"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestLosingOneHostOfThree is the several-hosts case of a cluster deployment:
// two more worker programs with their own host names join host a, lifecycles
// spread over the hosts as the shared queue hands them out, and one host's
// worker program is killed for good. Its lifecycles are cleaned up within the
// host-loss bound; every other lifecycle keeps its process and its
// heartbeats, and ends normally later.
func TestLosingOneHostOfThree(t *testing.T) {
	before := h.budget(t)
	for _, host := range []string{"it-host-b", "it-host-c"} {
		require.NoError(t, h.startWorker(host))
		t.Cleanup(func() { h.stopWorker(host, syscall.SIGTERM) })
	}
	const lost = "it-host-b"

	// No --host: whichever worker program takes PickHost from the shared
	// queue runs the process. Spawn until the lost host and another one
	// have two lifecycles each.
	byHost := map[string][]string{}
	var ids []string
	for len(byHost[lost]) < 2 || len(ids)-len(byHost[lost]) < 2 {
		require.Less(t, len(ids), 30, "30 spawns did not spread over the hosts: %v", byHost)
		id := newID("printer")
		h.starterOK(t, "spawn", "--type", "printer-worker", "--task-id", "task-hosts", "--master", "development-master",
			"--worker-id", id, "--watch-heartbeat", "2s", "--host-loss-after", "5s", "--zombie-after", "10s", "--sample-every", "500ms")
		t.Cleanup(func() { killAll(workerProcesses(id)) })
		spec := h.waitStatus(t, id, workflows.StatusRunning, 30*time.Second)
		byHost[spec.Host] = append(byHost[spec.Host], id)
		ids = append(ids, id)
	}
	hosts := make([]string, 0, len(byHost))
	for host := range byHost {
		hosts = append(hosts, host)
	}
	sort.Strings(hosts)
	for _, host := range hosts {
		t.Logf("%s runs %d lifecycles", host, len(byHost[host]))
	}

	// The survivors, as they were before the loss.
	type seen struct {
		pid        int
		heartbeats int64
	}
	survivors := map[string]seen{}
	for _, id := range ids {
		if spec := h.status(t, id); spec.Host != lost {
			survivors[id] = seen{spec.PID, spec.Heartbeat.Count}
		}
	}

	lostAt := time.Now()
	h.crashWorker(t, lost)
	var slowest time.Duration
	for _, id := range byHost[lost] {
		final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
		slowest = max(slowest, time.Since(lostAt))
		require.Contains(t, final.Cleanup.Reason, "host "+lost+" lost", id)
		require.Equal(t, workflows.ProcessLost, final.Cleanup.Process, id)
		require.Equal(t, int64(400), final.Cleanup.Refunded, id)
	}
	t.Logf("host loss: the %d lifecycles of %s cleaned up within %s (watch heartbeat 2s + host loss 5s)",
		len(byHost[lost]), lost, slowest.Round(100*time.Millisecond))
	require.Less(t, slowest, 20*time.Second)

	// Past the loss and past the zombie limit: the other hosts' lifecycles
	// carry on with the same process, heartbeating from their output.
	time.Sleep(12*time.Second - time.Since(lostAt))
	for id, was := range survivors {
		spec := h.status(t, id)
		require.Equal(t, workflows.StatusRunning, spec.Status, id)
		require.Equal(t, was.pid, spec.PID, "%s kept its process", id)
		require.True(t, procfs.Alive(spec.PID), id)
		require.Empty(t, spec.Restarts, id)
		require.Greater(t, spec.Heartbeat.Count, was.heartbeats, "%s still heartbeats", id)
		require.WithinDuration(t, time.Now(), *spec.Heartbeat.LastSeen, 5*time.Second, id)
	}
	for id := range survivors {
		h.starterOK(t, "shutdown", id)
		final := h.status(t, id)
		require.Equal(t, workflows.StatusCompleted, final.Status, id)
		requireGone(t, final.PID)
	}
	require.Equal(t, before, h.budget(t), "every token came back: %s", fmt.Sprint(byHost))
}

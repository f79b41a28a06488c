package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestLocalHeartbeatPath (issue 16, items 2 and 3): a real agent that runs
// `starter heartbeat` every 0.2 s sends them to its host's socket, given to
// it in its environment. status shows each within a second, through the
// host; the lifecycle hears only the first, what changes and a keepalive
// per zombie limit (under one event per heartbeat); and when the agent
// falls silent its host says so at the zombie limit.
func TestLocalHeartbeatPath(t *testing.T) {
	id := newID("hostbeat")
	const zombie = 10 * time.Second
	h.spawnOK(t, id, "--type", "host-beat-worker", "--task-id", "task-hostbeat", "--master", "development-master", "--zombie-after", zombie.String())
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })

	var spec workflows.WorkerSpec
	require.Eventually(t, func() bool {
		spec = h.status(t, id)
		return spec.Heartbeat.Path == workflows.PathHost
	}, 30*time.Second, 100*time.Millisecond, "no heartbeat came through the host: %+v", spec.Heartbeat)
	first := time.Now()
	socket := procfs.EnvValue(spec.PID, activities.HeartbeatSocketEnv)
	require.Equal(t, filepath.Join(h.dir, "state", "it-host-a", "heartbeat.sock"), socket, "the agent is given its host's socket")

	// Fresh: what status shows is the heartbeat the agent sent last, not
	// the last one the lifecycle heard.
	for range 10 {
		spec = h.status(t, id)
		require.Less(t, time.Since(*spec.Heartbeat.LastSeen), time.Second, "status shows a heartbeat %s old; the agent sends one every 0.2 s", time.Since(*spec.Heartbeat.LastSeen))
		require.Regexp(t, `^beat [0-9]+$`, spec.Heartbeat.Message)
		require.Equal(t, workflows.StatusRunning, spec.Status)
		time.Sleep(300 * time.Millisecond)
	}
	// Through a keepalive interval: the lifecycle hears one or two of them.
	time.Sleep(time.Until(first.Add(zombie + 2*time.Second)))
	spec = h.status(t, id)
	var sent int
	_, err := fmt.Sscanf(spec.Heartbeat.Message, "beat %d", &sent)
	require.NoError(t, err)
	require.GreaterOrEqual(t, sent, 20, "the agent sent %d", sent)
	rh := fetchHistory(t, workflows.WorkflowID(id), "")
	relayed := rh.signals(workflows.SignalHeartbeat)
	require.LessOrEqual(t, relayed, 3, "the first, a keepalive, perhaps one more: %d of %d heartbeats", relayed, sent)
	var after int
	for i, ev := range rh.events {
		if ev.EventType == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
			after = len(rh.events) - i
			break
		}
	}
	perBeat := float64(after) / float64(sent)
	t.Logf("%d heartbeats sent, %d relayed, %d events since the first: %.2f events per heartbeat", sent, relayed, after, perBeat)
	require.Less(t, perBeat, 1.0)

	// The agent's own `starter heartbeat`, and one of an earlier process:
	// the host takes the first, the lifecycle rejects the second.
	tag := procfs.EnvValue(spec.PID, activities.ProcessEnv)
	out, errOut, code := h.starterWith(t, []string{"WORKER_ID=" + id, activities.HeartbeatSocketEnv + "=" + socket, activities.ProcessEnv + "=" + tag}, "heartbeat", id, "--tokens-used", "5")
	require.Zero(t, code, errOut)
	require.Contains(t, out, "through its host")
	_, errOut, code = h.starterWith(t, []string{"WORKER_ID=" + id, activities.HeartbeatSocketEnv + "=" + socket, activities.ProcessEnv + "=0123456789abcdef"}, "heartbeat", id, "--tokens-used", "5")
	require.Zero(t, code, errOut)
	require.Eventually(t, func() bool { return h.status(t, id).Heartbeat.Rejected == 1 }, 10*time.Second, 100*time.Millisecond)
	// Bad input through the socket: refused, nothing sent.
	_, errOut, code = h.starterWith(t, []string{"WORKER_ID=" + id, activities.HeartbeatSocketEnv + "=" + socket}, "heartbeat", id, "--tokens-used", "-1")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "tokens_used -1 is negative")

	// Silence: the host reports it at the zombie limit.
	require.NoError(t, os.WriteFile(filepath.Join(h.dir, "silence-"+id), nil, 0o644))
	final := h.waitStatus(t, id, workflows.StatusCleanedUp, zombie+30*time.Second)
	require.Contains(t, final.Cleanup.Reason, "judged by its host")
	var zombieAt time.Time
	for _, tr := range final.Transitions {
		if tr.Status == workflows.StatusFailed {
			zombieAt = tr.At
		}
	}
	// The host's report carries the age of the last heartbeat it had.
	last := *final.Heartbeat.LastSeen
	t.Logf("zombie %s after the last heartbeat", zombieAt.Sub(last))
	require.GreaterOrEqual(t, zombieAt.Sub(last), zombie-time.Second)
	require.Less(t, zombieAt.Sub(last), zombie+2*time.Second, "judged on the host when the limit passes, not at the lifecycle's backstop")
	h.requireReleased(t, id)
	requireGone(t, spec.PID)
	h.recordHistory(t, "lifecycle-host-heartbeat", workflows.WorkflowID(id))
}

// TestWorkerProgramRestartMakesNoFalseZombie (issue 16): an agent that can
// reach only its host's socket (its `starter heartbeat` is given a server
// address that refuses it, so nothing falls back to a signal) stays running
// past several zombie limits with its tokens in status; its host's worker
// program is then killed and started again while the agent goes on, and it
// is still running four zombie limits later, its heartbeats coming through
// the new program. A master's heartbeat signal is applied beside the host's.
// Recorded as lifecycle-host-restart.
func TestWorkerProgramRestartMakesNoFalseZombie(t *testing.T) {
	const host = "it-host-hb-restart"
	const zombie = 8 * time.Second
	require.NoError(t, h.startWorker(host))
	t.Cleanup(func() { h.stopWorker(host, syscall.SIGTERM) })
	id := newID("hostonly")
	h.spawnOK(t, id, "--type", "host-only-beat-worker", "--task-id", "task-hb-restart", "--master", "development-master",
		"--host", host, "--zombie-after", zombie.String())
	t.Cleanup(func() { killAll(workerProcesses(id)) })

	var spec workflows.WorkerSpec
	require.Eventually(t, func() bool {
		spec = h.status(t, id)
		return spec.Heartbeat.Path == workflows.PathHost
	}, 30*time.Second, 100*time.Millisecond, "no heartbeat came through the host: %+v", spec.Heartbeat)
	// stillRunning polls status until the moment until: running all along,
	// what it shows a heartbeat through the host no older than fresh.
	stillRunning := func(until time.Time, fresh time.Duration) workflows.WorkerSpec {
		t.Helper()
		var spec workflows.WorkerSpec
		for time.Now().Before(until) {
			spec = h.status(t, id)
			require.Equal(t, workflows.StatusRunning, spec.Status, "a live agent made a zombie: %+v %+v", spec.Heartbeat, spec.Transitions)
			time.Sleep(500 * time.Millisecond)
		}
		require.Equal(t, workflows.PathHost, spec.Heartbeat.Path)
		require.Less(t, time.Since(*spec.Heartbeat.LastSeen), fresh, "status shows a heartbeat %s old", time.Since(*spec.Heartbeat.LastSeen))
		return spec
	}
	spec = stillRunning(time.Now().Add(3*zombie), time.Second)
	var beat int
	_, err := fmt.Sscanf(spec.Heartbeat.Message, "beat %d", &beat)
	require.NoError(t, err)
	require.Greater(t, beat, 30, "the agent heartbeats every 0.2 s")
	require.GreaterOrEqual(t, spec.TokenBudget.Used, int64(beat-5), "its tokens are in status: %+v", spec.TokenBudget)

	crashed := time.Now()
	h.crashWorker(t, host)
	time.Sleep(2 * time.Second)
	require.NoError(t, h.startWorker(host))
	restarted := time.Now()
	t.Logf("worker program down for %s", restarted.Sub(crashed).Round(100*time.Millisecond))
	spec = stillRunning(crashed.Add(4*zombie), 2*time.Second)
	var after int
	_, err = fmt.Sscanf(spec.Heartbeat.Message, "beat %d", &after)
	require.NoError(t, err)
	require.Greater(t, after, beat+40, "the agent's heartbeats reach the new program")
	require.GreaterOrEqual(t, spec.TokenBudget.Used, int64(after-5), "its tokens are in status: %+v", spec.TokenBudget)

	// A master's heartbeat is a signal, applied as before.
	count := spec.Heartbeat.Count
	masterAt := time.Now()
	out := h.starterOK(t, "heartbeat", id, "--message", "from the master")
	require.Contains(t, out, "heartbeat sent to "+id)
	require.Eventually(t, func() bool { return h.status(t, id).Heartbeat.Count > count }, 10*time.Second, 100*time.Millisecond)
	require.Zero(t, h.status(t, id).Heartbeat.Rejected)

	shutdownAt := time.Now()
	h.starterOK(t, "shutdown", id)
	final := h.waitStatus(t, id, workflows.StatusCompleted, time.Minute)
	require.Zero(t, final.Heartbeat.Rejected)
	h.requireReleased(t, id)
	requireGone(t, spec.PID)
	// The host's relays armed the backstop again as they came (relay-rearm),
	// those through the new program too.
	rh := fetchHistory(t, workflows.WorkflowID(id), "")
	require.Equal(t, 1, rh.versions(t)[workflows.VersionRelayRearm], "%v", rh.versions(t))
	var rearmed int
	for _, ev := range rh.events {
		if at := ev.GetEventTime().AsTime(); ev.EventType == enumspb.EVENT_TYPE_TIMER_CANCELED && at.After(restarted) && at.Before(shutdownAt) {
			rearmed++
		}
	}
	require.Positive(t, rearmed, "relays through the new program arm the backstop again")
	// The new program holds the agent's heartbeats for the watch that
	// comes back (ExpectRecorded): none of them is signalled meanwhile.
	// (The agent cannot signal by itself: whatever was signalled since the
	// crash came through the new program's socket.)
	relays, signalled := 0, 0
	for _, ev := range rh.events {
		sig := ev.GetWorkflowExecutionSignaledEventAttributes()
		if at := ev.GetEventTime().AsTime(); sig == nil || sig.SignalName != workflows.SignalHeartbeat || at.Before(crashed) || at.After(masterAt) {
			continue
		}
		var hb workflows.Heartbeat
		require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(sig.Input, &hb))
		if hb.Path == workflows.PathHost {
			relays++
		} else {
			signalled++
		}
	}
	require.Positive(t, relays)
	require.Zero(t, signalled, "heartbeats signalled by the new program's socket before the watch came back (%d relays)", relays)
	h.recordHistory(t, "lifecycle-host-restart", workflows.WorkflowID(id))
}

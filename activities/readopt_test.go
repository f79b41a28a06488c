package activities

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startedUnrecorded starts a process as StartProcess would have, with the
// token and worker id in its environment, and writes the record that
// StartProcess writes before the start: the state a worker program leaves
// when it dies between starting the process and recording its PID.
// ownGroup false makes a process that is not the group leader, as a child
// left by a leader that died would be.
func startedUnrecorded(t *testing.T, a *HostActivities, workerID, lease, token string, ownGroup bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), tokenEnv+"="+token, "WORKER_ID="+workerID)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: ownGroup}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { killTokenHolders(token); _ = cmd.Wait() })
	require.NoError(t, os.MkdirAll(a.StateDir, 0o755))
	data, err := json.Marshal(ProcessInfo{Host: a.Host, Token: token, Lease: lease})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(a.StateDir, workerID+".json"), data, 0o644))
	return cmd
}

func recordOf(t *testing.T, a *HostActivities, workerID string) ProcessInfo {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(a.StateDir, workerID+".json"))
	require.NoError(t, err)
	var p ProcessInfo
	require.NoError(t, json.Unmarshal(data, &p))
	return p
}

// TestStartInterruptedBeforeItsRecordIsTakenBack: the process of a start
// whose PID was never recorded is found by its token and taken back, not
// started a second time.
func TestStartInterruptedBeforeItsRecordIsTakenBack(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
	a.StateDir = t.TempDir()
	id := uniqueWorkerID("sleep")
	cmd := startedUnrecorded(t, a, id, "lease-1", "feedbeef01", true)

	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "sleep", TaskID: "task-1", Lease: "lease-1"})
	assert.Equal(t, cmd.Process.Pid, info.PID, "the process already started is taken back")
	assert.Equal(t, 1, envHolders(t, "WORKER_ID="+id), "nothing was started twice")
	assert.Empty(t, a.Procs.Live())
	assert.Equal(t, normalizeInfos(info), normalizeInfos(recordOf(t, a, id)), "the record is completed")
}

// TestStartInterruptedLeavingOnlyAFragment: when only a process that is not
// the started leader carries the token, nobody supervises it: it is killed
// and the worker started afresh.
func TestStartInterruptedLeavingOnlyAFragment(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
	a.StateDir = t.TempDir()
	id := uniqueWorkerID("sleep")
	fragment := startedUnrecorded(t, a, id, "lease-1", "feedbeef02", false)
	done := make(chan struct{})
	go func() { _ = fragment.Wait(); close(done) }()

	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "sleep", TaskID: "task-1", Lease: "lease-1"})
	<-done
	assert.NotEqual(t, fragment.Process.Pid, info.PID)
	assert.Equal(t, 1, envHolders(t, "WORKER_ID="+id), "the fragment is gone, one process runs")
	assert.Len(t, a.Procs.Live(), 1)
}

// TestLeftoverOfAnEarlierLifecycleIsStopped: a new lifecycle reusing a
// worker id never takes over the process an ended one left running, whether
// this program started it or a predecessor did.
func TestLeftoverOfAnEarlierLifecycleIsStopped(t *testing.T) {
	types := map[string][]string{"sleep": {"sleep", "30"}}
	for _, restarted := range []bool{false, true} {
		name := map[bool]string{false: "same program", true: "restarted program"}[restarted]
		t.Run(name, func(t *testing.T) {
			first := newProcActivities(t, types)
			first.StateDir = filepath.Join(t.TempDir(), "state")
			id := uniqueWorkerID("sleep")
			old := mustStart(t, newActivityEnv(first), first, StartInput{WorkerID: id, WorkerType: "sleep", TaskID: "task-1", Lease: "lease-old"})

			second := first
			if restarted {
				second = newProcActivities(t, types)
				second.StateDir, second.LogDir = first.StateDir, first.LogDir
			}
			fresh := mustStart(t, newActivityEnv(second), second, StartInput{WorkerID: id, WorkerType: "sleep", TaskID: "task-1", Lease: "lease-new"})
			assert.NotEqual(t, old.Token, fresh.Token, "a new process was started")
			assert.Empty(t, tokenHolders(t, old), "the leftover is stopped")
			assert.Equal(t, 1, envHolders(t, "WORKER_ID="+id))
			assert.Equal(t, "lease-new", recordOf(t, second, id).Lease)

			// The same lease again is a retry: the same process.
			again := mustStart(t, newActivityEnv(second), second, StartInput{WorkerID: id, WorkerType: "sleep", TaskID: "task-1", Lease: "lease-new"})
			assert.Equal(t, fresh.Token, again.Token)
		})
	}
}

// TestLeaseMatching: an incoming empty lease (an activity scheduled before
// leases existed) takes back its own process; a stored empty lease is an
// earlier lifecycle's and never matches a lease.
func TestLeaseMatching(t *testing.T) {
	assert.True(t, sameLease("L1", "L1"))
	assert.True(t, sameLease("L1", ""))
	assert.False(t, sameLease("L1", "L2"))
	assert.False(t, sameLease("", "L2"))
}

// TestProcessTakenBackIsHeld: a process taken back after a restart of the
// worker program, recorded by a release before held heartbeats, is held
// for the lifecycle that asks so, and its record says so for the next
// restart.
func TestProcessTakenBackIsHeld(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
	a.StateDir = t.TempDir()
	a.Beats = NewHeartbeatBoard()
	id := uniqueWorkerID("sleep")
	startedUnrecorded(t, a, id, "lease-1", "feedbeef02", true)

	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "sleep", TaskID: "task-1", Lease: "lease-1", HoldBeatsFor: time.Minute})
	assert.True(t, a.Beats.Offer(id, HostHeartbeat{TokensUsed: 1}), "held")
	assert.Equal(t, time.Minute, info.HoldBeatsFor)
	assert.Equal(t, time.Minute, recordOf(t, a, id).HoldBeatsFor)
}

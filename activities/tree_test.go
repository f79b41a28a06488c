package activities

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tokenHolders lists the live processes carrying a worker's token.
func tokenHolders(t *testing.T, p ProcessInfo) []int {
	t.Helper()
	members, err := treeMembers(ProcessInfo{Token: p.Token}, false)
	require.NoError(t, err)
	pids := make([]int, len(members))
	for i, m := range members {
		pids[i] = m.PID
	}
	return pids
}

func TestStopProcessReachesGrandchildInNewSession(t *testing.T) {
	a := newProcActivities(t, map[string][]string{
		"escape": {"sh", "-c", `trap '' TERM; setsid sh -c 'trap "" TERM; sleep 60' & sleep 60`},
	})
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-escape-1", WorkerType: "escape", TaskID: "task-1"})

	var pids []int
	require.Eventually(t, func() bool { pids = tokenHolders(t, info); return len(pids) >= 4 }, 5*time.Second, 20*time.Millisecond,
		"sh, its sleep, the setsid sh and its sleep")
	t.Cleanup(func() { killPIDs(pids) })
	sessions := map[int]bool{}
	for _, pid := range pids {
		st, err := readProcStat(pid)
		require.NoError(t, err)
		sessions[st.Session] = true
	}
	require.Len(t, sessions, 2, "part of the tree left the worker's session and group")

	res := stopProc(t, env, a, StopInput{WorkerID: "worker-escape-1", Process: info, Grace: 300 * time.Millisecond})
	assert.True(t, res.Killed, "they ignore SIGTERM")
	for _, pid := range pids {
		running, err := sameProcessRunning(pid, mustTicks(t, pid))
		require.NoError(t, err)
		assert.False(t, running, "pid %d survived", pid)
	}
}

func TestStopProcessLeavesOtherTokensAlone(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
	env := newActivityEnv(a)
	mine := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-a1", WorkerType: "sleep", TaskID: "task-1"})
	other := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-b1", WorkerType: "sleep", TaskID: "task-1"})
	require.NotEqual(t, mine.Token, other.Token)

	stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-a1", Process: mine, Grace: time.Second})
	running, err := sameProcessRunning(other.PID, other.StartTicks)
	require.NoError(t, err)
	assert.True(t, running, "another worker's process was signalled")
}

// TestRestartedWorkerProgramReadopts simulates a restart of the worker
// program: a second Activities with an empty table and the same state folder.
func TestRestartedWorkerProgramReadopts(t *testing.T) {
	types := map[string][]string{"sleep": {"sleep", "30"}}
	first := newProcActivities(t, types)
	first.StateDir = filepath.Join(t.TempDir(), "state")
	info := mustStart(t, newActivityEnv(first), first, StartInput{WorkerID: "worker-sleep-r1", WorkerType: "sleep", TaskID: "task-1"})
	require.FileExists(t, filepath.Join(first.StateDir, "worker-sleep-r1.json"))

	second := newProcActivities(t, types)
	second.StateDir, second.LogDir = first.StateDir, first.LogDir
	env := newActivityEnv(second)
	again := mustStart(t, env, second, StartInput{WorkerID: "worker-sleep-r1", WorkerType: "sleep", TaskID: "task-1"})
	require.Equal(t, info.PID, again.PID, "the same process is taken back")
	require.Equal(t, []int{info.PID}, tokenHolders(t, info), "no second process")
	require.Empty(t, second.Procs.Live(), "the new table did not start it")

	// The new program stops it by its token, though its table never knew it.
	res := stopProc(t, env, second, StopInput{WorkerID: "worker-sleep-r1", Process: again, Grace: time.Second})
	require.False(t, res.AlreadyGone)
	require.Empty(t, tokenHolders(t, info))
	require.NoFileExists(t, filepath.Join(first.StateDir, "worker-sleep-r1.json"))

	// Its record gone and its process dead, a new start spawns afresh.
	fresh := mustStart(t, env, second, StartInput{WorkerID: "worker-sleep-r1", WorkerType: "sleep", TaskID: "task-1"})
	require.NotEqual(t, info.Token, fresh.Token)
}

func TestStaleStateRecordIsIgnored(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
	a.StateDir = t.TempDir()
	// A record whose process is gone (no PID is that high).
	stale := ProcessInfo{PID: 999999, PGID: 999999, StartTicks: 1, Token: "feed"}
	require.NoError(t, a.saveState("worker-sleep-s1", stale))
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: "worker-sleep-s1", WorkerType: "sleep", TaskID: "task-1"})
	require.NotEqual(t, stale.PID, info.PID)
}

// fakeReporter records what the watcher reports.
type fakeReporter struct {
	mu      sync.Mutex
	samples []ResourceSample
	outputs int
}

func (f *fakeReporter) Sample(_ context.Context, _ string, s ResourceSample) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.samples = append(f.samples, s)
	return nil
}

func (f *fakeReporter) OutputHeartbeat(_ context.Context, _ string, s ResourceSample) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outputs++
	f.samples = append(f.samples, s)
	return nil
}

func (f *fakeReporter) snapshot() ([]ResourceSample, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ResourceSample(nil), f.samples...), f.outputs
}

// watchUntil runs the watcher on a process until done says what it
// reported is enough (or 20 s passed), then stops the process.
func watchUntil(t *testing.T, command []string, output bool, done func(*fakeReporter) bool) *fakeReporter {
	t.Helper()
	a := newProcActivities(t, map[string][]string{"probe": command})
	rep := &fakeReporter{}
	a.Reporter = rep
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-probe-1", WorkerType: "probe", TaskID: "task-1"})
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		for !done(rep) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		_, _ = env.ExecuteActivity(a.StopProcess, StopInput{WorkerID: "worker-probe-1", Process: info})
	}()
	_, err := env.ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: "worker-probe-1", Process: info, SampleEvery: 200 * time.Millisecond, OutputHeartbeat: output})
	require.NoError(t, err)
	return rep
}

func lastSample(rep *fakeReporter) ResourceSample {
	samples, _ := rep.snapshot()
	if len(samples) == 0 {
		return ResourceSample{}
	}
	return samples[len(samples)-1]
}

func TestWatcherReportsMemoryOfTheTree(t *testing.T) {
	// The memory is held by a child, to show the whole tree is measured.
	rep := watchUntil(t, []string{"sh", "-c", `python3 -c "import time; b=bytearray(650*1024*1024); time.sleep(30)"; true`}, false,
		func(r *fakeReporter) bool { return lastSample(r).RSSBytes > 600<<20 })
	last := lastSample(rep)
	assert.Greater(t, last.RSSBytes, int64(600<<20))
	assert.Equal(t, 2, last.Processes)
}

func TestWatcherReportsCPU(t *testing.T) {
	rep := watchUntil(t, []string{"sh", "-c", "while :; do :; done"}, false,
		func(r *fakeReporter) bool { return lastSample(r).CPUPercent > 50 })
	assert.Greater(t, lastSample(rep).CPUPercent, 50.0)
}

func TestWatcherHeartbeatsOnOutput(t *testing.T) {
	rep := watchUntil(t, []string{"sh", "-c", "while :; do echo working; sleep 0.1; done"}, true,
		func(r *fakeReporter) bool { _, n := r.snapshot(); return n >= 3 })
	_, outputs := rep.snapshot()
	assert.GreaterOrEqual(t, outputs, 3)

	start := time.Now()
	quiet := watchUntil(t, []string{"sleep", "30"}, true,
		func(r *fakeReporter) bool { return time.Since(start) > time.Second })
	_, outputs = quiet.snapshot()
	assert.Zero(t, outputs, "a silent process gets no heartbeat")
	samples, _ := quiet.snapshot()
	assert.NotEmpty(t, samples, "but it is still sampled")
}

func mustTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	st, err := readProcStat(pid)
	if err != nil {
		return 0 // gone: any ticks compare as not running
	}
	return st.StartTicks
}

func killPIDs(pids []int) {
	for _, pid := range pids {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

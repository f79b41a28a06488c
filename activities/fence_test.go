package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/internal/procfs"
)

func TestFenceBound(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		after, hostLoss, grace time.Duration
		want                   time.Duration
	}{
		{"off", 0, 2 * time.Minute, 5 * time.Second, 0},
		{"the defaults: 2 min less a quarter", DefaultFenceAfter, 2 * time.Minute, 5 * time.Second, 90 * time.Second},
		{"a lifecycle of an earlier release: the host's bound", DefaultFenceAfter, 0, 5 * time.Second, DefaultFenceAfter},
		{"a longer host loss keeps the host's bound", DefaultFenceAfter, 10 * time.Minute, 5 * time.Second, DefaultFenceAfter},
		{"a shorter host loss shortens it", DefaultFenceAfter, 60 * time.Second, 5 * time.Second, 45 * time.Second},
		{"a long grace is stopped in time", DefaultFenceAfter, 2 * time.Minute, 60 * time.Second, 55 * time.Second},
		{"never below the floor", DefaultFenceAfter, 8 * time.Second, 5 * time.Second, minFenceBound},
		{"a host's short bound is kept above the floor", 2 * time.Second, 0, 0, minFenceBound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, FenceBound(tc.after, tc.hostLoss, tc.grace))
		})
	}
}

// switchedProbe is a server that answers until cut.
type switchedProbe struct{ cut atomic.Bool }

func (p *switchedProbe) probe(context.Context) error {
	if p.cut.Load() {
		return errors.New("connection refused")
	}
	return nil
}

// runFence runs a's fence with a 5 s bound (the floor) until the test ends.
func runFence(t *testing.T, a *HostActivities, probe *switchedProbe) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		Fence{Host: a, After: minFenceBound, Every: 100 * time.Millisecond, Grace: time.Second, Probe: probe.probe}.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// A host cut off from the server stops its worker once the bound is past,
// records it, and the watch reports the end as fenced, judged by the
// type's rules (fail by default); the server back, the fence is reported.
func TestCutOffHostStopsItsWorkersAndReportsThem(t *testing.T) {
	types := map[string][]string{"job": {"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"}}
	a := withMonitor(t, newProcActivities(t, types))
	var events []map[string]any
	var mu sync.Mutex
	a.Event = func(eventType string, data map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		data["type"] = eventType
		events = append(events, data)
	}
	id := uniqueWorkerID("job")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	watched := watchIn(t, a, id, info)

	probe := &switchedProbe{}
	runFence(t, a, probe)
	time.Sleep(300 * time.Millisecond)
	require.True(t, procfs.Alive(info.PID), "a host that reaches the server leaves its workers alone")

	cut := time.Now()
	probe.cut.Store(true)
	st := awaitExit(t, watched)
	took := time.Since(cut)
	// The bound runs from the last answer, up to one probe (0.1 s) before
	// the cut.
	assert.GreaterOrEqual(t, took, minFenceBound-200*time.Millisecond, "not before the bound")
	assert.Less(t, took, minFenceBound+3*time.Second, "stopped soon after the bound")
	assert.Equal(t, ExitStatus{ExitCode: 0, Fenced: true, Action: "fail"}, st, "ended by its TERM within the grace; fenced fails by default")

	rec := stoppedRecord(t, a, id, info)
	assert.Equal(t, "graceful", rec.Stopped)
	assert.Equal(t, minFenceBound, rec.Bound)
	assert.Nil(t, rec.ReportedAt, "not reported while cut off")
	assert.FileExists(t, filepath.Join(a.StateDir, id+".json"), "the record stays, for a watch after a restart")

	probe.cut.Store(false)
	require.Eventually(t, func() bool {
		rec, _ := a.fenceRecord(id, info)
		return rec.ReportedAt != nil
	}, 5*time.Second, 50*time.Millisecond, "reported once the server answers")
	mu.Lock()
	got := append([]map[string]any(nil), events...)
	mu.Unlock()
	require.Len(t, got, 1, "one event per fenced worker")
	assert.Equal(t, "worker_fenced", got[0]["type"])
	assert.Equal(t, id, got[0]["worker_id"])

	// A restarted program's watch (the lifecycle's retry once the host
	// is back) still reports the end as fenced.
	again := restarted(t, types, a)
	assert.Equal(t, ExitStatus{ExitCode: 0, Fenced: true, Action: "fail"}, awaitExit(t, watchIn(t, again, id, info)))

	// The lifecycle's stop then forgets the record; the sweep removes the
	// reported fence record an hour later.
	res := stopProc(t, newActivityEnv(again), again, StopInput{WorkerID: id, Process: info, Grace: time.Second})
	assert.True(t, res.AlreadyGone)
	again.sweepExitFiles(time.Now())
	assert.FileExists(t, a.fencePath(id, info.Token), "kept within the hour")
	again.sweepExitFiles(time.Now().Add(exitFileKeep + time.Minute))
	assert.NoFileExists(t, a.fencePath(id, info.Token))
}

// stoppedRecord waits for the fence record of a stop that is over: the
// watch may see the end before the fence has written how its stop went.
func stoppedRecord(t *testing.T, a *HostActivities, id string, info ProcessInfo) FenceRecord {
	t.Helper()
	var rec FenceRecord
	require.Eventually(t, func() bool {
		var ok bool
		rec, ok = a.fenceRecord(id, info)
		return ok && rec.Stopped != "stopping"
	}, 5*time.Second, 20*time.Millisecond, "the fence is recorded in the state folder")
	return rec
}

// A process that ignores TERM is killed after its lifecycle's grace; a
// lifecycle with a short host-loss bound is fenced sooner than the host's
// bound; an end the fence did not cause is not fenced.
func TestFenceKillsAfterTheGraceAndFollowsTheLifecyclesBound(t *testing.T) {
	types := map[string][]string{"stubborn": {"sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"}}
	a := withMonitor(t, newProcActivities(t, types))
	id := uniqueWorkerID("stubborn")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "stubborn", TaskID: "task-1"})
	watched := watchWith(t, a, WatchInput{WorkerID: id, Process: info, HostLossAfter: 12 * time.Second, Grace: time.Second})

	probe := &switchedProbe{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The host's own bound is a minute; the lifecycle's 12 s host loss
	// brings it to 6 s (12 s less grace + 5 s).
	go Fence{Host: a, After: time.Minute, Every: 100 * time.Millisecond, Grace: 30 * time.Second, Probe: probe.probe}.Run(ctx)
	time.Sleep(300 * time.Millisecond)
	cut := time.Now()
	probe.cut.Store(true)
	var st ExitStatus
	select {
	case st = <-watched:
	case <-time.After(20 * time.Second):
		t.Fatal("the fence did not stop the worker")
	}
	took := time.Since(cut)
	assert.GreaterOrEqual(t, took, 6*time.Second-200*time.Millisecond)
	assert.Less(t, took, 10*time.Second, "the lifecycle's bound, and its grace of 1 s, not the host's defaults")
	assert.True(t, st.Fenced)
	assert.Equal(t, 137, st.ExitCode, "killed after the grace")
	rec := stoppedRecord(t, a, id, info)
	assert.Equal(t, "killed", rec.Stopped)
	assert.Equal(t, 12*time.Second, rec.HostLossAfter)

	// Another start of the same worker, not fenced, ends as itself.
	other := info
	other.PID++
	_, fenced := a.fenceRecord(id, other)
	assert.False(t, fenced, "a fence record names one start")
}

// A program without a fence bound, or whose server answers, stops nothing.
func TestNoFenceWhenOffOrReachable(t *testing.T) {
	types := map[string][]string{"job": {"sleep", "300"}}
	a := withMonitor(t, newProcActivities(t, types))
	id := uniqueWorkerID("job")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	t.Cleanup(func() { stopProc(t, newActivityEnv(a), a, StopInput{WorkerID: id, Process: info}) })

	cut := &switchedProbe{}
	cut.cut.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	Fence{Host: a, After: 0, Every: 100 * time.Millisecond, Probe: cut.probe}.Run(ctx) // returns at once
	assert.True(t, procfs.Alive(info.PID), "--fence-after 0 turns fencing off")
	entries, err := os.ReadDir(a.StateDir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), fenceSuffix)
	}
}

// The fence probes often enough to keep the shortest bound of the host's
// workers to within a fifth, and no more often than once a second.
func TestFenceProbesByTheShortestBound(t *testing.T) {
	a := &HostActivities{}
	f := Fence{Host: a, After: DefaultFenceAfter, Grace: 5 * time.Second}
	assert.Equal(t, 5*time.Second, f.every(a), "the defaults: every 5 s")
	a.fenceLimits.Store("worker-fix-1", fenceLimits{hostLoss: 12 * time.Second, grace: time.Second})
	assert.Equal(t, 1200*time.Millisecond, f.every(a), "a 6 s bound")
	a.fenceLimits.Store("worker-fix-2", fenceLimits{hostLoss: 8 * time.Second})
	assert.Equal(t, time.Second, f.every(a), "never more often than once a second")
	f.Every = 100 * time.Millisecond
	assert.Equal(t, 100*time.Millisecond, f.every(a))
}

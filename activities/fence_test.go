package activities

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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
	defaults := FenceLimits{HostLossAfter: 2 * time.Minute, WatchHeartbeat: 20 * time.Second, Grace: 5 * time.Second}
	for _, tc := range []struct {
		name   string
		after  time.Duration
		limits FenceLimits
		bound  time.Duration
		grace  time.Duration
	}{
		{"off", 0, defaults, 0, 5 * time.Second},
		{"the defaults", DefaultFenceAfter, defaults, 90 * time.Second, 5 * time.Second},
		{"a lifecycle of an earlier release: the host's bound", DefaultFenceAfter, FenceLimits{Grace: 5 * time.Second}, DefaultFenceAfter, 5 * time.Second},
		{"a longer host loss keeps the host's bound", DefaultFenceAfter, FenceLimits{HostLossAfter: 10 * time.Minute, Grace: 5 * time.Second}, DefaultFenceAfter, 5 * time.Second},
		// 60 s less the grace, the kill (5 s) and the fence's lag (8 s).
		{"a shorter host loss shortens it", DefaultFenceAfter, FenceLimits{HostLossAfter: 60 * time.Second, Grace: 5 * time.Second}, 42 * time.Second, 5 * time.Second},
		{"the watch's heartbeat slack counts", DefaultFenceAfter, FenceLimits{HostLossAfter: 3 * time.Second, WatchHeartbeat: 2 * time.Minute, Grace: 5 * time.Second}, 9 * time.Second, 5 * time.Second},
		{"a long grace is stopped in time", DefaultFenceAfter, FenceLimits{HostLossAfter: 2 * time.Minute, Grace: 60 * time.Second}, 47 * time.Second, 60 * time.Second},
		{"a grace that leaves no room is shortened", DefaultFenceAfter, FenceLimits{HostLossAfter: 30 * time.Second, Grace: 25 * time.Second}, MinFenceAfter, 12 * time.Second},
		{"never below the floor", DefaultFenceAfter, FenceLimits{HostLossAfter: 8 * time.Second, Grace: 5 * time.Second}, MinFenceAfter, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bound, grace := FenceBound(tc.after, tc.limits)
			assert.Equal(t, tc.bound, bound, "bound")
			assert.Equal(t, tc.grace, grace, "grace")
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

// runFence runs f until the test ends, probing every 0.1 s.
func runFence(t *testing.T, f Fence) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	f.Every = 100 * time.Millisecond
	go func() {
		defer wg.Done()
		f.Run(ctx)
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
	runFence(t, Fence{Host: a, After: MinFenceAfter, Grace: time.Second, Probe: probe.probe})
	time.Sleep(300 * time.Millisecond)
	require.True(t, procfs.Alive(info.PID), "a host that reaches the server leaves its workers alone")

	cut := time.Now()
	probe.cut.Store(true)
	st := awaitExit(t, watched)
	took := time.Since(cut)
	// The bound runs from the last answer, one probe (0.1 s, or more on a
	// loaded machine) before the cut.
	assert.GreaterOrEqual(t, took, MinFenceAfter-time.Second, "not before the bound")
	assert.Less(t, took, MinFenceAfter+3*time.Second, "stopped soon after the bound")
	assert.Equal(t, ExitStatus{ExitCode: 0, Fenced: true, Action: "fail"}, st, "ended by its TERM within the grace; fenced fails by default")

	rec := stoppedRecord(t, a, id, info)
	assert.Equal(t, "graceful", rec.Stopped)
	assert.Equal(t, MinFenceAfter, rec.Bound)
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
// bound.
func TestFenceKillsAfterTheGraceAndFollowsTheLifecyclesBound(t *testing.T) {
	types := map[string][]string{"stubborn": {"sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"}}
	a := withMonitor(t, newProcActivities(t, types))
	id := uniqueWorkerID("stubborn")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "stubborn", TaskID: "task-1"})
	watched := watchWith(t, a, WatchInput{WorkerID: id, Process: info, HostLossAfter: 20 * time.Second, Grace: time.Second})

	probe := &switchedProbe{}
	// The host's own bound is a minute; the lifecycle's 20 s host loss
	// brings it to 6 s (20 s less the grace, the kill and the fence's lag).
	runFence(t, Fence{Host: a, After: time.Minute, Grace: 30 * time.Second, Probe: probe.probe})
	require.Eventually(t, func() bool {
		var p ProcessInfo
		data, err := os.ReadFile(a.statePath(id))
		return err == nil && json.Unmarshal(data, &p) == nil && p.Fence != nil
	}, 5*time.Second, 20*time.Millisecond, "the watch keeps its lifecycle's clocks in the record")
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
	assert.GreaterOrEqual(t, took, 6*time.Second-time.Second)
	assert.Less(t, took, 12*time.Second, "the lifecycle's bound, and its grace of 1 s, not the host's minute and 30 s")
	assert.True(t, st.Fenced)
	assert.Equal(t, 137, st.ExitCode, "killed after the grace")
	rec := stoppedRecord(t, a, id, info)
	assert.Equal(t, "killed", rec.Stopped)
	assert.Equal(t, 20*time.Second, rec.HostLossAfter)
	assert.Equal(t, 6*time.Second, rec.Bound)

	// A later start of the same worker is another token: not fenced.
	other := info
	other.Token = "another-start"
	_, fenced := a.fenceRecord(id, other)
	assert.False(t, fenced, "a fence record names one start")
}

// A program without a fence bound stops nothing, but still reports what
// an earlier run fenced; one whose server answers stops nothing.
func TestNoFenceWhenOffOrReachable(t *testing.T) {
	types := map[string][]string{"job": {"sleep", "300"}}
	a := withMonitor(t, newProcActivities(t, types))
	id := uniqueWorkerID("job")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	t.Cleanup(func() { stopProc(t, newActivityEnv(a), a, StopInput{WorkerID: id, Process: info}) })
	earlier := FenceRecord{WorkerID: "worker-job-earlier", PID: 1, Stopped: "graceful"}
	require.NoError(t, a.writeFenceRecord(earlier, "earlier-token"))

	// Off: the server is cut off for longer than any bound.
	cut := &switchedProbe{}
	cut.cut.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), MinFenceAfter+2*time.Second)
	defer cancel()
	Fence{Host: a, After: 0, Every: 100 * time.Millisecond, Probe: cut.probe}.Run(ctx)
	assert.True(t, procfs.Alive(info.PID), "--fence-after 0 turns fencing off")
	_, fenced := a.fenceRecord(id, info)
	assert.False(t, fenced)

	// Off, the server answering: the earlier fence is reported.
	Fence{Host: a, After: 0, Every: 100 * time.Millisecond, Probe: (&switchedProbe{}).probe}.Run(context.Background())
	rec, err := readFenceRecord(a.fencePath("worker-job-earlier", "earlier-token"))
	require.NoError(t, err)
	assert.NotNil(t, rec.ReportedAt, "reported with fencing off")

	// On, the server answering for longer than the bound: nothing stopped.
	ctx, cancel = context.WithTimeout(context.Background(), MinFenceAfter+2*time.Second)
	defer cancel()
	Fence{Host: a, After: MinFenceAfter, Every: 100 * time.Millisecond, Probe: (&switchedProbe{}).probe}.Run(ctx)
	assert.True(t, procfs.Alive(info.PID), "a host that reaches the server leaves its workers alone")
}

// A program restarted during a cut goes on from the server's last answer
// recorded in the state folder, not from its own start.
func TestFenceResumesFromTheLastAnswer(t *testing.T) {
	types := map[string][]string{"job": {"sleep", "300"}}
	a := withMonitor(t, newProcActivities(t, types))
	id := uniqueWorkerID("job")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	require.NoError(t, a.recordContact(time.Now().Add(-time.Minute)))
	assert.True(t, Fence{Host: a}.HasWorkers())

	cut := &switchedProbe{}
	cut.cut.Store(true)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Fence{Host: a, After: MinFenceAfter, Grace: time.Second, Probe: cut.probe, Resume: true, Every: 100 * time.Millisecond}.Run(ctx)
	}()
	require.Eventually(t, func() bool { return !procfs.Alive(info.PID) }, 5*time.Second, 20*time.Millisecond,
		"fenced at once: the bound ran out before this program started")
	assert.Less(t, time.Since(start), 3*time.Second)
	rec := stoppedRecord(t, a, id, info)
	assert.WithinDuration(t, time.Now().Add(-time.Minute), rec.CutOffSince, 5*time.Second)
	cancel()
	<-done

	// Restarted again, still cut off: the fence is not done again, and
	// its record stays (a second stop finds nothing and must not take it
	// for the process's own end).
	again := restarted(t, types, a)
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	Fence{Host: again, After: MinFenceAfter, Grace: time.Second, Probe: cut.probe, Resume: true, Every: 100 * time.Millisecond}.Run(ctx)
	kept, ok := again.fenceRecord(id, info)
	require.True(t, ok, "the fence record is kept")
	assert.Equal(t, rec, kept)
	assert.True(t, again.judge(id, info, ExitStatus{ExitCode: 143, Signal: "SIGTERM"}).Fenced)
}

// A stop the program did not live to finish is settled by its next run:
// interrupted, reported, and its start's end taken as fenced; a stop that
// fails again is tried again and its record stays.
func TestInterruptedFenceIsSettled(t *testing.T) {
	types := map[string][]string{"job": {"sleep", "300"}}
	a := withMonitor(t, newProcActivities(t, types))
	id := uniqueWorkerID("job")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	require.NoError(t, a.writeFenceRecord(FenceRecord{WorkerID: id, PID: info.PID, FencedAt: time.Now().Add(-time.Minute), Stopped: stopStopping}, info.Token))
	stopProc(t, newActivityEnv(a), a, StopInput{WorkerID: id, Process: info}) // what the interrupted stop did
	require.NoError(t, a.saveState(id, info))                                 // its record was still there

	// The server answers: the stop is settled and reported.
	Fence{Host: a, After: MinFenceAfter, Every: 100 * time.Millisecond, Probe: (&switchedProbe{}).probe}.Run(canceledAfterFirstProbe(t))
	rec, ok := a.fenceRecord(id, info)
	require.True(t, ok)
	assert.Equal(t, stopInterrupted, rec.Stopped)
	assert.NotNil(t, rec.ReportedAt)
	assert.True(t, a.judge(id, info, ExitStatus{ExitCode: 137, Signal: "SIGKILL"}).Fenced)
}

// canceledAfterFirstProbe is a context that ends shortly after a Run's first
// probe (which comes at once).
func canceledAfterFirstProbe(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

// A worker that ended by itself before the fence came is not fenced: no
// record is left when the stop finds nothing, and an end the monitor saw
// before the fence began is the process's own.
func TestEndBeforeTheFenceIsItsOwn(t *testing.T) {
	types := map[string][]string{"job": {"sh", "-c", "exit 0"}}
	a := withMonitor(t, newProcActivities(t, types))
	env := newActivityEnv(a)
	id := uniqueWorkerID("job")
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	assert.Equal(t, ExitStatus{ExitCode: 0, Action: "complete"}, watchProc(t, env, a, info))

	a.fenceOne(slog.Default(), workerRecord{id, info}, MinFenceAfter, time.Second, time.Now())
	_, fenced := a.fenceRecord(id, info)
	assert.False(t, fenced, "nothing was stopped, nothing recorded")

	// A record written just before a natural end: the monitor's end time
	// says whose end it was.
	require.NoError(t, a.writeFenceRecord(FenceRecord{WorkerID: id, PID: info.PID, FencedAt: time.Now(), Stopped: "graceful"}, info.Token))
	assert.False(t, a.fencedEnd(id, info), "ended before the fence began")
	assert.Equal(t, ExitStatus{ExitCode: 0, Action: "complete"}, a.judge(id, info, ExitStatus{ExitCode: 0}))
	require.NoError(t, a.writeFenceRecord(FenceRecord{WorkerID: id, PID: info.PID, FencedAt: time.Now().Add(-time.Hour), Stopped: "graceful"}, info.Token))
	assert.True(t, a.fencedEnd(id, info), "ended after the fence began")
}

// The fence probes often enough to keep the shortest bound of the host's
// workers to within a fifth, and no more often than once a second.
func TestFenceProbesByTheShortestBound(t *testing.T) {
	a := &HostActivities{StateDir: t.TempDir()}
	r := &fenceRun{Fence: Fence{Host: a, After: DefaultFenceAfter, Grace: 5 * time.Second}, a: a}
	assert.Equal(t, 5*time.Second, r.every(), "no worker: every 5 s")
	require.NoError(t, a.saveState("worker-fix-1", ProcessInfo{PID: 1, Token: "t1", Fence: &FenceLimits{HostLossAfter: time.Minute}}))
	assert.Equal(t, 5*time.Second, r.every(), "a 42 s bound")
	require.NoError(t, a.saveState("worker-fix-2", ProcessInfo{PID: 2, Token: "t2", Fence: &FenceLimits{HostLossAfter: 25 * time.Second, Grace: time.Second}}))
	assert.Equal(t, 5*time.Second, r.every(), "the records are read again only after everyFor")
	r.everyAt = r.everyAt.Add(-everyFor)
	assert.Equal(t, 2200*time.Millisecond, r.every(), "an 11 s bound")
	require.NoError(t, a.saveState("worker-fix-3", ProcessInfo{PID: 3, Token: "t3", Fence: &FenceLimits{HostLossAfter: 8 * time.Second}}))
	r.everyAt = r.everyAt.Add(-everyFor)
	assert.Equal(t, time.Second, r.every(), "never more often than once a second")
	r.Every = 100 * time.Millisecond
	assert.Equal(t, 100*time.Millisecond, r.every())
}

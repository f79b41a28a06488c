package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeReporter records what the watcher reports; it stands in for the
// lifecycle, not for the OS, so the watcher still measures real processes.
type fakeReporter struct {
	mu      sync.Mutex
	samples []ResourceSample
	outputs []ResourceSample
	calls   int
	err     error
	// relayed are the heartbeats relayed to the lifecycle, with their age;
	// shown the watch details recorded.
	relayed []relayedBeat
	shown   []WatchDetails
	// showErr fails ShowWatch; showTimes are when each show was recorded.
	showErr   error
	showTimes []time.Time
}

type relayedBeat struct {
	hb  HostHeartbeat
	age time.Duration
}

func (f *fakeReporter) RelayHeartbeat(_ context.Context, _ string, hb HostHeartbeat, age time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.relayed = append(f.relayed, relayedBeat{hb, age})
	return nil
}

func (f *fakeReporter) ShowWatch(_ context.Context, _ []byte, d WatchDetails) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.showErr != nil {
		return f.showErr
	}
	f.shown = append(f.shown, d)
	f.showTimes = append(f.showTimes, time.Now())
	return nil
}

// longestGap is the longest time between two shows recorded since from.
func (f *fakeReporter) longestGap(from time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var longest time.Duration
	last := from
	for _, at := range f.showTimes {
		if at.Before(from) {
			continue
		}
		longest = max(longest, at.Sub(last))
		last = at
	}
	return max(longest, time.Since(last))
}

func (f *fakeReporter) failShows(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.showErr = err
}

func (f *fakeReporter) relays() ([]relayedBeat, []WatchDetails) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]relayedBeat(nil), f.relayed...), append([]WatchDetails(nil), f.shown...)
}

func (f *fakeReporter) Sample(_ context.Context, _ string, s ResourceSample) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return f.err
	}
	f.samples = append(f.samples, s)
	return nil
}

func (f *fakeReporter) OutputHeartbeat(_ context.Context, _ string, s ResourceSample) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return f.err
	}
	f.outputs = append(f.outputs, s)
	return nil
}

// reported is every sample the lifecycle got, output heartbeats included.
func (f *fakeReporter) reported() (samples, outputs []ResourceSample, calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ResourceSample(nil), f.samples...), append([]ResourceSample(nil), f.outputs...), f.calls
}

func (f *fakeReporter) any(pred func(ResourceSample) bool) bool {
	samples, outputs, _ := f.reported()
	for _, s := range append(samples, outputs...) {
		if pred(s) {
			return true
		}
	}
	return false
}

type watchCase struct {
	command []string
	output  bool
	// ready, when set, is a line the process prints once it is in the state
	// to measure; the watch starts after it.
	ready string
	// before runs between the start and the watch.
	before func(t *testing.T, info ProcessInfo)
	// done says the reporter got enough; the process is then killed.
	done func(*fakeReporter) bool
	rep  *fakeReporter
}

// watchUntil starts the command, watches it with sampling every 100 ms
// until done (at most 20 s), kills it and returns the watch's exit status.
func watchUntil(t *testing.T, c watchCase) ExitStatus {
	t.Helper()
	a := newProcActivities(t, map[string][]string{"probe": c.command})
	if c.rep == nil {
		c.rep = &fakeReporter{}
	}
	a.Reporter = c.rep
	env := newActivityEnv(a)
	id := uniqueWorkerID("probe")
	if c.before != nil {
		c.before(t, ProcessInfo{LogPath: filepath.Join(a.LogDir, id, logFileName)})
	}
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "probe", TaskID: "task-1"})
	if c.ready != "" {
		require.Eventually(t, func() bool {
			data, _ := os.ReadFile(info.LogPath)
			return strings.Contains(string(data), c.ready)
		}, 10*time.Second, 20*time.Millisecond, "the process never printed %q", c.ready)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		deadline := time.Now().Add(20 * time.Second)
		for !c.done(c.rep) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_, _ = newActivityEnv(a).ExecuteActivity(a.StopProcess, StopInput{WorkerID: id, Process: info})
	}()
	val, err := env.ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: id, Process: info,
		SampleEvery: 100 * time.Millisecond, OutputHeartbeat: c.output})
	<-stopped
	require.NoError(t, err)
	var st ExitStatus
	require.NoError(t, val.Get(&st))
	return st
}

func TestWatcherReportsMemoryOfTheTree(t *testing.T) {
	// The memory is held by a child of the shell, so only a measure of the
	// whole tree sees it. bytearray zero-fills, so every page is resident
	// once "ready" is printed.
	rep := &fakeReporter{}
	over600 := func(s ResourceSample) bool { return s.RSSBytes > 600<<20 }
	watchUntil(t, watchCase{
		command: []string{"sh", "-c", `python3 -c "import time; b=bytearray(650*1024*1024); print('ready', flush=True); time.sleep(30)"; true`},
		ready:   "ready",
		done:    func(r *fakeReporter) bool { return r.any(over600) },
		rep:     rep,
	})
	samples, _, _ := rep.reported()
	require.NotEmpty(t, samples)
	assert.Greater(t, samples[0].RSSBytes, int64(600<<20), "the first report already holds the memory")
	assert.Less(t, samples[0].RSSBytes, int64(1<<30))
	assert.Equal(t, 2, samples[0].Processes, "sh and python")
}

func TestWatcherReportsCPU(t *testing.T) {
	rep := &fakeReporter{}
	busy := func(s ResourceSample) bool { return s.CPUPercent > 50 }
	watchUntil(t, watchCase{
		command: []string{"sh", "-c", "while :; do :; done"},
		done:    func(r *fakeReporter) bool { return r.any(busy) },
		rep:     rep,
	})
	assert.True(t, rep.any(busy), "a busy loop uses most of a core")
	samples, _, _ := rep.reported()
	for _, s := range samples {
		assert.Less(t, s.CPUPercent, 150.0, "one shell cannot use much more than one core: %+v", s)
	}
}

func TestWatcherReportsOnlyChanges(t *testing.T) {
	// A quiet process stays in the same bands: one report, not one per
	// sample, because every report is an event in the lifecycle's history.
	rep := &fakeReporter{}
	start := time.Now()
	watchUntil(t, watchCase{
		command: []string{"sleep", "30"},
		done:    func(*fakeReporter) bool { return time.Since(start) > time.Second },
		rep:     rep,
	})
	samples, outputs, _ := rep.reported()
	require.Len(t, samples, 1)
	assert.Equal(t, 1, samples[0].Processes)
	assert.Positive(t, samples[0].RSSBytes)
	assert.Empty(t, outputs, "no output heartbeats unless asked for")
}

func TestWatcherReportsAgainWhenStale(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
	rep := &fakeReporter{}
	a.Reporter = rep
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-st1", WorkerType: "sleep", TaskID: "task-1"})
	// The observer logs through the activity's context, so it runs in one.
	observeThrice := func(ctx context.Context) error {
		o := newObserver(ctx, a, WatchInput{WorkerID: "worker-sleep-st1", Process: info, SampleEvery: time.Second})
		o.observe(ctx)
		o.observe(ctx)
		if samples, _, _ := rep.reported(); len(samples) != 1 {
			return fmt.Errorf("nothing changed, yet %d reports", len(samples))
		}
		o.reportAt = time.Now().Add(-reportEvery)
		o.observe(ctx)
		return nil
	}
	env.RegisterActivity(observeThrice)
	_, err := env.ExecuteActivity(observeThrice)
	require.NoError(t, err)
	samples, _, _ := rep.reported()
	assert.Len(t, samples, 2, "%s without a report is too long", reportEvery)
}

func TestWatcherSurvivesReporterErrors(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"short": {"sh", "-c", "echo hi; sleep 0.6; echo bye"}})
	rep := &fakeReporter{err: errors.New("server unavailable")}
	a.Reporter = rep
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-short-1", WorkerType: "short", TaskID: "task-1"})
	val, err := env.ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: "worker-short-1", Process: info,
		SampleEvery: 100 * time.Millisecond, OutputHeartbeat: true})
	require.NoError(t, err)
	var st ExitStatus
	require.NoError(t, val.Get(&st))
	assert.Equal(t, ExitStatus{ExitCode: 0, Action: "complete"}, st, "the watch lasts until the process ends")
	_, _, calls := rep.reported()
	assert.Greater(t, calls, 2, "a failed report is tried again at the next sample")
}

func TestWatcherHeartbeatsOnOutput(t *testing.T) {
	rep := &fakeReporter{}
	watchUntil(t, watchCase{
		command: []string{"sh", "-c", "while :; do echo working; sleep 0.2; done"},
		output:  true,
		done:    func(r *fakeReporter) bool { _, outputs, _ := r.reported(); return len(outputs) >= 3 },
		rep:     rep,
	})
	_, outputs, _ := rep.reported()
	require.GreaterOrEqual(t, len(outputs), 3)
	// sh alone between two sleeps, or with one: either way a real sample.
	assert.Positive(t, outputs[0].Processes, "the heartbeat carries the sample")
	assert.Positive(t, outputs[0].RSSBytes)
}

func TestWatcherSilentProcessGetsNoOutputHeartbeat(t *testing.T) {
	for name, before := range map[string]func(*testing.T, ProcessInfo){
		"fresh log": nil,
		// A restarted worker appends to its predecessor's log: what is in
		// it already is no sign of life.
		"log of an earlier run": func(t *testing.T, p ProcessInfo) {
			require.NoError(t, os.MkdirAll(filepath.Dir(p.LogPath), 0o755))
			require.NoError(t, os.WriteFile(p.LogPath, []byte("output of the run before\n"), 0o644))
		},
	} {
		t.Run(name, func(t *testing.T) {
			rep := &fakeReporter{}
			start := time.Now()
			watchUntil(t, watchCase{
				command: []string{"sleep", "30"},
				output:  true,
				before:  before,
				done:    func(*fakeReporter) bool { return time.Since(start) > 800*time.Millisecond },
				rep:     rep,
			})
			samples, outputs, _ := rep.reported()
			assert.Empty(t, outputs, "a silent process gets no heartbeat")
			assert.Len(t, samples, 1, "but it is still sampled")
		})
	}
}

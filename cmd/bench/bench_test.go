package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSmoke runs the bench's smoke profile against its own dev server and
// real processes, so that the bench keeps working, and checks that its
// figures are sane: what the bench reports as done was really done.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: the smoke run needs a dev server of its own")
	}
	cfg := smokeConfig()
	cfg.Out = filepath.Join(t.TempDir(), "bench-results.json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	res, err := run(ctx, cfg, testLog{t})
	require.NoError(t, err)
	require.NoError(t, res.write(cfg.Out))
	t.Logf("smoke run took %s", time.Since(began).Round(time.Second))

	require.Len(t, res.Ceilings, len(cfg.Concurrency))
	require.Len(t, res.Lifecycles, len(cfg.Concurrency))
	for i, c := range res.Ceilings {
		require.Positive(t, c.NoopPerSecond)
		require.Positive(t, c.Signals)
		require.Equal(t, c.Signals, c.SignalsReceived, "every signal of the ceiling must reach its sink")
		l := res.Lifecycles[i]
		require.Zero(t, l.Failed)
		require.Positive(t, l.PerSecond)
		require.Positive(t, l.RatioToNoop)
		// A shutdown may overtake heartbeats sent just before it (they are
		// then not counted), but never all of them.
		require.Positive(t, l.HeartbeatsRecorded)
		require.LessOrEqual(t, l.HeartbeatsRecorded, int64(3*l.Count))
	}

	require.Len(t, res.Spawn, len(cfg.SpawnLevels))
	for _, s := range res.Spawn {
		require.GreaterOrEqual(t, s.Samples, cfg.SpawnSamples)
		require.Positive(t, s.P50ms)
		require.LessOrEqual(t, s.P50ms, s.P99ms)
		require.Equal(t, s.Samples, s.Noop.Samples, "a burst of as many no-op workflows before each round")
		require.Positive(t, s.Noop.P99ms)
	}

	require.Len(t, res.Live, 1, "the fleet")
	require.Len(t, res.Cost, 2, "the cost runs at the interval and at three times it")
	for _, live := range append(slices.Clone(res.Live), res.Cost...) {
		require.Equal(t, beatByHost, live.Path)
		require.Equal(t, live.Lifecycles, live.Running)
		require.Zero(t, live.StartFailed)
		require.Zero(t, live.FalseZombies, live.NotRunning)
		require.Zero(t, live.StatusUnanswered)
		require.Zero(t, live.SendErrors)
		require.Zero(t, live.ShutdownFailed)
		require.Positive(t, live.SignalsSent)
		require.Positive(t, live.Lag.Samples)
		// A smoke run's half-interval is 1 s: one status call slowed by the
		// machine may miss it, but not most.
		require.Less(t, live.LagUnrecorded, live.Lag.Samples, "sampled heartbeats show in status")
		require.Positive(t, live.WorkerRSSPeakMB)
		require.Positive(t, live.WorkflowTasksPerWorkerMinute)
	}
	require.Equal(t, res.Live[0].IntervalSeconds, res.Cost[0].IntervalSeconds)
	require.Equal(t, 3*res.Cost[0].IntervalSeconds, res.Cost[1].IntervalSeconds)
	require.Equal(t, res.Cost[0].ZombieAfterSeconds, res.Cost[1].ZombieAfterSeconds, "one zombie limit for both cost runs")
	require.Equal(t, 3*res.Cost[1].IntervalSeconds, res.Cost[1].ZombieAfterSeconds, "three of the longer interval")

	require.Len(t, res.Spaced, 2)
	for _, s := range res.Spaced {
		require.Equal(t, cfg.SpacedBeats, s.Heartbeats)
		require.Positive(t, s.EventsPerHeartbeat)
		if s.Path == beatByHost {
			// The first, and a keepalive per zombie limit: 15 s of beats
			// under a 5 s limit.
			require.LessOrEqual(t, s.Signals, 6, "the host relays a few: %+v", s)
		} else {
			require.Equal(t, s.Heartbeats, s.Signals, "by signal every one: %+v", s)
		}
	}

	z := res.Zombie
	require.Equal(t, cfg.Zombies, z.CleanedUp, "every silent worker is cleaned up, refunded, its process gone")
	require.Equal(t, cfg.Zombies, z.Samples)

	h := res.History
	require.Positive(t, h.LifecycleEvents)
	require.Positive(t, h.LifecycleWorkflowTasks)
	require.Positive(t, h.EventsPerHeartbeat)
	require.EqualValues(t, cfg.Burst, h.HeartbeatsRecorded)
	require.GreaterOrEqual(t, h.Runs, 2, "the burst must continue as new")
	require.Positive(t, h.LongestRunEvents)

	require.Len(t, res.Ledger, len(cfg.LedgerMasters))
	for _, g := range res.Ledger {
		require.Zero(t, g.OursLost, "the ledger must lose no reservation")
		require.Zero(t, g.OursFailed)
		require.Positive(t, g.OursPerSecond)
		require.Positive(t, g.OldPerSecond, "the old procedure must have run")
	}
	require.Len(t, res.LedgerSignals, 2*len(cfg.LedgerSignalMasters), "by ask and by signal")
	for _, s := range res.LedgerSignals {
		require.Zero(t, s.Lost, "the ledger must lose no reservation asked by signal")
		require.Zero(t, s.Refused)
		require.Positive(t, s.PerSecond)
		require.Positive(t, s.AnswerP99ms)
		if s.Path == pathAsk {
			require.Less(t, s.Fallbacks, s.Reservations, "the ledger answers asks in the call")
		}
	}
	require.Equal(t, cfg.AdmissionQueued, res.Admission.Lag.Samples, "every queued request was admitted by a refund")
	require.True(t, res.BudgetExact, "the ledger must hold nothing after the run")
	require.Zero(t, res.LeftoverProcesses)

	data, err := os.ReadFile(cfg.Out)
	require.NoError(t, err)
	var back Results
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, res.Lifecycles, back.Lifecycles)
	require.Len(t, back.Targets, 8+len(cfg.Concurrency))
}

// TestParseFlags checks the profiles and the size flags.
func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil)
	require.NoError(t, err)
	require.Equal(t, []int{100, 2000}, cfg.Live)
	require.Equal(t, beatByHost, cfg.LivePath)
	require.False(t, cfg.Smoke)

	cfg, err = parseFlags([]string{"--smoke", "--live", "7,9", "--hold", "20s"})
	require.NoError(t, err)
	require.True(t, cfg.Smoke)
	require.Equal(t, []int{7, 9}, cfg.Live)
	require.Equal(t, 20*time.Second, cfg.Hold)
	require.Equal(t, smokeConfig().Lifecycles, cfg.Lifecycles)

	for _, bad := range [][]string{{"--live", "0"}, {"--spawn", "a"}, {"--amortised", "5000"}, {"--hold", "1s"}, {"--live-path", "socket"}, {"--spaced-every", "10ms"}} {
		_, err := parseFlags(bad)
		require.Error(t, err, strings.Join(bad, " "))
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(d)
	require.Equal(t, Percentiles{Samples: 100, P50ms: 50, P95ms: 95, P99ms: 99, MaxMs: 100}, p)
	require.Equal(t, 3.0, percentiles([]time.Duration{time.Millisecond, 3 * time.Millisecond}).P99ms)
	require.Zero(t, percentiles(nil).Samples)
}

// testLog sends the bench's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

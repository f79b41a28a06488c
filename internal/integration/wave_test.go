package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// waveSize is how many workers end at once; waveBound is how soon their
// tokens must all be back (issue 14: a wave of ends wedged the ledger, whose
// releases queued behind ten updates in flight and timed out).
const (
	waveSize  = 500
	waveBound = 60 * time.Second
)

// waveHost runs the wave's workers: a worker program built without the race
// detector, which would otherwise be what is measured.
const waveHost = "it-host-wave"

// startWaveHost builds and starts the wave's worker program once per test.
func startWaveHost(t *testing.T) {
	t.Helper()
	bin := filepath.Join(h.dir, "bin-plain")
	build := exec.Command("go", "build", "-o", bin+"/", "./worker")
	build.Dir = h.root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, h.startWorkerWith(waveHost, filepath.Join(bin, "worker")))
	t.Cleanup(func() { h.stopWorker(waveHost, syscall.SIGTERM) })
}

// spawnWave starts n sleepers of master on the wave's host and waits until
// all run; it returns their ids. Ten at a time: reservations are still
// updates of the one ledger, which the server admits ten at a time (issue
// 14's throughput work); the wave under test is the ends.
func spawnWave(t *testing.T, master string, n int, limits workflows.Limits) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	var g errgroup.Group
	g.SetLimit(10)
	for i := range ids {
		ids[i] = newID("sleeper")
		g.Go(func() error {
			_, err := h.fleet.Spawn(ctx, workflows.SpawnRequest{WorkerID: ids[i], WorkerType: "sleeper-worker",
				TaskID: fmt.Sprintf("task-wave-%d", i), Master: master, Budget: 100, Host: waveHost,
				MaxRestarts: -1, Limits: limits})
			return err
		})
	}
	require.NoError(t, g.Wait())
	return ids
}

// requireWaveRefunded waits until the ledger is back to before, at most
// waveBound after the wave ended at end, and checks that every lifecycle
// ended as want with its refund done, none given up.
func requireWaveRefunded(t *testing.T, ids []string, before workflows.BudgetView, end time.Time, want workflows.Status) {
	t.Helper()
	for h.budget(t).Available != before.Available {
		require.True(t, time.Now().Before(end.Add(waveBound)), "the wave's tokens are not all back %s after it ended: %d of %d",
			waveBound, before.Available-h.budget(t).Available, len(ids)*100)
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%d workers ended: every token back %s after the wave", len(ids), time.Since(end).Round(100*time.Millisecond))

	ctx := context.Background()
	var g errgroup.Group
	g.SetLimit(50)
	var wrong atomic.Int64
	for _, id := range ids {
		g.Go(func() error {
			spec, err := h.fleet.Wait(ctx, id)
			if err != nil {
				return err
			}
			if spec.Status != want || spec.Cleanup == nil || spec.Cleanup.Refunded != 100 || strings.Contains(spec.Cleanup.Reason, "refund budget") {
				wrong.Add(1)
				t.Logf("%s: %s, cleanup %+v", id, spec.Status, spec.Cleanup)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	require.Zero(t, wrong.Load(), "every lifecycle ended %s, refunded its 100 tokens, and no compensation gave up", want)
}

// TestWaveOfShutdownsGivesEveryTokenBack: 500 live workers shut down at
// once, as `shutdown --all` does, give back every token within a minute.
func TestWaveOfShutdownsGivesEveryTokenBack(t *testing.T) {
	startWaveHost(t)
	before := h.budget(t)
	ids := spawnWave(t, "wave-master", waveSize, workflows.Limits{})
	require.Equal(t, before.Available-waveSize*100, h.budget(t).Available)

	ctx := context.Background()
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(100)
	for _, id := range ids {
		g.Go(func() error {
			_, err := h.fleet.Shutdown(ctx, id, workflows.ShutdownRequest{Reason: "wave"})
			return err
		})
	}
	require.NoError(t, g.Wait())
	requireWaveRefunded(t, ids, before, start, workflows.StatusCompleted)
}

// TestWaveOfSilentWorkersGivesEveryTokenBack: 500 live workers whose
// heartbeats all stop at once become zombies together; their cleanups give
// back every token within a minute of the zombie limit.
func TestWaveOfSilentWorkersGivesEveryTokenBack(t *testing.T) {
	startWaveHost(t)
	before := h.budget(t)
	const zombieAfter = 30 * time.Second
	ids := spawnWave(t, "silent-master", waveSize, workflows.Limits{
		HeartbeatWarning: 10 * time.Second, HeartbeatCritical: 20 * time.Second, ZombieAfter: zombieAfter})

	// One heartbeat each, all at once, then silence.
	ctx := context.Background()
	var g errgroup.Group
	g.SetLimit(100)
	var mu sync.Mutex
	var last time.Time
	for _, id := range ids {
		g.Go(func() error {
			err := h.fleet.Heartbeat(ctx, id, workflows.Heartbeat{TokensUsed: 10})
			mu.Lock()
			last = time.Now()
			mu.Unlock()
			return err
		})
	}
	require.NoError(t, g.Wait())
	// The last heartbeat's zombie limit is when the wave ends.
	time.Sleep(time.Until(last.Add(zombieAfter)))
	requireWaveRefunded(t, ids, before, last.Add(zombieAfter), workflows.StatusCleanedUp)
}

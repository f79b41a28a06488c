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
// releases queued behind ten updates in flight and timed out, and the
// compensations gave up holding 44,000 tokens for over 20 minutes). Each
// release is a signal now; here 500 shutdowns gave every token back in 30 s
// and 500 silent workers 32 s after their zombie deadline (the time taken is
// logged; docs/BENCHMARKS.md).
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

// spawnWave starts n sleepers of master on the wave's host, 50 at a time
// (the ask update answers reservations in the ledger's next task, however
// many are in flight), and waits until all run; it returns their ids.
// running, when not nil, is called with each worker as it runs.
func spawnWave(t *testing.T, master string, n int, limits workflows.Limits, running func(id string)) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	var g errgroup.Group
	g.SetLimit(50)
	for i := range ids {
		ids[i] = newID("sleeper")
		g.Go(func() error {
			_, err := h.fleet.Spawn(ctx, workflows.SpawnRequest{WorkerID: ids[i], WorkerType: "sleeper-worker",
				TaskID: fmt.Sprintf("task-wave-%d", i), Master: master, Budget: 100, Host: waveHost,
				MaxRestarts: -1, Limits: limits})
			if err == nil && running != nil {
				running(ids[i])
			}
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
	// The ledger's query shares the worker programs' queue with the wave's
	// cleanups: one that times out in the storm is asked again, within
	// the bound.
	available := func() (int64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := h.fleet.Budget().Show(ctx)
		return v.Available, err
	}
	for {
		got, err := available()
		if err == nil && got == before.Available {
			break
		}
		if err != nil {
			t.Logf("budget query during the wave: %v", err)
		}
		require.True(t, time.Now().Before(end.Add(waveBound)), "the wave's tokens are not all back %s after it ended: %d of %d held (%v)",
			waveBound, before.Available-got, len(ids)*100, err)
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
	ids := spawnWave(t, "wave-master", waveSize, workflows.Limits{}, nil)
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

// TestWaveOfSilenceGivesEveryTokenBack: 500 live workers that all stop
// heartbeating at once (their host's agents hung, say) become zombies
// together, and their cleanups give back every token, none giving up.
func TestWaveOfSilenceGivesEveryTokenBack(t *testing.T) {
	const zombieAfter, every = 90 * time.Second, 30 * time.Second
	startWaveHost(t)
	before := h.budget(t)

	// Each worker heartbeats from when it runs until the silence, so that
	// none goes silent while the others are still being spawned.
	beating, silence := context.WithCancel(context.Background())
	defer silence()
	var beats sync.WaitGroup
	var failed atomic.Int64
	beat := func(id string) {
		if err := h.fleet.Heartbeat(beating, id, workflows.Heartbeat{TokensUsed: 10, Status: workflows.HeartbeatBusy}); err != nil && beating.Err() == nil {
			failed.Add(1)
			t.Logf("heartbeat of %s: %v", id, err)
		}
	}
	ids := spawnWave(t, "silent-master", waveSize, workflows.Limits{ZombieAfter: zombieAfter}, func(id string) {
		beats.Add(1)
		go func() {
			defer beats.Done()
			for {
				beat(id)
				select {
				case <-beating.Done():
					return
				case <-time.After(every):
				}
			}
		}()
	})
	require.Equal(t, before.Available-waveSize*100, h.budget(t).Available)

	// A last heartbeat from every worker, then silence from all of them.
	var g errgroup.Group
	g.SetLimit(50)
	for _, id := range ids {
		g.Go(func() error { beat(id); return nil })
	}
	require.NoError(t, g.Wait())
	silent := time.Now()
	silence()
	beats.Wait()
	require.Zero(t, failed.Load(), "every heartbeat reached its lifecycle")

	requireWaveRefunded(t, ids, before, silent.Add(zombieAfter), workflows.StatusCleanedUp)
}

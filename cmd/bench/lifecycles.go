package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

var (
	// runTag keeps the worker ids of two runs against one server apart.
	runTag = strconv.FormatInt(time.Now().Unix(), 36)
	idSeq  atomic.Int64
)

func newWorkerID() string {
	return "worker-bench-" + runTag + "x" + strconv.FormatInt(idSeq.Add(1), 36)
}

// spawnRequest is a worker of the bench type with a task (so it runs, not
// idles) and no restarts, so that a zombie ends in cleanup at once.
func spawnRequest(limits workflows.Limits) workflows.SpawnRequest {
	return workflows.SpawnRequest{WorkerID: newWorkerID(), WorkerType: benchType, TaskID: "task-bench",
		Master: benchMaster, Limits: limits}
}

// checkEnded verifies that a lifecycle ended as want, gave its whole
// allocation back and left no process.
func checkEnded(spec workflows.WorkerSpec, want workflows.Status) error {
	switch {
	case spec.Status != want:
		reason := ""
		if spec.Cleanup != nil {
			reason = spec.Cleanup.Reason
		}
		return fmt.Errorf("%s ended %s, want %s (%s)", spec.WorkerID, spec.Status, want, reason)
	case spec.Cleanup == nil || spec.Cleanup.Refunded != spec.TokenBudget.Allocated || spec.TokenBudget.Allocated != benchBudget:
		return fmt.Errorf("%s: refund %+v of allocation %d is not exact", spec.WorkerID, spec.Cleanup, spec.TokenBudget.Allocated)
	case spec.PID != 0 && procfs.Alive(spec.PID):
		return fmt.Errorf("%s: process %d still alive after cleanup", spec.WorkerID, spec.PID)
	}
	return nil
}

// shutdownAll stops the workers gracefully and checks each ended completed
// and refunded. It returns how many did not.
func shutdownAll(ctx context.Context, f *fleet.Client, ids []string, concurrency int, silentOK bool) (int, error) {
	failed, _, err := shutdownEach(ctx, f, ids, concurrency, silentOK, nil)
	return failed, err
}

// shutdownEach is shutdownAll calling answered(id) once each shutdown call
// has returned (accepted, refused or failed), before waiting for the end;
// with silentOK it also returns the ends of those that had ended as
// zombies before their shutdown was asked.
func shutdownEach(ctx context.Context, f *fleet.Client, ids []string, concurrency int, silentOK bool, answered func(string)) (int, []workflows.WorkerSpec, error) {
	var (
		bad     atomic.Int64
		mu      sync.Mutex
		zombies []workflows.WorkerSpec
	)
	err := forEach(ctx, len(ids), concurrency, func(ctx context.Context, i int) error {
		spec, err := shutdownOne(ctx, f, ids[i], silentOK, answered)
		switch {
		case err != nil:
			bad.Add(1)
		case endedAsZombie(spec):
			mu.Lock()
			zombies = append(zombies, spec)
			mu.Unlock()
		}
		return err
	})
	return int(bad.Load()), zombies, err
}

// shutdownOne stops one worker and returns its end: completed, or with
// silentOK cleaned up as a zombie it had ended as before its shutdown was
// asked; anything else is an error.
func shutdownOne(ctx context.Context, f *fleet.Client, id string, silentOK bool, answered func(string)) (workflows.WorkerSpec, error) {
	_, stopErr := f.Shutdown(ctx, id, workflows.ShutdownRequest{Grace: time.Second, Reason: "bench done"})
	if answered != nil {
		answered(id)
	}
	// Even when the shutdown call failed (an overloaded server times it
	// out), the lifecycle may be stopping: wait for its end, so that no
	// refund is still under way when the bench checks the ledger and stops
	// the server.
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	spec, err := f.Wait(wctx, id)
	if err != nil {
		if stopErr != nil {
			return spec, fmt.Errorf("shutting %s down: %w", id, stopErr)
		}
		return spec, err
	}
	// "Already ended": the SDK retried a shutdown the overloaded server had
	// taken but not answered in time, so it ended completed; or, with
	// silentOK (a fleet whose heartbeats were stopped before its teardown),
	// it went silent for its zombie limit just before and was cleaned up.
	// Anything else it ended as (a crash, a time limit) is a failure.
	if stopErr != nil && !errors.Is(stopErr, fleet.ErrEnded) {
		return spec, fmt.Errorf("shutting %s down: %w", id, stopErr)
	}
	if stopErr != nil && silentOK && endedAsZombie(spec) {
		return spec, checkEnded(spec, workflows.StatusCleanedUp)
	}
	return spec, checkEnded(spec, workflows.StatusCompleted)
}

// endedAsZombie: the lifecycle went silent for its zombie limit (or its
// host said so) and was cleaned up.
func endedAsZombie(spec workflows.WorkerSpec) bool {
	return spec.Status == workflows.StatusCleanedUp && spec.Cleanup != nil && strings.HasPrefix(spec.Cleanup.Reason, "no heartbeat for")
}

// Lifecycles is the throughput of whole lifecycles.
type Lifecycles struct {
	Count       int     `json:"count"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	RatioToNoop float64 `json:"ratio_to_noop_ceiling"`
	Failed      int     `json:"failed"`
	// HeartbeatsRecorded over all lifecycles; 3 were sent to each.
	HeartbeatsRecorded int64 `json:"heartbeats_recorded"`
}

// measureLifecycles runs n lifecycles, `concurrency` at a time, each from
// spawn to running, three heartbeats, a graceful shutdown, and completed
// with its budget refunded and its process gone.
func measureLifecycles(ctx context.Context, f *fleet.Client, n, concurrency int) (Lifecycles, error) {
	res := Lifecycles{Count: n, Concurrency: concurrency}
	var failed, recorded atomic.Int64
	start := time.Now()
	err := forEach(ctx, n, concurrency, func(ctx context.Context, i int) error {
		spec, err := f.Spawn(ctx, spawnRequest(workflows.Limits{}))
		for hb := int64(1); hb <= 3 && err == nil; hb++ {
			err = f.Heartbeat(ctx, spec.WorkerID, workflows.Heartbeat{TokensUsed: hb * 10, Status: workflows.HeartbeatBusy})
		}
		if err == nil {
			_, err = shutdownOne(ctx, f, spec.WorkerID, false, nil)
		}
		if err != nil {
			failed.Add(1)
			return err
		}
		if final, qerr := f.Status(ctx, spec.WorkerID); qerr == nil {
			recorded.Add(final.Heartbeat.Count)
		}
		return nil
	})
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	res.Failed = int(failed.Load())
	res.HeartbeatsRecorded = recorded.Load()
	res.PerSecond = perSecond(n-res.Failed, elapsed)
	return res, err
}

// SpawnLatency is spawn (the start call) to running (the process started,
// by the workflow's clock) at one level of concurrent spawns.
type SpawnLatency struct {
	Concurrency int `json:"concurrency"`
	Percentiles
	// Noop is the same burst of no-op workflows (start to completed), run
	// just before each round: what the server itself takes for as many
	// workflows at once, which no spawn can beat.
	Noop Percentiles `json:"noop"`
}

// measureSpawnLatency spawns `concurrency` workers at once, rounds times,
// stopping each round's workers before the next; before each round, a
// burst of as many no-op workflows measures the server's own floor.
func measureSpawnLatency(ctx context.Context, c client.Client, f *fleet.Client, concurrency, rounds int) (SpawnLatency, error) {
	w := sdkworker.New(c, ceilingQueue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(noopWorkflow, workflow.RegisterOptions{Name: "BenchNoop"})
	if err := w.Start(); err != nil {
		return SpawnLatency{Concurrency: concurrency}, err
	}
	defer w.Stop()
	var lat, noop collector
	for r := range rounds {
		tag := fmt.Sprintf("bench-burst-%s-%d-%d-", runTag, concurrency, r)
		err := forEach(ctx, concurrency, concurrency, func(ctx context.Context, i int) error {
			t0 := time.Now()
			wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: tag + strconv.Itoa(i), TaskQueue: ceilingQueue}, "BenchNoop")
			if err == nil {
				err = wr.Get(ctx, nil)
			}
			noop.add(time.Since(t0))
			return err
		})
		if err != nil {
			return SpawnLatency{Concurrency: concurrency}, fmt.Errorf("no-op burst: %w", err)
		}
		ids := make([]string, concurrency)
		err = forEach(ctx, concurrency, concurrency, func(ctx context.Context, i int) error {
			req := spawnRequest(workflows.Limits{})
			ids[i] = req.WorkerID
			t0 := time.Now()
			if _, err := f.Start(ctx, req); err != nil {
				return err
			}
			spec, err := f.WaitStarted(ctx, req.WorkerID)
			if err != nil {
				return err
			}
			lat.add(spec.StartedAt.Sub(t0))
			return nil
		})
		if _, serr := shutdownAll(ctx, f, ids, concurrency, false); err == nil {
			err = serr
		}
		if err != nil {
			return SpawnLatency{Concurrency: concurrency}, err
		}
	}
	return SpawnLatency{Concurrency: concurrency, Percentiles: percentiles(lat.all()), Noop: percentiles(noop.all())}, nil
}

// ZombieLag is from a silent worker's zombie deadline (its start plus the
// zombie limit) to cleaned_up, by the workflow's clock.
type ZombieLag struct {
	Workers     int     `json:"workers"`
	ZombieAfter float64 `json:"zombie_after_seconds"`
	// CleanedUp counts workers that ended cleaned_up with their budget
	// refunded exactly and their process gone; it must equal Workers.
	CleanedUp int `json:"cleaned_up_refunded_process_gone"`
	Percentiles
}

// measureZombieLag spawns n workers that never heartbeat and waits for
// each one's cleanup.
func measureZombieLag(ctx context.Context, f *fleet.Client, n int, zombieAfter time.Duration) (ZombieLag, error) {
	res := ZombieLag{Workers: n, ZombieAfter: zombieAfter.Seconds()}
	var lag collector
	var cleaned atomic.Int64
	err := forEach(ctx, n, n, func(ctx context.Context, i int) error {
		started, err := f.Spawn(ctx, spawnRequest(workflows.Limits{ZombieAfter: zombieAfter}))
		if err != nil {
			return err
		}
		spec, err := f.Wait(ctx, started.WorkerID)
		if err != nil {
			return err
		}
		if err := checkEnded(spec, workflows.StatusCleanedUp); err != nil {
			return err
		}
		if spec.Cleanup.CleanedAt == nil || spec.StartedAt == nil {
			return fmt.Errorf("%s: no start or cleanup time", spec.WorkerID)
		}
		cleaned.Add(1)
		lag.add(spec.Cleanup.CleanedAt.Sub(spec.StartedAt.Add(zombieAfter)))
		return nil
	})
	res.CleanedUp = int(cleaned.Load())
	res.Percentiles = percentiles(lag.all())
	return res, err
}

package integration

import (
	"context"
	"encoding/json"
	"reflect"
	"sync"
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

// The scenarios of issue 13, item 7: each drives the released code down one
// path, asserts what an operator would check and what the history holds, and
// with RECORD_HISTORIES=1 adds the history to testdata/histories (never
// replacing a file). The GetVersion branches are in
// histories_versions_test.go.

// TestHistoryContinueAsNewWithBufferedSignals: a lifecycle whose runs hold 5
// heartbeats gets a burst of them while it is still starting, so that its
// first run finds more buffered than it may take: it applies them all, then
// continues as new. Its first run (ending in continue-as-new) and its last
// run (ending in a shutdown) are recorded.
func TestHistoryContinueAsNewWithBufferedSignals(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("sleeper")
	wid := workflows.WorkflowID(id)
	const maxSignals = 5
	_, err := h.fleet.Start(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-hist-can",
		Master: "development-master", MaxRestarts: -1, Limits: workflows.Limits{MaxSignalsPerRun: maxSignals}})
	require.NoError(t, err)
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })

	// A burst at once, while the lifecycle reserves and starts: the
	// signals wait in its channel until supervision begins.
	send := func(senders, each int) {
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					if err := h.fleet.Heartbeat(ctx, id, workflows.Heartbeat{TokensUsed: int64(s*100 + i)}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	send(10, 3)
	spec, err := h.fleet.WaitStarted(ctx, id)
	require.NoError(t, err)
	pid := spec.PID
	send(4, 3) // and more once it runs
	const total = 10*3 + 4*3
	require.Eventually(t, func() bool {
		spec, err := h.fleet.Status(ctx, id)
		return err == nil && spec.Heartbeat.Count == total
	}, 30*time.Second, 100*time.Millisecond, "every heartbeat is counted across the runs")

	_, err = h.fleet.Shutdown(ctx, id, workflows.ShutdownRequest{Grace: 2 * time.Second})
	require.NoError(t, err)
	final, err := h.fleet.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, int64(total), final.Heartbeat.Count)
	require.Equal(t, int64(1000), final.Cleanup.Refunded, "the refund follows the lease across runs")
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))

	runs := runChain(t, wid)
	require.GreaterOrEqual(t, len(runs), 2, "the lifecycle continued as new")
	first := runs[0]
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, first.last())
	taken := first.signals(workflows.SignalHeartbeat)
	require.Greater(t, taken, maxSignals, "the first run had more heartbeats buffered than its limit")
	// Every heartbeat the first run received was applied before it
	// continued as new: the next run starts with all of them counted.
	next := decodeInput[workflows.LifecycleState](t, first)
	require.Equal(t, 1, next.Runs)
	require.Zero(t, next.SignalsThisRun)
	require.Equal(t, int64(taken), next.Spec.Heartbeat.Count, "no buffered heartbeat was lost")
	require.Equal(t, workflows.StatusRunning, next.Spec.Status)
	require.True(t, next.Reserved)
	t.Logf("first run: %d heartbeats (limit %d), %d events; %d runs in all", taken, maxSignals, len(first.events), len(runs))

	last := runs[len(runs)-1]
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, last.last())
	require.Equal(t, 1, last.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED), "the shutdown")
	recordRun(t, "lifecycle-continue-as-new", first)
	recordRun(t, "lifecycle-continue-as-new-last-run", last)
}

// TestHistoryLedgerContinueAsNew: the ledger continues as new after
// ledgerUpdatesPerRun (500) accepted updates, with its total and
// allocations; the run that ended so is recorded.
func TestHistoryLedgerContinueAsNew(t *testing.T) {
	ctx := context.Background()
	id := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-hist-ledger", "--master", "development-master", "--worker-id", id)
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })
	withLive := h.budget(t)
	wid := workflows.LedgerWorkflowID
	run := currentRunID(t, wid)

	// set_total to the same total is an accepted update that changes
	// nothing but the run's count. A few at once, as masters would.
	ledger := h.fleet.Budget()
	sent := 0
	for currentRunID(t, wid) == run {
		require.Less(t, sent, 700, "the ledger did not continue as new after 500 updates")
		var wg sync.WaitGroup
		errs := make(chan error, 5)
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := ledger.SetTotal(ctx, withLive.Total)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		sent += 5
	}
	t.Logf("the ledger continued as new after %d more updates", sent)
	require.Equal(t, withLive, h.budget(t), "nothing was lost across runs")

	rh := fetchHistory(t, wid, run)
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, rh.last())
	require.Zero(t, rh.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED), "not the cancel path")
	require.Equal(t, map[string]int{workflows.VersionLedgerClosing: 1}, rh.versions(t), "it closed handing over what kept coming")
	// The signals of the lifecycles of other tests count too.
	require.GreaterOrEqual(t, rh.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)+
		rh.signals(workflows.SignalRelease)+rh.signals(workflows.SignalReserve), 500)
	next := decodeInput[workflows.LedgerState](t, rh)
	require.Zero(t, next.UpdatesThisRun)
	require.Equal(t, withLive.Total, next.Total)
	require.Contains(t, next.Allocations, id, "the live allocation is carried over")
	require.Equal(t, int64(1000), next.Allocations[id].Amount)

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id)
	require.Equal(t, int64(1000), final.Cleanup.Refunded, "the new run refunds what the old one reserved")
	recordRun(t, "ledger-continue-as-new", rh)
}

// TestHistoryCancelRunningLifecycle: a cancel (the Web UI's button,
// `temporal workflow cancel`) of a running lifecycle fails it and runs its
// compensations: process stopped, budget back, cleaned up.
func TestHistoryCancelRunningLifecycle(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("sleeper")
	wid := workflows.WorkflowID(id)
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-hist-cancel", "--master", "development-master", "--worker-id", id)
	t.Cleanup(func() { killAll(workerProcesses(id)) })
	pid := h.status(t, id).PID
	h.starterOK(t, "heartbeat", id, "--tokens-used", "42")

	require.NoError(t, h.client.CancelWorkflow(ctx, wid, ""))
	final, err := h.fleet.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Equal(t, "lifecycle cancelled", final.Cleanup.Reason)
	require.Equal(t, workflows.ProcessStopped, final.Cleanup.Process)
	require.Equal(t, int64(1000), final.Cleanup.Refunded)
	require.Equal(t, int64(42), final.TokenBudget.Used)
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))

	rh := fetchHistory(t, wid, "")
	require.Equal(t, 1, rh.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED))
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, rh.last(), "the lifecycle ends with its final spec")
	require.Len(t, rh.activities("StopProcess"), 1)
	rh.refundedBySignal(t)
	require.Equal(t, leanVersions(), rh.versions(t), "one marker, whatever the scenario")
	recordRun(t, "lifecycle-cancel", rh)
}

// TestHistoryZombieRetriesCleanup: a zombie whose host's worker program is
// gone cannot stop its process; the compensation fails when it is first
// run and again on each `starter cleanup` while the host is away, then
// succeeds once the host is back: cleaned up, process gone, budget back
// once.
func TestHistoryZombieRetriesCleanup(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	const host = "it-host-hist-zombie"
	id, pid := spawnOnOwnHost(t, host, "task-hist-zombie", "--zombie-after", "8s")
	wid := workflows.WorkflowID(id)

	h.crashWorker(t, host)
	// No heartbeat: a zombie after 8s, whose stop cannot reach the host.
	var spec workflows.WorkerSpec
	require.Eventually(t, func() bool {
		spec, _ = h.fleet.Status(ctx, id)
		return spec.Cleanup != nil && spec.Status == workflows.StatusZombie && spec.Cleanup.Refunded == 1000
	}, 60*time.Second, 200*time.Millisecond, "the compensation runs and fails")
	require.Contains(t, spec.Cleanup.Reason, "no heartbeat for")
	require.Contains(t, spec.Cleanup.Reason, "cleanup incomplete: stop process")
	require.True(t, procfs.Alive(pid), "nobody could stop it")
	require.Equal(t, before, h.budget(t), "the refund went through; only the stop is owed")

	for range 2 {
		_, errOut, code := h.starter(t, "cleanup", id)
		require.Equal(t, 1, code, errOut)
		require.Contains(t, errOut, "cleanup of "+id+" failed again")
		require.Equal(t, workflows.StatusZombie, h.status(t, id).Status)
	}
	require.True(t, procfs.Alive(pid))

	require.NoError(t, h.startWorker(host))
	final := starterJSON[workflows.WorkerSpec](t, "cleanup", id)
	require.Equal(t, workflows.StatusCleanedUp, final.Status)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Equal(t, workflows.ProcessStopped, final.Cleanup.Process)
	require.Equal(t, int64(1000), final.Cleanup.Refunded, "refunded once")
	require.NotNil(t, final.Cleanup.CleanedAt)
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))

	rh := fetchHistory(t, wid, "")
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, rh.last())
	// The supervisor's stop, the first compensation, two failed cleanups,
	// the one that worked.
	require.Len(t, rh.activities("StopProcess"), 5)
	require.GreaterOrEqual(t, rh.count(enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT), 4, "each stop before the host came back timed out unstarted")
	rh.refundedBySignal(t) // the refund is not repeated
	require.Equal(t, 3, rh.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED), "three cleanups")
	// Its backstop asked the host, which did not answer (ask-host-first).
	require.Equal(t, leanVersionsWithZombie(), rh.versions(t))
	require.Contains(t, final.Cleanup.Reason, "its host did not answer for it")
	require.Len(t, rh.activities("HeldHeartbeat"), 1)
	require.Len(t, rh.localActivities(t, "RecordEvent"), 3, "zombie_detected, worker_failed, and cleanup_failed once for its four failed stops")
	recordRun(t, "lifecycle-lean-zombie-asked-host", rh)
}

// TestHistoryZombieContinuesAsNew: a zombie whose host is away and whose
// run has taken all the signals it may (3 heartbeats, sent to the zombie)
// continues as new before its next wait (version zombie-continue-as-new),
// with what it owes; the next run retries at once and again on `starter
// cleanup` once the host is back: cleaned up, the heartbeats counted, the
// process gone and the budget back once.
func TestHistoryZombieContinuesAsNew(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	const host = "it-host-hist-zombie-can"
	require.NoError(t, h.startWorker(host))
	t.Cleanup(func() { h.stopWorker(host, syscall.SIGTERM) })
	id := newID("sleeper")
	wid := workflows.WorkflowID(id)
	const master = "zombie-can-master"
	_, err := h.fleet.Start(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-hist-zombie-can",
		Master: master, Host: host, MaxRestarts: -1, Limits: workflows.Limits{
			ZombieAfter: 8 * time.Second, HostLossAfter: 3 * time.Second, WatchHeartbeat: 2 * time.Minute, MaxSignalsPerRun: 3}})
	require.NoError(t, err)
	t.Cleanup(func() { killAll(workerProcesses(id)) })
	pid := h.waitStatus(t, id, workflows.StatusRunning, 30*time.Second).PID
	firstRun := currentRunID(t, wid)

	h.crashWorker(t, host)
	require.Eventually(t, func() bool {
		spec, _ := h.fleet.Status(ctx, id)
		return spec.Status == workflows.StatusZombie && spec.Cleanup != nil && spec.Cleanup.Refunded > 0
	}, 60*time.Second, 200*time.Millisecond, "a zombie whose stop cannot reach its host")
	for i := 1; i <= 3; i++ {
		require.NoError(t, h.fleet.Heartbeat(ctx, id, workflows.Heartbeat{TokensUsed: int64(10 * i)}))
	}
	_, errOut, code := h.starter(t, "cleanup", id)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "cleanup of "+id+" failed again")
	require.Eventually(t, func() bool { return currentRunID(t, wid) != firstRun }, 30*time.Second, 200*time.Millisecond,
		"the zombie continues as new before its next wait")
	moved := h.waitStatus(t, id, workflows.StatusZombie, 10*time.Second)
	require.Equal(t, int64(3), moved.Heartbeat.Count, "the heartbeats sent to the zombie are counted")
	require.Equal(t, int64(30), moved.TokenBudget.Used)
	require.True(t, procfs.Alive(pid), "nobody could stop it")
	require.Equal(t, before, h.budget(t), "the refund went through; only the stop is owed")

	require.NoError(t, h.startWorker(host))
	final := starterJSON[workflows.WorkerSpec](t, "cleanup", id)
	require.Equal(t, workflows.StatusCleanedUp, final.Status)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Contains(t, final.Cleanup.Reason, "no heartbeat for")
	require.Equal(t, workflows.ProcessStopped, final.Cleanup.Process)
	require.Equal(t, before, h.budget(t), "refunded once")
	requireGone(t, pid)
	// Its first run, closed in zombie, is not a zombie of today's.
	require.Equal(t, "no zombie to clean up\n", h.starterOK(t, "cleanup", "--zombies", "--master", master))
	require.NotContains(t, h.starterOK(t, "list", "--status", "zombie", "--master", master), id)

	chain := runChain(t, wid)
	require.Len(t, chain, 2)
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, chain[0].last())
	require.Equal(t, leanVersionsWithZombie(), chain[0].versions(t), "zombie-continue-as-new, implied by lean-lifecycle")
	next := decodeInput[workflows.LifecycleState](t, chain[0])
	require.NotNil(t, next.Ending)
	require.Equal(t, []string{"stop process"}, next.Ending.Owed)
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, chain[1].last())
	chain[0].refundedBySignal(t)
	require.Zero(t, chain[1].sentSignals(workflows.LedgerWorkflowID, workflows.SignalRelease), "not refunded again")
	require.Empty(t, chain[1].localActivities(t, "ReleaseBySignal"), "not refunded again")
	recordRun(t, "lifecycle-lean-zombie-continue-as-new", chain[0])
	recordRun(t, "lifecycle-lean-zombie-continued", chain[1])
}

// TestHistoryOutputHeartbeats: a worker type with heartbeat mode "output"
// lives on the watcher's output heartbeats alone, then shuts down.
func TestHistoryOutputHeartbeats(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("printer")
	wid := workflows.WorkflowID(id)
	h.starterOK(t, "spawn", "--type", "printer-worker", "--task-id", "task-hist-output", "--master", "inventory-master",
		"--worker-id", id, "--sample-every", "500ms", "--zombie-after", "4s")
	t.Cleanup(func() { killAll(workerProcesses(id)) })
	pid := h.status(t, id).PID
	var spec workflows.WorkerSpec
	require.Eventually(t, func() bool {
		spec, _ = h.fleet.Status(ctx, id)
		return spec.Heartbeat.Count >= 8
	}, 30*time.Second, 200*time.Millisecond, "the output counts as heartbeats")
	// Twice the zombie limit has passed since it started: only the output
	// kept it alive.
	time.Sleep(time.Until(spec.StartedAt.Add(8 * time.Second)))
	spec = h.status(t, id)
	require.Equal(t, workflows.StatusRunning, spec.Status)
	require.WithinDuration(t, time.Now(), *spec.Heartbeat.LastSeen, 3*time.Second)

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id, "--grace", "2s")
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, int64(400), final.Cleanup.Refunded)
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))

	rh := fetchHistory(t, wid, "")
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, rh.last())
	require.GreaterOrEqual(t, rh.signals(workflows.SignalOutputHeartbeat), 8)
	require.Zero(t, rh.signals(workflows.SignalHeartbeat), "the process itself sent none")
	watches := rh.activities("WatchProcess")
	require.Len(t, watches, 1)
	var in activities.WatchInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(watches[0].Input, &in))
	require.True(t, in.OutputHeartbeat)
	recordRun(t, "lifecycle-output-heartbeats", rh)
}

// TestHistoryEscalatedStop: a shutdown with a minute's grace to a tree that
// ignores SIGTERM, then a kill during the stop: the kill escalates at once
// (a second StopProcess without grace) instead of waiting out the grace.
func TestHistoryEscalatedStop(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("tree")
	wid := workflows.WorkflowID(id)
	h.starterOK(t, "spawn", "--type", "tree-worker", "--task-id", "task-hist-escalate", "--master", "development-master", "--worker-id", id)
	var tree []int
	require.Eventually(t, func() bool { tree = workerProcesses(id); return len(tree) == 3 }, 10*time.Second, 50*time.Millisecond,
		"the tree, its child and its grandchild")
	t.Cleanup(func() { killAll(tree) })

	type result struct {
		spec workflows.WorkerSpec
		err  error
	}
	stopped := make(chan result, 1)
	go func() {
		spec, err := h.fleet.Shutdown(ctx, id, workflows.ShutdownRequest{Grace: time.Minute, Reason: "graceful"})
		stopped <- result{spec, err}
	}()
	require.Eventually(t, func() bool {
		spec, err := h.fleet.Status(ctx, id)
		return err == nil && spec.Status == workflows.StatusShuttingDown
	}, 10*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second) // SIGTERM is sent and ignored
	require.Len(t, workerProcesses(id), 2, "the leader and the grandchild ignore SIGTERM")

	killed := time.Now()
	_, err := h.fleet.Kill(ctx, id, workflows.KillRequest{Reason: "escalate"})
	require.NoError(t, err)
	var res result
	select {
	case res = <-stopped:
	case <-time.After(40 * time.Second):
		t.Fatal("the kill did not end the graceful stop")
	}
	require.NoError(t, res.err)
	final, err := h.fleet.Wait(ctx, id)
	require.NoError(t, err)
	t.Logf("escalation: completed %s after the kill (grace 1m)", time.Since(killed).Round(100*time.Millisecond))
	require.Less(t, time.Since(killed), 30*time.Second, "the grace was not waited out")
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusShuttingDown, workflows.StatusCompleted}, statuses(final))
	require.Equal(t, "graceful", final.Cleanup.Reason, "the stop under way is the one recorded")
	require.NotNil(t, final.ExitCode)
	require.Equal(t, 137, *final.ExitCode, "SIGKILL")
	require.Equal(t, int64(800), final.Cleanup.Refunded)
	for _, pid := range tree {
		requireGone(t, pid)
	}
	require.Equal(t, before, h.budget(t))

	rh := fetchHistory(t, wid, "")
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, rh.last())
	require.Equal(t, 2, rh.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED), "the shutdown and the kill")
	stops := rh.activities("StopProcess")
	require.Len(t, stops, 2)
	var graces []time.Duration
	for _, s := range stops {
		var in activities.StopInput
		require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(s.Input, &in))
		graces = append(graces, in.Grace)
	}
	require.Equal(t, []time.Duration{time.Minute, 0}, graces, "the graceful stop, then the escalation")
	recordRun(t, "lifecycle-escalated-stop", rh)
}

// TestHistoryCustomLimits: a lifecycle with every limit changed from its
// default goes through a heartbeat warning and a critical alert, becomes a
// zombie, is restarted once after its own delay, becomes a zombie again and
// is cleaned up. A history with default limits only would not notice a
// change of the defaults that alters running lifecycles.
func TestHistoryCustomLimits(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	limits := workflows.Limits{
		HeartbeatWarning:  2 * time.Second,
		HeartbeatCritical: 4 * time.Second,
		ZombieAfter:       7 * time.Second,
		IdleAfter:         90 * time.Second,
		ShutdownGrace:     3 * time.Second,
		MaxSignalsPerRun:  50,
		WatchHeartbeat:    15 * time.Second,
		HostLossAfter:     45 * time.Second,
		SampleEvery:       700 * time.Millisecond,
		RestartDelay:      2 * time.Second,
		RestartMaxDelay:   9 * time.Second,
		HealthyRun:        20 * time.Second,
	}
	// Every limit is set, and none to its default.
	set, defaults := reflect.ValueOf(limits), reflect.ValueOf(workflows.Limits{}.WithDefaults())
	for i := range set.NumField() {
		name := set.Type().Field(i).Name
		require.False(t, set.Field(i).IsZero(), "limit %s is not set", name)
		require.NotEqual(t, defaults.Field(i).Interface(), set.Field(i).Interface(), "limit %s is its default", name)
	}
	require.Equal(t, limits, limits.WithDefaults())

	id := newID("sleeper")
	wid := workflows.WorkflowID(id)
	spec, err := h.fleet.Spawn(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-hist-limits",
		Master: "development-master", MaxRestarts: 1, Limits: limits})
	require.NoError(t, err)
	t.Cleanup(func() { killAll(workerProcesses(id)) })
	firstPID := spec.PID
	require.NoError(t, h.fleet.Heartbeat(ctx, id, workflows.Heartbeat{TokensUsed: 10}))

	// Watch the alerts of the first process go by.
	seen := map[string]time.Duration{}
	start := time.Now()
	for spec.Status != workflows.StatusPending && time.Since(start) < 30*time.Second {
		spec, err = h.fleet.Status(ctx, id)
		require.NoError(t, err)
		if a := spec.Heartbeat.Alert; a != "" && spec.Status == workflows.StatusRunning {
			if _, ok := seen[a]; !ok {
				seen[a] = time.Since(*spec.Heartbeat.LastSeen)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("alerts seen after the last heartbeat: %v", seen)
	require.Contains(t, seen, workflows.AlertWarning)
	require.Contains(t, seen, workflows.AlertCritical)
	require.GreaterOrEqual(t, seen[workflows.AlertWarning], 2*time.Second)
	require.GreaterOrEqual(t, seen[workflows.AlertCritical], 4*time.Second)

	final, err := h.fleet.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusFailed, workflows.StatusPending,
		workflows.StatusRunning, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Len(t, final.Restarts, 1)
	require.Equal(t, 2*time.Second, final.Restarts[0].Delay)
	// The host, asked first (ask-host-first), held nothing of the agent,
	// which sent nothing: the zombie is the lifecycle's own.
	require.Regexp(t, `^no heartbeat for \d+s \(zombie limit 7s\), by signal or through its host$`, final.Restarts[0].Reason)
	require.Regexp(t, `^gave up after 1 restarts: no heartbeat for \d+s \(zombie limit 7s\), by signal or through its host$`, final.Cleanup.Reason)
	require.Equal(t, int64(1000), final.Cleanup.Refunded)
	requireGone(t, firstPID)
	requireGone(t, final.PID)
	require.Equal(t, before, h.budget(t))
	require.GreaterOrEqual(t, final.Transitions[4].At.Sub(final.Transitions[3].At), 2*time.Second, "the restart waited its own delay")
	// The second process ran its zombie limit from its own start.
	second := final.Transitions[4].At
	require.WithinDuration(t, second.Add(7*time.Second), final.Transitions[5].At, 3*time.Second)

	rh := fetchHistory(t, wid, "")
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, rh.last())
	watches := rh.activities("WatchProcess")
	require.Len(t, watches, 2, "one watch per process")
	for _, w := range watches {
		require.Equal(t, 15*time.Second, w.HeartbeatTimeout.AsDuration(), "watch heartbeat")
		require.Equal(t, 45*time.Second, w.ScheduleToStartTimeout.AsDuration(), "host loss limit")
		var in activities.WatchInput
		require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(w.Input, &in))
		require.Equal(t, 700*time.Millisecond, in.SampleEvery)
	}
	var started workflows.LifecycleState
	for _, ev := range rh.events {
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(a.Input, &started))
		}
	}
	require.Equal(t, limits, started.Request.Limits, "the limits are the lifecycle's input")
	raw, _ := json.Marshal(started.Request.Limits)
	t.Logf("limits: %s; %d events", raw, len(rh.events))
	recordRun(t, "lifecycle-custom-limits", rh)
}

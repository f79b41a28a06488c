package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/devserver"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestHundredSpawnsOverABudgetForTen: exactly ten run, ninety are refused
// with the budget error, and the ledger is exact after all stop — the old
// system lost updates here.
func TestHundredSpawnsOverABudgetForTen(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	h.starterOK(t, "budget", "set", "--total", fmt.Sprint(before.Used+10*1000))
	t.Cleanup(func() { h.starterOK(t, "budget", "set", "--total", fmt.Sprint(before.Total)) })

	started := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var running []string
	refused := 0
	var other []error
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("worker-sleeper-crowd%03d", i)
			spec, err := h.fleet.Spawn(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-crowd",
				Master: "crowd-master", MaxRestarts: -1})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && spec.Status == workflows.StatusRunning:
				running = append(running, id)
			case err != nil && strings.Contains(err.Error(), "insufficient budget: available"):
				refused++
			default:
				other = append(other, fmt.Errorf("%s: %v (%s)", id, err, spec.Status))
			}
		}()
	}
	wg.Wait()
	t.Logf("100 concurrent spawns settled in %s", time.Since(started).Round(100*time.Millisecond))
	require.Empty(t, other)
	require.Len(t, running, 10)
	require.Equal(t, 90, refused)
	b := h.budget(t)
	require.Zero(t, b.Available)

	out := h.starterOK(t, "shutdown", "--all", "--master", "crowd-master", "--grace", "1s")
	require.Contains(t, out, "10 stopped, 0 failed")
	after := h.budget(t)
	require.Equal(t, after.Total, after.Available+after.Used)
	require.Equal(t, before.Used, after.Used, "every allocation came back, once")
	ids, err := h.fleet.ListIDs(ctx, fleet.Filter{Master: "crowd-master"})
	require.NoError(t, err)
	require.Empty(t, ids)
}

// TestDuplicateStopsRefundOnce sends shutdowns, kills and cleanups at the
// same worker at once, several times: the budget comes back exactly once.
func TestDuplicateStopsRefundOnce(t *testing.T) {
	before := h.budget(t)
	ids := spawnMany(t, 3, "dup-master", nil)
	var wg sync.WaitGroup
	for _, id := range ids {
		for _, args := range [][]string{{"shutdown", id}, {"kill", id}, {"shutdown", id, "--grace", "0s"}, {"kill", id}, {"cleanup", id}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, _ = h.starter(t, args...) // some are refused: the worker ended already
			}()
		}
	}
	wg.Wait()
	for _, id := range ids {
		spec, err := h.fleet.Wait(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, workflows.StatusCompleted, spec.Status)
		require.Equal(t, int64(1000), spec.Cleanup.Refunded, "refunded once")
	}
	require.Equal(t, before, h.budget(t))
}

// TestSenderClockIsIgnored: a heartbeat whose sender's clock is hours off
// changes nothing about staleness.
func TestSenderClockIsIgnored(t *testing.T) {
	id := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-clock", "--master", "clock-master",
		"--worker-id", id, "--zombie-after", "6s")
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })
	past := time.Now().Add(-5 * time.Hour)
	future := time.Now().Add(5 * time.Hour)
	for _, sent := range []time.Time{past, future} {
		require.NoError(t, h.fleet.Heartbeat(context.Background(), id, workflows.Heartbeat{TokensUsed: 1, SentAt: &sent}))
		spec := h.status(t, id)
		require.WithinDuration(t, time.Now(), *spec.Heartbeat.LastSeen, 3*time.Second, "last_seen is when it was received")
		require.Empty(t, spec.Heartbeat.Alert)
		time.Sleep(2 * time.Second)
	}
	require.Equal(t, workflows.StatusRunning, h.status(t, id).Status, "neither an old nor a future clock made it a zombie")
}

// TestServerRestartKeepsLifecyclesGoing restarts a dev server that keeps its
// state in a SQLite file while a lifecycle runs: after the restart the same
// lifecycle takes heartbeats and stops cleanly, its budget refunded.
func TestServerRestartKeepsLifecyclesGoing(t *testing.T) {
	ctx := context.Background()
	port, err := devserver.FreePort()
	require.NoError(t, err)
	address := "127.0.0.1:" + port
	db := filepath.Join(t.TempDir(), "temporal.db")
	start := func() *devserver.Server {
		s, err := devserver.Start(ctx, devserver.Options{CLI: h.temporal, Address: address, DBFilename: db, LogLevel: "error"})
		require.NoError(t, err)
		return s
	}
	server := start()
	worker := exec.Command(filepath.Join(h.dir, "bin", "worker"), "--address", address, "--worker-types", h.typesFile,
		"--log-dir", h.logDir, "--state-dir", filepath.Join(t.TempDir(), "state"), "--host", "it-host-sqlite")
	require.NoError(t, worker.Start())
	t.Cleanup(func() { _ = worker.Process.Kill(); _ = worker.Wait() })
	env := []string{"TEMPORAL_ADDRESS=" + address}
	starter := func(args ...string) string {
		out, errOut, code := h.starterWith(t, env, args...)
		require.Zero(t, code, "starter %v: %s", args, errOut)
		return out
	}

	id := newID("sleeper")
	require.Eventually(t, func() bool {
		_, errOut, code := h.starterWith(t, env, "spawn", "--type", "sleeper-worker", "--task-id", "task-restart",
			"--master", "development-master", "--worker-id", id)
		return code == 0 || strings.Contains(errOut, "already live")
	}, 30*time.Second, time.Second, "the worker program polls the new server")
	starter("heartbeat", id, "--tokens-used", "10")
	pid := processPIDOf(t, starter("status", id, "-o", "json"))

	require.NoError(t, server.Stop())
	restarted := time.Now()
	server = start()
	t.Cleanup(func() { _ = server.Stop() })

	require.Eventually(t, func() bool {
		_, _, code := h.starterWith(t, env, "heartbeat", id, "--tokens-used", "20")
		return code == 0
	}, 30*time.Second, time.Second, "the lifecycle takes heartbeats after the restart")
	t.Logf("server restart: heartbeats accepted again %s after the server was started again", time.Since(restarted).Round(100*time.Millisecond))
	status := starter("status", id, "-o", "json")
	require.Contains(t, status, `"status": "running"`)
	require.Equal(t, pid, processPIDOf(t, status), "the same process")
	final := starter("shutdown", id, "-o", "json")
	require.Contains(t, final, `"status": "completed"`)
	require.Contains(t, final, `"refunded": 1000`)
	requireGone(t, pid)
	require.Contains(t, starter("budget", "show"), "used 0")
}

func processPIDOf(t *testing.T, specJSON string) int {
	t.Helper()
	var spec workflows.WorkerSpec
	require.NoError(t, json.Unmarshal([]byte(specJSON), &spec), specJSON)
	require.NotZero(t, spec.PID)
	return spec.PID
}

// TestWorkerProgramKilledDuringSpawn kills the worker program in the
// narrowest window of a spawn: the process is started, its PID not yet
// recorded. The program started again must take that process back: one
// process, the lifecycle running, and an exact ledger once it stops.
func TestWorkerProgramKilledDuringSpawn(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	const host = "it-host-spawn-crash"
	reached := filepath.Join(t.TempDir(), "reached")
	require.NoError(t, h.startWorkerWith(host, filepath.Join(h.dir, "bin-failpoints", "worker"),
		"LIFECYCLE_FAILPOINT=after-process-start", "LIFECYCLE_FAILPOINT_MARK="+reached))
	t.Cleanup(func() { h.stopWorker(host, syscall.SIGTERM) })

	id := newID("sleeper")
	_, err := h.fleet.Start(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-spawn-crash",
		Master: "development-master", Host: host, MaxRestarts: -1})
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := os.Stat(reached); return err == nil }, 30*time.Second, 50*time.Millisecond,
		"the worker program reaches the point between start and record")
	started := workerProcesses(id)
	require.Len(t, started, 1, "the process is started")

	h.crashWorker(t, host)
	require.True(t, procfs.Alive(started[0]), "the process outlives its worker program")
	restarted := time.Now()
	require.NoError(t, h.startWorker(host))
	spec := h.waitStatus(t, id, workflows.StatusRunning, 90*time.Second)
	t.Logf("recovery: running %s after the worker program was started again", time.Since(restarted).Round(100*time.Millisecond))
	require.Equal(t, started[0], spec.PID, "the process started before the crash is taken back")
	require.Equal(t, started, workerProcesses(id), "nothing was started twice")

	h.starterOK(t, "heartbeat", id, "--tokens-used", "5")
	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id)
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, workflows.ProcessStopped, final.Cleanup.Process)
	require.Equal(t, int64(1000), final.Cleanup.Refunded)
	requireGone(t, started[0])
	require.Equal(t, before, h.budget(t))
}

// TestWorkerProgramKilledDuringCleanup kills the worker program while it
// waits for a tree that ignores SIGTERM to end: the program started again
// finishes the stop, nothing of the tree is left, the budget comes back once.
func TestWorkerProgramKilledDuringCleanup(t *testing.T) {
	before := h.budget(t)
	id := newID("tree")
	h.starterOK(t, "spawn", "--type", "tree-worker", "--task-id", "task-cleanup-crash", "--master", "development-master",
		"--worker-id", id, "--host", "it-host-a")
	require.Eventually(t, func() bool { return len(workerProcesses(id)) == 3 }, 10*time.Second, 50*time.Millisecond,
		"the tree, its child and its grandchild")
	tree := workerProcesses(id)

	type result struct {
		out  string
		code int
	}
	stopped := make(chan result, 1)
	go func() {
		out, _, code := h.starter(t, "shutdown", id, "--grace", "20s", "-o", "json")
		stopped <- result{out, code}
	}()
	require.Eventually(t, func() bool {
		spec, err := h.fleet.Status(context.Background(), id)
		return err == nil && spec.Status == workflows.StatusShuttingDown
	}, 10*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second) // SIGTERM is sent and ignored; the stop waits out its grace
	require.Len(t, workerProcesses(id), 2, "the leader and the grandchild ignore SIGTERM (the child ended on it)")

	h.crashWorker(t, "it-host-a")
	restarted := time.Now()
	require.NoError(t, h.startWorker("it-host-a"))
	var res result
	select {
	case res = <-stopped:
	case <-time.After(100 * time.Second):
		t.Fatal("the shutdown did not finish after the worker program was started again")
	}
	t.Logf("recovery: cleaned up %s after the worker program was started again", time.Since(restarted).Round(100*time.Millisecond))
	require.Zero(t, res.code, res.out)
	var final workflows.WorkerSpec
	require.NoError(t, json.Unmarshal([]byte(res.out), &final))
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, int64(800), final.Cleanup.Refunded)
	for _, pid := range tree {
		requireGone(t, pid)
	}
	require.Empty(t, workerProcesses(id))
	require.Equal(t, before, h.budget(t))
}

// TestTenThousandHeartbeats floods one lifecycle with the default limits
// but a short zombie deadline: every heartbeat is counted, no run's history
// grows with the total, and once the heartbeats stop the lifecycle is still
// reaped as a zombie with its process gone and its budget back.
func TestTenThousandHeartbeats(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("sleeper")
	spec, err := h.fleet.Spawn(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-flood-10k",
		Master: "development-master", MaxRestarts: -1, Limits: workflows.Limits{ZombieAfter: 15 * time.Second}})
	require.NoError(t, err)
	pid := spec.PID
	// A failure below must not leave a live lifecycle to the next test.
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })

	// At most rate a second, from 20 senders at once. A run continues as
	// new once it has taken the limit and whatever came with it; a flood
	// faster than one workflow takes its tasks keeps refusing the run's
	// continue-as-new (each try meets new signals) and the run grows with
	// the flood: 850/s here gave runs of 4,800 heartbeats, on the code of
	// r7 too. One lifecycle's heartbeats come from its one agent; a
	// thousand agents' are a thousand lifecycles.
	const total, senders, rate = 10000, 20, 300
	started := time.Now()
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	errs := make(chan error, senders)
	for s := range senders {
		go func() {
			var err error
			for i := s; i < total-1 && err == nil; i += senders {
				<-tick.C
				err = h.fleet.Heartbeat(ctx, id, workflows.Heartbeat{TokensUsed: int64(i)})
			}
			errs <- err
		}()
	}
	for range senders {
		require.NoError(t, <-errs)
	}
	// The last one, alone, so that its tokens are the ones recorded.
	require.NoError(t, h.fleet.Heartbeat(ctx, id, workflows.Heartbeat{TokensUsed: total}))
	lastSent := time.Now()
	t.Logf("%d heartbeats sent in %s", total, lastSent.Sub(started).Round(time.Millisecond))
	require.Eventually(t, func() bool {
		spec, err := h.fleet.Status(ctx, id)
		return err == nil && spec.Heartbeat.Count == total
	}, 60*time.Second, 200*time.Millisecond, "every heartbeat is recorded")
	spec = h.status(t, id)
	require.Equal(t, int64(total), spec.TokenBudget.Used, "the tokens of the last heartbeat")
	require.Equal(t, workflows.StatusRunning, spec.Status)

	// Every run of the lifecycle, followed from the first: several, each
	// far shorter than the total. A run takes at least the limit, and
	// before it continues as new it applies whatever is buffered, so how
	// many runs the flood makes depends on how fast it arrived.
	chain := runChain(t, workflows.WorkflowID(id))
	var longest, signals int
	for i, run := range chain {
		longest = max(longest, len(run.events))
		signals += run.signals(workflows.SignalHeartbeat)
		t.Logf("run %d: %d events, %d heartbeats, ends %s", i+1, len(run.events), run.signals(workflows.SignalHeartbeat), run.last())
	}
	t.Logf("%d runs, the longest history %d events", len(chain), longest)
	require.Equal(t, total, signals, "every heartbeat reached one run")
	require.Greater(t, len(chain), 2, "continued as new")
	for _, run := range chain[:len(chain)-1] {
		require.GreaterOrEqual(t, run.signals(workflows.SignalHeartbeat), workflows.DefaultMaxSignals, "a run continues as new only after the limit")
	}
	// At worst a heartbeat costs its signal event and a workflow task of
	// three events; a run takes at most the limit plus what was buffered.
	require.LessOrEqual(t, longest, 4*workflows.DefaultMaxSignals+100, "one run's history is bounded")

	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 90*time.Second)
	t.Logf("zombie detected and cleaned up %s after the last heartbeat (deadline 15s)", time.Since(lastSent).Round(100*time.Millisecond))
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Contains(t, final.Cleanup.Reason, "no heartbeat for")
	require.WithinDuration(t, final.Heartbeat.LastSeen.Add(15*time.Second), final.Transitions[2].At, 5*time.Second, "the deadline runs from the last heartbeat")
	require.Equal(t, int64(total), final.Heartbeat.Count)
	require.Equal(t, int64(1000), final.Cleanup.Refunded)
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))
}

// TestLedgerCancelledOrTerminated: a cancelled ledger carries on with its
// allocations; a terminated one is replaced by an empty one, and `budget
// recalc` reserves again what the running lifecycles hold, so that their
// refunds still balance.
func TestLedgerCancelledOrTerminated(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-ledger-loss", "--master", "development-master", "--worker-id", id)
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })
	withLive := h.budget(t)
	require.Equal(t, before.Used+1000, withLive.Used)

	require.NoError(t, h.client.CancelWorkflow(ctx, workflows.LedgerWorkflowID, ""))
	require.Eventually(t, func() bool {
		desc, err := h.client.DescribeWorkflowExecution(ctx, workflows.LedgerWorkflowID, "")
		return err == nil && desc.WorkflowExecutionInfo.Execution.RunId != desc.WorkflowExecutionInfo.FirstRunId
	}, 20*time.Second, 100*time.Millisecond, "the cancelled ledger continues as new")
	require.Equal(t, withLive.Used, h.budget(t).Used, "a cancel loses nothing")
	require.Equal(t, withLive.Total, h.budget(t).Total)

	require.NoError(t, h.client.TerminateWorkflow(ctx, workflows.LedgerWorkflowID, "", "operator mistake"))
	fresh := h.budget(t)
	require.Zero(t, fresh.Used, "a terminated ledger is replaced by an empty one")
	h.starterOK(t, "budget", "set", "--total", fmt.Sprint(withLive.Total))

	dry := starterJSON[fleet.Recalc](t, "budget", "recalc", "--dry-run")
	require.Len(t, dry.Missing, 1)
	require.False(t, dry.Missing[0].Restored)
	require.Zero(t, h.budget(t).Used, "a dry run changes nothing")
	r := starterJSON[fleet.Recalc](t, "budget", "recalc")
	require.Len(t, r.Missing, 1)
	require.Equal(t, id, r.Missing[0].WorkerID)
	require.True(t, r.Missing[0].Restored)
	require.Equal(t, int64(1000), r.Restored)
	rebuilt := h.budget(t)
	require.Equal(t, withLive.Used, rebuilt.Used)
	require.Equal(t, withLive.Available, rebuilt.Available)
	again := starterJSON[fleet.Recalc](t, "budget", "recalc")
	require.Empty(t, again.Missing, "restored once")

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id)
	require.Equal(t, int64(1000), final.Cleanup.Refunded, "the refund finds its allocation")
	after := h.budget(t)
	require.Equal(t, before.Used, after.Used)
	require.Equal(t, before.Available, after.Available)
}

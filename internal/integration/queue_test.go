package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestSpawnsWaitForBudget: 190 spawns with --wait-for-budget, of mixed
// priorities, over a budget for 10 that ten long workers hold. Once those
// stop, every queued worker runs (each for a second), never more than ten
// at once, by priority: no worker is admitted while one of a higher
// priority still waits. A queued worker that is shut down, and one whose
// queue timeout passes, end holding nothing; the budget ends exact.
func TestSpawnsWaitForBudget(t *testing.T) {
	ctx := context.Background()
	const slots, queued, each = 10, 190, 100
	before := h.budget(t)
	require.Empty(t, before.Queue)
	h.starterOK(t, "budget", "set", "--total", fmt.Sprint(before.Used+slots*each))
	t.Cleanup(func() { h.starterOK(t, "budget", "set", "--total", fmt.Sprint(before.Total)) })

	blockers := make([]string, slots)
	for i := range blockers {
		blockers[i] = newID("sleeper")
		h.spawnOK(t, blockers[i], "--type", "sleeper-worker", "--master", "queue-blockers", "--budget", fmt.Sprint(each))
	}

	// One through the CLI, to see what an operator sees; the rest through
	// the client the CLI is built on, all at once.
	priorities := []string{"low", "medium", "high", "critical"}
	ids := make([]string, queued)
	priorityOf := map[string]int{}
	for i := range ids {
		ids[i] = newID("napper")
		priorityOf[ids[i]] = i % len(priorities)
	}
	out := h.spawnOK(t, ids[0], "--type", "napper-worker", "--master", "queue-test", "--priority", priorities[0], "--wait-for-budget")
	require.Contains(t, out, "queued for budget: position 1 in pool queue-test,")
	var g errgroup.Group
	g.SetLimit(20)
	for _, id := range ids[1:] {
		g.Go(func() error {
			_, err := h.fleet.Start(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "napper-worker", Master: "queue-test",
				TaskID: "task-queue", Priority: priorities[priorityOf[id]], MaxRestarts: -1, WaitForBudget: true})
			return err
		})
	}
	require.NoError(t, g.Wait())
	for deadline := time.Now().Add(2 * time.Minute); len(h.budget(t).Queue) < queued; time.Sleep(250 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "only %d of %d queued", len(h.budget(t).Queue), queued)
	}

	// What an operator sees of the queue.
	full := h.budget(t)
	require.Equal(t, int64(queued*each), full.Queued)
	last := full.Queue[len(full.Queue)-1]
	require.Equal(t, "low", last.Priority, "the lowest priority waits at the end")
	require.Contains(t, h.starterOK(t, "status", last.WorkerID), fmt.Sprintf("queued for budget: position %d in pool queue-test,", queued))
	require.Contains(t, h.starterOK(t, "budget", "show"), fmt.Sprintf("queued %d (%d requests)", queued*each, queued))
	require.Contains(t, h.starterOK(t, "list", "--master", "queue-test"), fmt.Sprintf("pending (queued #%d)", queued))

	// A queued worker shut down holds nothing and leaves the queue.
	h.starterOK(t, "shutdown", last.WorkerID, "--reason", "not needed after all")
	gone := h.waitStatus(t, last.WorkerID, workflows.StatusCompleted, 30*time.Second)
	require.Nil(t, gone.Queue)
	require.Zero(t, gone.PID)
	require.Equal(t, "not needed after all", gone.Cleanup.Reason)
	h.recordHistory(t, "lifecycle-queued-shutdown", workflows.WorkflowID(last.WorkerID))
	// And one whose queue timeout passes fails holding nothing.
	late := newID("napper")
	h.spawnOK(t, late, "--type", "napper-worker", "--master", "queue-test", "--wait-for-budget", "--queue-timeout", "2s")
	timedOut := h.waitStatus(t, late, workflows.StatusFailed, 30*time.Second)
	require.Contains(t, timedOut.Cleanup.Reason, "queue timeout: no budget for 100 tokens within 2s")
	h.recordHistory(t, "lifecycle-queue-timeout", workflows.WorkflowID(late))
	require.Len(t, h.budget(t).Queue, queued-1)

	// The queue drains as refunds make room; every sample of the ledger
	// must show at most ten running and nothing admitted past a waiting
	// request of higher priority.
	mine := map[string]bool{}
	for _, id := range ids {
		mine[id] = id != last.WorkerID
	}
	var mu sync.Mutex
	var violations []string
	samples := 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			v, err := h.fleet.Budget().Show(ctx)
			if err != nil {
				continue
			}
			mu.Lock()
			samples++
			if problem := queueViolation(v, mine, priorityOf, slots); problem != "" {
				violations = append(violations, problem)
			}
			mu.Unlock()
		}
	}()
	began := time.Now()
	h.starterOK(t, "shutdown", "--all", "--master", "queue-blockers", "--grace", "1s")
	for _, id := range ids {
		if !mine[id] {
			continue
		}
		spec := h.waitStatus(t, id, workflows.StatusCompleted, 5*time.Minute)
		require.Equal(t, int64(each), spec.Cleanup.Refunded, id)
	}
	close(stop)
	<-sampled
	t.Logf("%d queued workers ran in %s; %d samples of the ledger", queued-1, time.Since(began).Round(time.Second), samples)
	require.Empty(t, violations[:min(5, len(violations))], "%d of %d samples of the ledger broke the queue's order", len(violations), samples)
	require.Greater(t, samples, 10)

	h.recordHistory(t, "lifecycle-queued", workflows.WorkflowID(full.Queue[0].WorkerID))
	h.recordHistory(t, "ledger-queue", workflows.LedgerWorkflowID)
	after := h.budget(t)
	require.Empty(t, after.Queue)
	require.Equal(t, before.Used, after.Used, "every allocation came back, once")
}

// queueViolation says what is wrong with one view of the ledger: more of
// the test's workers admitted than there are slots, or one admitted while
// a test worker of higher priority still waits.
func queueViolation(v workflows.BudgetView, mine map[string]bool, priorityOf map[string]int, slots int) string {
	admitted, lowestAdmitted := 0, -1
	for _, a := range v.Allocations {
		if mine[a.WorkerID] {
			admitted++
			if lowestAdmitted < 0 || priorityOf[a.WorkerID] < lowestAdmitted {
				lowestAdmitted = priorityOf[a.WorkerID]
			}
		}
	}
	if admitted > slots {
		return fmt.Sprintf("%d admitted at once", admitted)
	}
	var higher []string
	for _, q := range v.Queue {
		if mine[q.WorkerID] && lowestAdmitted >= 0 && priorityOf[q.WorkerID] > lowestAdmitted {
			higher = append(higher, q.WorkerID+" ("+q.Priority+")")
		}
	}
	if len(higher) > 0 {
		return fmt.Sprintf("a worker of priority %s admitted while %d of higher priority waited (%s, …)",
			[]string{"low", "medium", "high", "critical"}[lowestAdmitted], len(higher), strings.Join(higher[:min(3, len(higher))], ", "))
	}
	return ""
}

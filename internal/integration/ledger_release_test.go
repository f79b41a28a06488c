package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestLedgerTakesAReleaseBeforeTheSameWorkersReservation: a lifecycle's
// release signal and a new reservation of the same worker id reach the
// ledger in one workflow task, as they do when a worker is spawned again as
// soon as its last lifecycle ended (seen in CI: TestRecalcFixesADriftedLedger
// was refused "already holds 300 tokens for another lifecycle"). Here they
// are made to, on the real server: a ledger of its own, on a task queue of
// its own, whose one worker is stopped while the releases and then the
// reservations (the reserve update and the lifecycles' ask update) are
// sent, and started again. Both reservations are granted, against the
// ledger as it is once the releases are applied (release-before-reserve).
func TestLedgerTakesAReleaseBeforeTheSameWorkersReservation(t *testing.T) {
	ctx := context.Background()
	queue := fmt.Sprintf("ledger-release-%d", time.Now().UnixNano())
	ledgerID := "budget-ledger-" + queue
	startWorker := func() worker.Worker {
		w := worker.New(h.client, queue, worker.Options{})
		workflows.Register(w)
		require.NoError(t, w.Start())
		return w
	}
	w := startWorker()
	_, err := h.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ledgerID, TaskQueue: queue},
		workflows.WorkflowTypeLedger, workflows.NewLedgerState(1000))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.client.TerminateWorkflow(context.Background(), ledgerID, "", "test over") })

	lease := func(id, run string) string { return workflows.Lease(workflows.WorkflowID(id), run) }
	a, b := newID("again"), newID("asked")
	update := func(ctx context.Context, name string, req workflows.ReserveRequest) (client.WorkflowUpdateHandle, error) {
		return h.client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: ledgerID, UpdateName: name, Args: []any{req}, WaitForStage: client.WorkflowUpdateStageCompleted})
	}
	_, err = update(ctx, workflows.UpdateReserve, workflows.ReserveRequest{WorkerID: a, Lease: lease(a, "run-1"), Amount: 600})
	require.NoError(t, err)
	_, err = update(ctx, workflows.UpdateAsk, workflows.ReserveRequest{WorkerID: b, Lease: lease(b, "run-1"), Amount: 300, Priority: "medium"})
	require.NoError(t, err)

	// No worker: what is sent now waits for the next one, in one task.
	w.Stop()
	for _, id := range []string{a, b} {
		require.NoError(t, h.client.SignalWorkflow(ctx, ledgerID, "", workflows.SignalRelease,
			workflows.ReleaseRequest{WorkerID: id, Lease: lease(id, "run-1")}))
	}
	type outcome struct {
		view   workflows.BudgetView
		answer workflows.BudgetAnswer
		err    error
	}
	reserved, asked := make(chan outcome, 1), make(chan outcome, 1)
	uctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() {
		var o outcome
		hd, err := update(uctx, workflows.UpdateReserve, workflows.ReserveRequest{WorkerID: a, Lease: lease(a, "run-2"), Amount: 700})
		if o.err = err; err == nil {
			o.err = hd.Get(uctx, &o.view)
		}
		reserved <- o
	}()
	go func() {
		var o outcome
		hd, err := update(uctx, workflows.UpdateAsk, workflows.ReserveRequest{WorkerID: b, Lease: lease(b, "run-2"), Amount: 300, Priority: "medium"})
		if o.err = err; err == nil {
			o.err = hd.Get(uctx, &o.answer)
		}
		asked <- o
	}()
	// The updates are admitted by the server before a worker is back.
	time.Sleep(2 * time.Second)
	w = startWorker()
	defer w.Stop()

	r, q := <-reserved, <-asked
	require.NoError(t, r.err, "the reservation of %s after its release", a)
	require.NoError(t, q.err)
	require.Equal(t, workflows.BudgetAnswer{WorkerID: b, Lease: lease(b, "run-2"), Granted: true}, q.answer)

	resp, err := h.client.QueryWorkflow(ctx, ledgerID, "", workflows.QueryBudget)
	require.NoError(t, err)
	var view workflows.BudgetView
	require.NoError(t, resp.Get(&view))
	held := map[string]string{}
	for _, al := range view.Allocations {
		held[al.WorkerID] = al.Lease
	}
	require.Equal(t, map[string]string{a: lease(a, "run-2"), b: lease(b, "run-2")}, held)
	require.Equal(t, int64(1000), view.Used)

	rh := fetchHistory(t, ledgerID, "")
	require.Equal(t, 2, rh.signals(workflows.SignalRelease))
	require.Equal(t, map[string]int{workflows.VersionReleaseBeforeReserve: 1, workflows.VersionFleetEvents: 1}, rh.versions(t),
		"the releases were waiting when the reservations came (one marker for the run); 900 of 1000 raised the budget alert")
	recordRun(t, "ledger-release-before-reserve", rh)
}

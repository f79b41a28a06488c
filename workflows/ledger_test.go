package workflows

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// ledgerCall is one update sent to the ledger and what came back.
type ledgerCall struct {
	name     string
	arg      any
	rejected error
	failed   error
	result   any
}

type ledgerHarness struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	calls []*ledgerCall
}

func newLedgerHarness(t *testing.T) *ledgerHarness {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	return &ledgerHarness{t: t, env: env}
}

// at schedules an update; its outcome lands in the returned call.
func (h *ledgerHarness) at(d time.Duration, name string, arg any) *ledgerCall {
	c := &ledgerCall{name: name, arg: arg}
	h.calls = append(h.calls, c)
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { c.rejected = err },
			OnComplete: func(v any, err error) {
				c.result, c.failed = v, err
			},
		}, arg)
	}, d)
	return c
}

func (h *ledgerHarness) view() BudgetView {
	v, err := h.env.QueryWorkflow(QueryBudget)
	require.NoError(h.t, err)
	var bv BudgetView
	require.NoError(h.t, v.Get(&bv))
	return bv
}

func reserve(id, lease string, amount int64) ReserveRequest {
	return ReserveRequest{WorkerID: id, Lease: lease, Amount: amount}
}

func TestLedgerReserveReleaseIdempotent(t *testing.T) {
	h := newLedgerHarness(t)
	first := h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	retry := h.at(2*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	other := h.at(3*time.Second, UpdateReserve, reserve("worker-fix-b", "L2", 300))
	tooBig := h.at(4*time.Second, UpdateReserve, reserve("worker-fix-c", "L3", 200))
	stolen := h.at(5*time.Second, UpdateReserve, reserve("worker-fix-a", "L9", 1))
	var mid BudgetView
	h.env.RegisterDelayedCallback(func() { mid = h.view() }, 6*time.Second)
	rel1 := h.at(7*time.Second, UpdateRelease, ReleaseRequest{WorkerID: "worker-fix-a", Lease: "L1"})
	rel2 := h.at(8*time.Second, UpdateRelease, ReleaseRequest{WorkerID: "worker-fix-a", Lease: "L1"})
	late := h.at(9*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 10*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 11*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))

	for _, c := range []*ledgerCall{first, retry, other, rel1, rel2} {
		require.NoError(t, c.rejected, c.name)
		require.NoError(t, c.failed, c.name)
	}
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, tooBig.rejected, &appErr)
	require.Equal(t, "insufficient budget: available 100 < required 200", appErr.Message())
	require.True(t, IsBudgetRefused(tooBig.rejected))
	require.ErrorContains(t, stolen.rejected, "already holds 600 tokens for another lifecycle")
	require.ErrorContains(t, late.rejected, "was released already")

	require.Equal(t, int64(1000), mid.Total)
	require.Equal(t, int64(900), mid.Used, "the retry must not reserve twice")
	require.Equal(t, int64(100), mid.Available)
	require.Len(t, mid.Allocations, 2)

	require.Equal(t, int64(600), rel1.result)
	require.Equal(t, int64(0), rel2.result, "a second release must refund nothing")
	require.NotNil(t, mid.Alert, "900 of 1000 held: the root's alert is raised")
	require.Equal(t, map[string]AlertView{PoolRoot: *mid.Alert}, end.LastAlerts, "re-armed at 300, and still the last one")
	end.LastAlerts = nil
	require.Equal(t, BudgetView{Total: 1000, Available: 700, Used: 300,
		Allocations: []WorkerAllocation{{WorkerID: "worker-fix-b", Amount: 300, Lease: "L2", ReservedAt: end.Allocations[0].ReservedAt}}}, end)
}

func TestLedgerSetTotal(t *testing.T) {
	h := newLedgerHarness(t)
	h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	below := h.at(2*time.Second, UpdateSetTotal, SetTotalRequest{Total: 500})
	negative := h.at(3*time.Second, UpdateSetTotal, SetTotalRequest{Total: -1})
	ok := h.at(4*time.Second, UpdateSetTotal, SetTotalRequest{Total: 5000})
	bad := h.at(5*time.Second, UpdateReserve, reserve("worker-fix-b", "L2", 0))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 6*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 7*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))
	require.ErrorContains(t, below.rejected, "total 500 is below the 600 tokens allocated to live workers")
	require.ErrorContains(t, negative.rejected, "total -1 is not in")
	require.NoError(t, ok.rejected)
	require.ErrorContains(t, bad.rejected, "budget 0 is not in 1..200000")
	require.Equal(t, int64(5000), end.Total)
	require.Equal(t, int64(4400), end.Available)
}

func TestLedgerStateSurvivesContinueAsNew(t *testing.T) {
	h := newLedgerHarness(t)
	st := NewLedgerState(100000)
	st.UpdatesThisRun = ledgerUpdatesPerRun - 3
	h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	h.at(2*time.Second, UpdateReserve, reserve("worker-fix-b", "L2", 400))
	h.at(3*time.Second, UpdateRelease, ReleaseRequest{WorkerID: "worker-fix-b", Lease: "L2"})

	h.env.ExecuteWorkflow(BudgetLedger, st)
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(h.env.GetWorkflowError(), &can), "got %v", h.env.GetWorkflowError())
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, int64(100000), next.Total)
	require.Len(t, next.Allocations, 1)
	require.Equal(t, int64(600), next.Allocations["worker-fix-a"].Amount)
	require.Equal(t, []string{"L2"}, next.Released)
	require.Zero(t, next.UpdatesThisRun)
}

// TestLedgerSurvivesACancel: a cancel of the ledger continues it as new with
// its allocations, instead of ending it and losing them.
func TestLedgerSurvivesACancel(t *testing.T) {
	h := newLedgerHarness(t)
	h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 2*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100000))
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(h.env.GetWorkflowError(), &can), "got %v", h.env.GetWorkflowError())
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, int64(100000), next.Total)
	require.Equal(t, int64(600), next.Allocations["worker-fix-a"].Amount)
}

// TestLedgerRefusesAnUnknownLease: a release of a lease that is neither
// held, nor released, nor the worker's own lifecycle's is refused before it
// is written. A release of the worker's own lifecycle lease that was never
// held (a reservation still on its way) is written, and the reservation is
// refused when it lands.
func TestLedgerRefusesAnUnknownLease(t *testing.T) {
	h := newLedgerHarness(t)
	own := WorkflowID("worker-fix-c") + "/run-1"
	h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	unknown := h.at(2*time.Second, UpdateRelease, ReleaseRequest{WorkerID: "worker-fix-b", Lease: "L7"})
	otherLease := h.at(3*time.Second, UpdateRelease, ReleaseRequest{WorkerID: "worker-fix-a", Lease: "L8"})
	later := h.at(4*time.Second, UpdateReserve, reserve("worker-fix-b", "L7", 100))
	early := h.at(5*time.Second, UpdateRelease, ReleaseRequest{WorkerID: "worker-fix-c", Lease: own})
	landing := h.at(6*time.Second, UpdateReserve, reserve("worker-fix-c", own, 100))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 7*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 8*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))
	for _, c := range []*ledgerCall{unknown, otherLease} {
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, c.rejected, &appErr)
		require.Equal(t, ErrTypeUnknownLease, appErr.Type())
	}
	require.ErrorContains(t, unknown.rejected, `unknown lease "L7": worker worker-fix-b holds nothing under it`)
	require.NoError(t, later.rejected, "the refused release was not recorded")
	require.NoError(t, early.rejected)
	require.Equal(t, int64(0), early.result)
	require.ErrorContains(t, landing.rejected, "was released already", "a reservation landing after its lifecycle's release holds nothing")
	require.Equal(t, int64(300), end.Available, "worker-fix-a keeps its 600; worker-fix-b got 100 under L7")

	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, h.env.GetWorkflowError(), &can)
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, []string{own}, next.Released)
}

// TestLedgerReleaseSignal: a release sent as a signal frees the lease's
// allocation once; a repeat or an unknown lease changes nothing; and the
// signals count toward the run's bound like the updates.
func TestLedgerReleaseSignal(t *testing.T) {
	h := newLedgerHarness(t)
	st := NewLedgerState(1000)
	st.UpdatesThisRun = ledgerUpdatesPerRun - 2
	h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(SignalRelease, ReleaseRequest{WorkerID: "worker-fix-a", Lease: "L1"})
		h.env.SignalWorkflow(SignalRelease, ReleaseRequest{WorkerID: "worker-fix-a", Lease: "L1"})
		h.env.SignalWorkflow(SignalRelease, ReleaseRequest{WorkerID: "worker-fix-c", Lease: "L5"})
		h.env.SignalWorkflow(SignalRelease, ReleaseRequest{})
	}, 2*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, st)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, h.env.GetWorkflowError(), &can, "the reservation and the release reached the run's bound")
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Empty(t, next.Allocations)
	require.Equal(t, []string{"L1"}, next.Released, "the unknown lease is not recorded")
}

// TestLedgerAppliesAReleaseBeforeAReservationOfTheSameWorker: a lifecycle's
// release signal and the next lifecycle's reservation of the same worker id
// can reach the ledger in one workflow task (a worker spawned again as soon
// as its last lifecycle completed). The release is applied first: the
// reservation is granted, not refused as "already holds ... for another
// lifecycle" (VersionReleaseBeforeReserve). Seen in CI, where a reserve
// right after a completed lifecycle was refused.
func TestLedgerAppliesAReleaseBeforeAReservationOfTheSameWorker(t *testing.T) {
	again, asked, end := releaseThenReserveInOneTask(t)
	require.NoError(t, asked.rejected)
	require.NoError(t, asked.failed)
	require.Equal(t, BudgetAnswer{WorkerID: "worker-fix-b", Lease: WorkflowID("worker-fix-b") + "/r2", Granted: true}, asked.result)
	require.NoError(t, again.rejected)
	require.NoError(t, again.failed)
	require.Equal(t, int64(1000), end.Used, "the new leases hold 700 and 300")
	leases := map[string]string{}
	for _, a := range end.Allocations {
		leases[a.WorkerID] = a.Lease
	}
	require.Equal(t, map[string]string{"worker-fix-a": "L2", "worker-fix-b": WorkflowID("worker-fix-b") + "/r2"}, leases)
}

// TestLedgerHeldBackRefusesAsBefore: a worker program upgraded with
// --compat r7 takes the ledger as r7 did, which r7 programs replay.
func TestLedgerHeldBackRefusesAsBefore(t *testing.T) {
	require.NoError(t, SetCompat("r7"))
	t.Cleanup(func() { require.NoError(t, SetCompat("")) })
	again, _, end := releaseThenReserveInOneTask(t)
	require.ErrorContains(t, again.rejected, "already holds 600 tokens for another lifecycle")
	require.Equal(t, int64(300), end.Used, "the releases applied, the refused reservation not")
}

// releaseThenReserveInOneTask reserves for two workers, then sends their
// releases and new reservations (the reserve update for one, the ask for
// the other) so that the ledger takes them in one workflow task.
func releaseThenReserveInOneTask(t *testing.T) (again, asked *ledgerCall, end BudgetView) {
	h := newLedgerHarness(t)
	h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	h.at(1*time.Second, UpdateAsk, ask("worker-fix-b", 300, "medium", false))
	again = &ledgerCall{name: UpdateReserve}
	asked = &ledgerCall{name: UpdateAsk}
	h.env.RegisterDelayedCallback(func() {
		// Skipping the workflow task: the releases and the updates are
		// taken in one.
		h.env.SignalWorkflowSkippingWorkflowTask(SignalRelease, ReleaseRequest{WorkerID: "worker-fix-a", Lease: "L1"})
		h.env.SignalWorkflowSkippingWorkflowTask(SignalRelease, release("worker-fix-b"))
		for _, c := range []struct {
			call *ledgerCall
			arg  any
		}{{again, reserve("worker-fix-a", "L2", 700)}, {asked, ReserveRequest{WorkerID: "worker-fix-b", Lease: WorkflowID("worker-fix-b") + "/r2", Amount: 300, Priority: "medium"}}} {
			h.env.UpdateWorkflow(c.call.name, "", &testsuite.TestUpdateCallback{
				OnAccept:   func() {},
				OnReject:   func(err error) { c.call.rejected = err },
				OnComplete: func(v any, err error) { c.call.result, c.call.failed = v, err },
			}, c.arg)
		}
	}, 2*time.Second)
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 3*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 4*time.Second)
	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))
	return again, asked, end
}

// TestLedgerCancelledWhileAReservationWaitsRefusesIt: a reserve update let
// through by its validator for a release still waiting (release-before-
// reserve) whose wait is cut short by a cancel, the release not applied,
// is refused: the earlier lease still holds the worker's allocation. Before
// the fix the handler checked again with the validator's allowance and
// answered it granted, holding nothing for it.
func TestLedgerCancelledWhileAReservationWaitsRefusesIt(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) (string, error) {
		st := NewLedgerState(1000)
		st.Allocations["worker-fix-a"] = Allocation{Lease: "L1", Amount: 600}
		l := &ledger{st: st, ctx: ctx, releases: workflow.GetSignalChannel(ctx, SignalRelease)}
		// The release has arrived and is not applied.
		_ = workflow.Await(ctx, func() bool { return l.releases.Len() > 0 })
		req := reserve("worker-fix-a", "L2", 300)
		if err := l.validateReserve(req); err != nil {
			return "", fmt.Errorf("the validator: %w", err)
		}
		cancelled, cancel := workflow.WithCancel(ctx)
		cancel()
		_, err := l.reserve(cancelled, req)
		if err == nil {
			return l.st.Allocations["worker-fix-a"].Lease, errors.New("granted")
		}
		return l.st.Allocations["worker-fix-a"].Lease, err
	}, workflow.RegisterOptions{Name: "reserveCancelled"})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalRelease, ReleaseRequest{WorkerID: "worker-fix-a", Lease: "L1"})
	}, time.Second)
	env.ExecuteWorkflow("reserveCancelled")
	require.ErrorContains(t, env.GetWorkflowError(), "worker worker-fix-a already holds 600 tokens for another lifecycle")
}

// TestLedgerNamesTheConflictBeforeThePriority: a request that conflicts with
// its worker's allocation and gives a bad priority is refused for the
// conflict, as the ledger always answered (the priority is checked last).
func TestLedgerNamesTheConflictBeforeThePriority(t *testing.T) {
	h := newLedgerHarness(t)
	h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 600))
	bad := reserve("worker-fix-a", "L2", 100)
	bad.Priority = "urgent"
	both := h.at(2*time.Second, UpdateReserve, bad)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 3*time.Second)
	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))
	require.ErrorContains(t, both.rejected, "worker worker-fix-a already holds 600 tokens for another lifecycle")
}

package workflows

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// The lifecycle's side of the budget queue: it asks by signal, waits in
// pending for the ledger's answer, and withdraws when it stops waiting.

func waitingRequest(timeout time.Duration) SpawnRequest {
	r := testRequest()
	r.WaitForBudget, r.QueueTimeout = true, timeout
	return r
}

// queueAnswer makes the test ledger queue the request at position pos.
func (s *lifecycleSuite) queueAnswer(pos int) {
	s.ledger = func(in activities.ReserveInput) *BudgetAnswer {
		s.True(in.Wait, "a waiting spawn asks to wait")
		s.Equal("high", in.Priority)
		s.Equal(orDefault(s.pool, "development-master"), in.Pool, "the pool it names, or its master's")
		return &BudgetAnswer{WorkerID: in.WorkerID, Lease: in.Lease, Queued: true, Position: pos}
	}
}

// grantAt sends the ledger's grant after d.
func (s *lifecycleSuite) grantAt(d time.Duration) {
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(SignalBudgetAnswer, BudgetAnswer{WorkerID: testRequest().WorkerID, Lease: "default-test-workflow-id/", Granted: true})
	}, d)
}

// expectWithdraw expects the withdrawal of the request: a release signal.
func (s *lifecycleSuite) expectWithdraw() {
	s.env.OnSignalExternalWorkflow(mock.Anything, LedgerWorkflowID, "", SignalRelease,
		ReleaseRequest{WorkerID: testRequest().WorkerID, Lease: "default-test-workflow-id/"}).Return(nil).Once()
}

func (s *lifecycleSuite) TestQueuedUntilARefundAdmitsIt() {
	s.queueAnswer(3)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{}, nil).After(time.Minute)
	s.expectRelease(1)
	var queued WorkerSpec
	s.env.RegisterDelayedCallback(func() { queued = s.status() }, 10*time.Minute)
	s.grantAt(20 * time.Minute)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(30*time.Minute)))
	spec := s.result()
	s.Equal(StatusPending, queued.Status)
	s.Require().NotNil(queued.Queue)
	s.Equal(3, queued.Queue.Position)
	s.Require().NotNil(queued.Queue.Deadline)
	s.Equal(30*time.Minute, queued.Queue.Deadline.Sub(queued.Queue.Since))
	s.Equal(StatusCompleted, spec.Status)
	s.Nil(spec.Queue)
	s.Equal(int64(10000), spec.Cleanup.Refunded)
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
	s.Equal(20*time.Minute, spec.StartedAt.Sub(spec.CreatedAt).Round(time.Minute), "admitted by the grant, not by a poll")
}

// A request that names a pool reserves and waits there; its spec says so.
func (s *lifecycleSuite) TestReservesInTheNamedPool() {
	s.pool = "team-a"
	s.queueAnswer(2)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.expectWithdraw()
	var queued WorkerSpec
	s.env.RegisterDelayedCallback(func() { queued = s.status() }, time.Minute)
	s.updateAt(2*time.Minute, UpdateShutdown, ShutdownRequest{Reason: "not needed"}, nil)

	r := waitingRequest(0)
	r.Pool = "team-a"
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(r))
	spec := s.result()
	s.Require().NotNil(queued.Queue)
	s.Equal("team-a", queued.Queue.Pool)
	s.Equal(2, queued.Queue.Position)
	s.Equal("team-a", spec.TokenBudget.Pool)
	s.Equal(StatusCompleted, spec.Status)
}

func (s *lifecycleSuite) TestQueueTimeoutEndsFailedHoldingNothing() {
	s.queueAnswer(1)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(30*time.Minute)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Equal("queue timeout: no budget for 10000 tokens within 30m0s", spec.Cleanup.Reason)
	s.Zero(spec.TokenBudget.Allocated)
	s.Zero(spec.Cleanup.Refunded)
	s.Nil(spec.Queue)
	s.Equal(30*time.Minute, spec.CompletedAt.Sub(spec.CreatedAt).Round(time.Second))
}

func (s *lifecycleSuite) TestShutdownWhileQueuedStartsNothing() {
	s.queueAnswer(2)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.expectWithdraw()
	s.updateAt(5*time.Minute, UpdateShutdown, ShutdownRequest{Reason: "not needed"}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(0)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusCompleted}, statuses(spec))
	s.Equal("not needed", spec.Cleanup.Reason)
	s.Zero(spec.Cleanup.Refunded)
	s.Zero(spec.PID)
}

func (s *lifecycleSuite) TestCancelWhileQueuedWithdraws() {
	s.queueAnswer(1)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.expectWithdraw()
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 10*time.Minute)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(0)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Equal("lifecycle cancelled while queued for budget", spec.Cleanup.Reason)
	s.Zero(spec.TokenBudget.Allocated)
}

// A spawn that may not wait is refused with the ledger's words, and holds
// nothing; it withdraws, so that a retried request still on its way is
// refused too.
func (s *lifecycleSuite) TestRefusedByTheLedgersAnswer() {
	s.ledger = func(in activities.ReserveInput) *BudgetAnswer {
		s.False(in.Wait)
		return &BudgetAnswer{WorkerID: in.WorkerID, Lease: in.Lease, Reason: "insufficient budget: available 5 < required 10000"}
	}
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Equal("insufficient budget: available 5 < required 10000", spec.Cleanup.Reason)
	s.Zero(spec.TokenBudget.Allocated)
}

// An answer meant for an earlier lifecycle of the same worker id (another
// lease, which ended without withdrawing) is not this one's grant; what it
// grants is given back.
func (s *lifecycleSuite) TestAGrantForAnotherLeaseIsGivenBack() {
	old := "worker-lifecycle/worker-implementation-001/old-run"
	s.queueAnswer(1)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnSignalExternalWorkflow(mock.Anything, LedgerWorkflowID, "", SignalRelease,
		ReleaseRequest{WorkerID: testRequest().WorkerID, Lease: old}).Return(nil).Once()
	s.expectWithdraw()
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(SignalBudgetAnswer, BudgetAnswer{WorkerID: testRequest().WorkerID, Lease: old, Granted: true})
	}, time.Minute)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(10*time.Minute)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Contains(spec.Cleanup.Reason, "queue timeout")
}

// A request whose activity failed for an unknown reason may have reached
// the ledger: it is withdrawn with a signal, and the lifecycle fails
// holding nothing.
func (s *lifecycleSuite) TestUncertainRequestIsWithdrawn() {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, errors.New("context deadline exceeded"))
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Contains(spec.Cleanup.Reason, "context deadline exceeded")
}

// A withdrawal the ledger cannot be signalled for goes through the
// release update, which says what it gave back.
func (s *lifecycleSuite) TestWithdrawalFallsBackToTheUpdate() {
	s.queueAnswer(1)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnSignalExternalWorkflow(mock.Anything, LedgerWorkflowID, "", SignalRelease, mock.Anything).Return(errors.New("not found")).Once()
	s.expectReleaseUpdate(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(time.Minute)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Equal(int64(10000), spec.Cleanup.Refunded, "what the update says it released")
}

// The ledger's side of the queue.

// answers records the ledger's answers. The test environment calls a
// SignalExternalWorkflow mock on a goroutine of its own, so answers sent in
// one workflow task arrive in any order and concurrently: only answers sent
// in different tasks are in order here.
type answers struct {
	mu  sync.Mutex
	got []BudgetAnswer
}

func (a *answers) record(arg any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, arg.(BudgetAnswer))
}

func (a *answers) expect(h *ledgerHarness) {
	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", SignalBudgetAnswer, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			a.record(arg)
			return nil
		})
}

func (a *answers) all() []BudgetAnswer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]BudgetAnswer(nil), a.got...)
}

func (a *answers) granted() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for _, x := range a.got {
		if x.Granted {
			ids = append(ids, x.WorkerID)
		}
	}
	return ids
}

func (a *answers) of(id string) []BudgetAnswer {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []BudgetAnswer
	for _, x := range a.got {
		if x.WorkerID == id {
			out = append(out, x)
		}
	}
	return out
}

func ask(id string, amount int64, priority string, wait bool) ReserveRequest {
	return ReserveRequest{WorkerID: id, Lease: WorkflowID(id) + "/r1", Amount: amount, Priority: priority, Wait: wait}
}

func (h *ledgerHarness) signalAt(d time.Duration, name string, arg any) {
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(name, arg) }, d)
}

func release(id string) ReleaseRequest {
	return ReleaseRequest{WorkerID: id, Lease: WorkflowID(id) + "/r1"}
}

// TestLedgerQueueOrder: requests that do not fit wait by priority, then by
// arrival; each refund admits the head at once, and a head that does not
// fit holds back the smaller requests behind it.
func TestLedgerQueueOrder(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-a", 100, "medium", true))
	h.signalAt(2*time.Second, SignalReserve, ask("worker-fix-low", 60, "low", true))
	h.signalAt(3*time.Second, SignalReserve, ask("worker-fix-high1", 60, "high", true))
	h.signalAt(4*time.Second, SignalReserve, ask("worker-fix-high2", 60, "high", true))
	h.signalAt(5*time.Second, SignalReserve, ask("worker-fix-crit", 90, "critical", true))
	h.signalAt(6*time.Second, SignalReserve, ask("worker-fix-small", 10, "low", true))
	var queued BudgetView
	h.env.RegisterDelayedCallback(func() { queued = h.view() }, 7*time.Second)
	h.signalAt(8*time.Second, SignalRelease, release("worker-fix-a"))
	var afterFirst BudgetView
	h.env.RegisterDelayedCallback(func() { afterFirst = h.view() }, 9*time.Second)
	h.signalAt(10*time.Second, SignalRelease, release("worker-fix-crit"))
	h.signalAt(11*time.Second, SignalRelease, release("worker-fix-high1"))
	h.signalAt(12*time.Second, SignalRelease, release("worker-fix-high2"))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 13*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 14*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	var order []string
	for _, q := range queued.Queue {
		order = append(order, q.WorkerID)
	}
	require.Equal(t, []string{"worker-fix-crit", "worker-fix-high1", "worker-fix-high2", "worker-fix-low", "worker-fix-small"}, order)
	require.Equal(t, int64(280), queued.Queued)
	require.Equal(t, []int{1, 2, 3, 4, 5}, positions(queued))
	require.Equal(t, []BudgetAnswer{{WorkerID: "worker-fix-crit", Lease: WorkflowID("worker-fix-crit") + "/r1", Queued: true, Position: 1, QueueTimeout: DefaultQueueTimeout}}, a.of("worker-fix-crit")[:1],
		"the critical request went to the head on arrival")
	require.Len(t, afterFirst.Queue, 4, "the refund of 100 admitted the critical 90 alone: the next (60) does not fit in 10")
	require.Equal(t, int64(10), afterFirst.Available, "the small request behind does not pass the head")
	granted := a.granted()
	require.Len(t, granted, 6)
	require.Equal(t, []string{"worker-fix-a", "worker-fix-crit", "worker-fix-high1", "worker-fix-high2"}, granted[:4])
	require.ElementsMatch(t, []string{"worker-fix-low", "worker-fix-small"}, granted[4:],
		"the last refund admitted both in one task, so their answers may arrive in either order")
	require.Empty(t, end.Queue)
	require.Equal(t, int64(30), end.Available, "low 60 and small 10 hold the rest")
}

func positions(v BudgetView) []int {
	var p []int
	for _, q := range v.Queue {
		p = append(p, q.Position)
	}
	return p
}

// TestLedgerRefusesWhatMayNotWait: a request that may not wait is refused
// when it does not fit, and also when it fits but requests of its priority
// or higher are queued (it must not overtake them); a higher one may pass.
// The reserve update is not held back by the queue.
func TestLedgerRefusesWhatMayNotWait(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-a", 80, "medium", false))
	h.signalAt(2*time.Second, SignalReserve, ask("worker-fix-big", 50, "medium", false))
	h.signalAt(3*time.Second, SignalReserve, ask("worker-fix-wait", 50, "high", true))
	h.signalAt(4*time.Second, SignalReserve, ask("worker-fix-same", 10, "high", false))
	h.signalAt(5*time.Second, SignalReserve, ask("worker-fix-crit", 10, "critical", false))
	h.signalAt(6*time.Second, SignalReserve, ask("worker-fix-a", 80, "medium", false))
	h.signalAt(7*time.Second, SignalReserve, ask("worker-fix-bad", 10, "urgent", true))
	upd := h.at(8*time.Second, UpdateReserve, reserve("worker-fix-upd", "L1", 5))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 9*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Equal(t, "insufficient budget: available 20 < required 50", a.of("worker-fix-big")[0].Reason)
	require.True(t, a.of("worker-fix-wait")[0].Queued)
	require.Equal(t, "insufficient budget: available 20, but 1 queued requests of priority high or higher come first", a.of("worker-fix-same")[0].Reason)
	require.True(t, a.of("worker-fix-crit")[0].Granted, "a critical request passes a queued high one")
	require.Len(t, a.of("worker-fix-a"), 2)
	require.True(t, a.of("worker-fix-a")[1].Granted, "a repeated request is answered again")
	require.Contains(t, a.of("worker-fix-bad")[0].Reason, `priority "urgent" must be one of`)
	require.NoError(t, upd.rejected, "the update answers for the amount alone: budget recalc restores a running worker's allocation with it")
}

// TestLedgerWithdrawalAndLostLifecycles: a release withdraws a queued
// request, and a withdrawn head lets the next in; a grant that cannot be
// delivered (the lifecycle is gone) is released and admits the next; a
// withdrawn request that arrives late is refused.
func TestLedgerWithdrawalAndLostLifecycles(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", SignalBudgetAnswer, mock.Anything).Return(
		func(_, wfID, _, _ string, arg any) error {
			a.record(arg)
			if wfID == WorkflowID("worker-fix-gone") {
				return errors.New("workflow not found")
			}
			return nil
		})
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-a", 70, "medium", true))
	h.signalAt(2*time.Second, SignalReserve, ask("worker-fix-head", 80, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, ask("worker-fix-gone", 30, "medium", true))
	h.signalAt(4*time.Second, SignalReserve, ask("worker-fix-next", 30, "medium", true))
	h.signalAt(5*time.Second, SignalRelease, release("worker-fix-head"))
	var mid BudgetView
	h.env.RegisterDelayedCallback(func() { mid = h.view() }, 6*time.Second)
	h.signalAt(7*time.Second, SignalReserve, ask("worker-fix-head", 80, "medium", true))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 8*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 9*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Empty(t, mid.Queue, "the head withdrawn, gone's grant undeliverable and released, next admitted")
	require.Equal(t, int64(100), mid.Used, "a 70 and next's 30")
	heads := a.of("worker-fix-head")
	require.Len(t, heads, 2)
	require.Contains(t, heads[1].Reason, "was released already")
	require.Equal(t, mid, end)
}

// TestLedgerQueueSurvivesContinueAsNew: the queue and its arrival count are
// handed to the next run, and requests signalled just before it are not
// lost.
func TestLedgerQueueSurvivesContinueAsNew(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	st := NewLedgerState(100)
	st.UpdatesThisRun = ledgerUpdatesPerRun - 3
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-a", 100, "medium", true))
	h.signalAt(2*time.Second, SignalReserve, ask("worker-fix-b", 50, "low", true))
	h.signalAt(3*time.Second, SignalReserve, ask("worker-fix-c", 50, "high", true))

	h.env.ExecuteWorkflow(BudgetLedger, st)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, h.env.GetWorkflowError(), &can)
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Len(t, next.Queue, 2)
	require.Equal(t, "worker-fix-c", next.Queue[0].WorkerID)
	require.Equal(t, "worker-fix-b", next.Queue[1].WorkerID)
	require.Equal(t, int64(2), next.NextSeq, "two arrivals queued")
	require.Len(t, a.all(), 3, "every request was answered before the run ended")
}

// TestLedgerClosesThroughACancel: a run that closes for continue-as-new
// waits for its answers on their way; a cancel then does not end the
// ledger, and a signal arriving meanwhile is handed to the next run
// unapplied rather than answered, so that a stream of them cannot hold the
// run open.
func TestLedgerClosesThroughACancel(t *testing.T) {
	h := newLedgerHarness(t)
	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", SignalBudgetAnswer, mock.Anything).Return(nil).After(10 * time.Second)
	st := NewLedgerState(100)
	st.UpdatesThisRun = ledgerUpdatesPerRun - 1
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-a", 60, "medium", false))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 3*time.Second)
	h.signalAt(4*time.Second, SignalReserve, ask("worker-fix-b", 30, "high", true))
	h.signalAt(5*time.Second, SignalRelease, release("worker-fix-a"))

	h.env.ExecuteWorkflow(BudgetLedger, st)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, h.env.GetWorkflowError(), &can, "the ledger carries on")
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, int64(60), next.Allocations["worker-fix-a"].Amount, "granted before the close")
	require.Equal(t, []ReserveRequest{ask("worker-fix-b", 30, "high", true)}, next.Carried)
	require.Equal(t, []ReleaseRequest{release("worker-fix-a")}, next.CarriedReleases)
}

// TestLedgerAppliesWhatItWasHanded: the next run applies the handed-over
// releases, then the reservations, in order, before anything else.
func TestLedgerAppliesWhatItWasHanded(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	st := NewLedgerState(100)
	st.Allocations["worker-fix-a"] = Allocation{Lease: WorkflowID("worker-fix-a") + "/r1", Amount: 60}
	st.CarriedReleases = []ReleaseRequest{release("worker-fix-a")}
	st.Carried = []ReserveRequest{ask("worker-fix-b", 80, "high", true), ask("worker-fix-c", 30, "low", true)}
	var view BudgetView
	h.env.RegisterDelayedCallback(func() { view = h.view() }, time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 2*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, st)
	require.Equal(t, []string{"worker-fix-b"}, a.granted(), "the release made room for b; c waits behind nothing but does not fit")
	require.Equal(t, int64(80), view.Used)
	require.Len(t, view.Queue, 1)
	require.Equal(t, "worker-fix-c", view.Queue[0].WorkerID)
}

// TestLedgerDropsAStaleQueuedRequest: a worker whose earlier lifecycle was
// queued and ended without withdrawing asks again under a new lease; the
// stale request is dropped (and refused if it comes back), so that it is
// never granted to nobody or over the new lifecycle's allocation.
func TestLedgerDropsAStaleQueuedRequest(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	stale := ReserveRequest{WorkerID: "worker-fix-x", Lease: WorkflowID("worker-fix-x") + "/r0", Amount: 50, Priority: "low", Wait: true}
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-a", 80, "medium", false))
	h.signalAt(2*time.Second, SignalReserve, stale)
	h.signalAt(3*time.Second, SignalReserve, ask("worker-fix-x", 20, "medium", false))
	h.signalAt(4*time.Second, SignalRelease, release("worker-fix-a"))
	h.signalAt(5*time.Second, SignalReserve, stale)
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 6*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 7*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Empty(t, end.Queue)
	require.Len(t, end.Allocations, 1)
	require.Equal(t, WorkflowID("worker-fix-x")+"/r1", end.Allocations[0].Lease, "the new lifecycle keeps its allocation")
	require.Equal(t, int64(20), end.Used)
	xs := a.of("worker-fix-x")
	require.False(t, xs[len(xs)-1].Granted || xs[len(xs)-1].Queued, "the stale request coming back is refused")
	require.NotEmpty(t, xs[len(xs)-1].Reason)
}

// While a fleet is upgraded (SetReserveBySignal(false)) a new lifecycle
// reserves with the update, as the previous release did: the ledgers of
// worker programs not yet upgraded know no reserve signal.
func (s *lifecycleSuite) TestReserveByUpdateWhileUpgrading() {
	SetReserveBySignal(false)
	s.T().Cleanup(func() { SetReserveBySignal(true) })
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.MatchedBy(func(in activities.ReserveInput) bool {
		return !in.Ask && !in.Wait
	})).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{}, nil).After(time.Minute)
	s.expectRelease(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
}

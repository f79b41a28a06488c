package workflows

import (
	"errors"
	"time"

	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// The ask update: the ledger's answer comes back in the reservation's own
// call, and a signal back is needed only for a queued request's grant.

// askAnswers makes ReserveBudget return res as the ask update's answer,
// checking the lifecycle asked with the update; the test ledger then
// signals nothing for the request itself.
func (s *lifecycleSuite) askAnswers(res activities.ReserveResult, after time.Duration) {
	s.ledger = func(activities.ReserveInput) *BudgetAnswer { return nil }
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.MatchedBy(func(in activities.ReserveInput) bool {
		return in.Ask && in.Update
	})).Return(res, nil).After(after).Once()
}

// expectRunAndRefund expects the process to start and run for a minute,
// and the reservation to be given back by signal when it ends.
func (s *lifecycleSuite) expectRunAndRefund() {
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{}, nil).After(time.Minute)
	s.expectRelease(1)
}

// askBySignalAlone runs the test as a worker program started with
// --ask-by-update=false.
func (s *lifecycleSuite) askBySignalAlone() {
	SetAskByUpdate(false)
	s.T().Cleanup(func() { SetAskByUpdate(true) })
}

// answerTimers counts the timers started to bound the wait for the
// ledger's answer.
func (s *lifecycleSuite) answerTimers() *int {
	n := 0
	s.env.SetOnTimerScheduledListener(func(_ string, d time.Duration) {
		if d == answerWithin {
			n++
		}
	})
	return &n
}

func (s *lifecycleSuite) TestGrantedInTheAsksResult() {
	s.askAnswers(activities.ReserveResult{Answered: true, Granted: true}, 0)
	s.expectRunAndRefund()
	timers := s.answerTimers()
	req := testRequest()
	// Not answerWithin: the one deadline timer of the running worker is
	// armed for the zombie limit.
	req.Limits.ZombieAfter = 6 * time.Minute

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
	s.Equal(int64(10000), spec.Cleanup.Refunded)
	s.Zero(*timers, "a grant in the result waits for nothing: no answer timer")
	s.Equal(time.Duration(0), spec.StartedAt.Sub(spec.CreatedAt))
}

func (s *lifecycleSuite) TestQueuedInTheAsksResultThenGrantedBySignal() {
	s.askAnswers(activities.ReserveResult{Answered: true, Queued: true, Position: 2}, 0)
	s.expectRunAndRefund()
	var queued WorkerSpec
	s.env.RegisterDelayedCallback(func() { queued = s.status() }, 5*time.Minute)
	s.grantAt(20 * time.Minute)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(30*time.Minute)))
	spec := s.result()
	s.Require().NotNil(queued.Queue)
	s.Equal(2, queued.Queue.Position)
	s.Require().NotNil(queued.Queue.Deadline)
	s.Equal(30*time.Minute, queued.Queue.Deadline.Sub(queued.Queue.Since))
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
	s.Equal(20*time.Minute, spec.StartedAt.Sub(spec.CreatedAt).Round(time.Minute))
}

func (s *lifecycleSuite) TestQueuedInTheAsksResultTimesOut() {
	s.askAnswers(activities.ReserveResult{Answered: true, Queued: true, Position: 1}, 0)
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(30*time.Minute)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Equal("queue timeout: no budget for 10000 tokens within 30m0s", spec.Cleanup.Reason)
	s.Equal(30*time.Minute, spec.CompletedAt.Sub(spec.CreatedAt).Round(time.Second))
	s.Zero(spec.Cleanup.Refunded)
}

func (s *lifecycleSuite) TestRefusedInTheAsksResult() {
	s.askAnswers(activities.ReserveResult{Answered: true, Reason: "insufficient budget: available 5 < required 10000"}, 0)
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Equal("insufficient budget: available 5 < required 10000", spec.Cleanup.Reason)
	s.Zero(spec.TokenBudget.Allocated)
}

// A shutdown that came while the ledger answered is taken before the grant:
// nothing starts and the grant is given back.
func (s *lifecycleSuite) TestShutdownDuringTheAskIsTakenBeforeItsGrant() {
	s.askAnswers(activities.ReserveResult{Answered: true, Granted: true}, 5*time.Second)
	s.expectWithdraw()
	s.updateAt(2*time.Second, UpdateShutdown, ShutdownRequest{Reason: "not needed"}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusCompleted}, statuses(spec))
	s.Equal("not needed", spec.Cleanup.Reason)
	s.Zero(spec.PID)
}

// An answer by signal meant for an earlier lifecycle of this worker id
// (queued, then terminated before its grant) that came while the ledger
// answered this one's ask is given back, not left held by nobody.
func (s *lifecycleSuite) TestAStaleGrantBesideTheAsksAnswerIsGivenBack() {
	old := "worker-lifecycle/worker-implementation-001/old-run"
	s.askAnswers(activities.ReserveResult{Answered: true, Reason: "worker worker-implementation-001 already holds 10000 tokens for another lifecycle"}, 5*time.Second)
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(SignalBudgetAnswer, BudgetAnswer{WorkerID: testRequest().WorkerID, Lease: old, Granted: true})
	}, time.Second)
	s.env.OnSignalExternalWorkflow(mock.Anything, LedgerWorkflowID, "", SignalRelease,
		ReleaseRequest{WorkerID: testRequest().WorkerID, Lease: old}).Return(nil).Once()
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Contains(spec.Cleanup.Reason, "already holds")
}

// When the update could not be used the request went as a signal, and
// the answer by signal is awaited as before.
func (s *lifecycleSuite) TestAskFallsBackToTheSignalledAnswer() {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.MatchedBy(func(in activities.ReserveInput) bool {
		return in.Update
	})).Return(activities.ReserveResult{}, nil).Once()
	s.expectRunAndRefund()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
	s.Equal(int64(10000), spec.Cleanup.Refunded)
}

// TestLedgerAnswersAnAskInItsResult: the ask update grants, queues and
// refuses by the signal's rules, answers a repeat again without reserving
// twice, and only the queued request's later grant is a signal.
func TestLedgerAnswersAnAskInItsResult(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	first := h.at(1*time.Second, UpdateAsk, ask("worker-fix-a", 80, "medium", false))
	queued := h.at(2*time.Second, UpdateAsk, ask("worker-fix-b", 50, "medium", true))
	refused := h.at(3*time.Second, UpdateAsk, ask("worker-fix-c", 50, "medium", false))
	again := h.at(4*time.Second, UpdateAsk, ask("worker-fix-a", 80, "medium", false))
	bad := h.at(5*time.Second, UpdateAsk, ask("worker-fix-d", 10, "urgent", false))
	var mid BudgetView
	h.env.RegisterDelayedCallback(func() { mid = h.view() }, 6*time.Second)
	h.signalAt(7*time.Second, SignalRelease, release("worker-fix-a"))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 8*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 9*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	for _, c := range []*ledgerCall{first, queued, refused, again, bad} {
		require.NoError(t, c.rejected)
		require.NoError(t, c.failed)
	}
	lease := func(id string) string { return WorkflowID(id) + "/r1" }
	require.Equal(t, BudgetAnswer{WorkerID: "worker-fix-a", Lease: lease("worker-fix-a"), Granted: true}, first.result)
	require.Equal(t, BudgetAnswer{WorkerID: "worker-fix-b", Lease: lease("worker-fix-b"), Queued: true, Position: 1, QueueTimeout: DefaultQueueTimeout}, queued.result)
	require.Equal(t, "insufficient budget: available 20 < required 50", refused.result.(BudgetAnswer).Reason)
	require.Equal(t, first.result, again.result, "a repeat is answered again")
	require.Contains(t, bad.result.(BudgetAnswer).Reason, `priority "urgent" must be one of`)
	require.Equal(t, int64(20), mid.Available, "the repeat reserved nothing more")
	require.Len(t, mid.Queue, 1)
	require.Equal(t, []BudgetAnswer{{WorkerID: "worker-fix-b", Lease: lease("worker-fix-b"), Granted: true}}, a.all(),
		"the one signal back is the queued request's grant, at the refund")
	require.Equal(t, int64(50), end.Available)
}

// TestLedgerTurnsAsksAwayWhileClosing: once the run has started to close
// for continue-as-new, an ask is rejected unwritten (the asker sends the
// signal instead, which the next run answers), so a stream of asks cannot
// hold the run open.
func TestLedgerTurnsAsksAwayWhileClosing(t *testing.T) {
	h := newLedgerHarness(t)
	st := NewLedgerState(100)
	st.UpdatesThisRun = ledgerUpdatesPerRun - 1
	// The answer to the last request before the bound is slow to arrive,
	// which keeps the run closing.
	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", SignalBudgetAnswer, mock.Anything).Return(nil).After(10 * time.Second)
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-a", 10, "medium", false))
	late := h.at(3*time.Second, UpdateAsk, ask("worker-fix-b", 10, "medium", false))

	h.env.ExecuteWorkflow(BudgetLedger, st)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, late.rejected, &appErr)
	require.Equal(t, ErrTypeLedgerClosing, appErr.Type())
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(h.env.GetWorkflowError(), &can), "got %v", h.env.GetWorkflowError())
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Contains(t, next.Allocations, "worker-fix-a")
	require.NotContains(t, next.Allocations, "worker-fix-b", "the rejected ask wrote nothing")
}

// While a fleet is upgraded (SetAskByUpdate(false)) a new lifecycle asks
// by signal alone (its reserve-ask marker records the default version), as the
// previous release did.
func (s *lifecycleSuite) TestAskBySignalWhileUpgrading() {
	s.askBySignalAlone()
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.MatchedBy(func(in activities.ReserveInput) bool {
		return in.Ask && !in.Update
	})).Return(activities.ReserveResult{}, nil).Once()
	s.expectRunAndRefund()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
}

// TestLedgerQueuedAnswerCarriesThePoolsQueueTimeout: a queued answer says
// how long the request waits when its spawn set no queue timeout: its
// pool's setting, the defaults' for a pool without settings, the root's
// for the unnamed pool, else DefaultQueueTimeout; a bad one is refused.
func TestLedgerQueuedAnswerCarriesThePoolsQueueTimeout(t *testing.T) {
	h := newLedgerHarness(t)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{QueueTimeout: 10 * time.Minute}})
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Defaults: true, Settings: PoolSettings{QueueTimeout: 20 * time.Minute}})
	negative := h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{QueueTimeout: -time.Second}})
	long := h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{QueueTimeout: 8 * 24 * time.Hour}})
	h.at(2*time.Second, UpdateAsk, inPool("team-a", "worker-fix-full", 100, "medium", false))
	a := h.at(3*time.Second, UpdateAsk, inPool("team-a", "worker-fix-a", 10, "medium", true))
	m := h.at(3*time.Second, UpdateAsk, inPool("some-master", "worker-fix-m", 10, "medium", true))
	root := h.at(3*time.Second, UpdateAsk, inPool("", "worker-fix-r", 10, "medium", true))
	h.at(4*time.Second, UpdatePoolSet, PoolSetRequest{Name: PoolRoot, Settings: PoolSettings{QueueTimeout: 40 * time.Minute}, Fields: []string{"queue_timeout"}})
	again := h.at(5*time.Second, UpdateAsk, inPool("", "worker-fix-r", 10, "medium", true))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 6*time.Second)

	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", SignalBudgetAnswer, mock.Anything).Return(nil).Maybe()
	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.ErrorContains(t, negative.rejected, "queue timeout -1s is not in 0..168h0m0s")
	require.ErrorContains(t, long.rejected, "queue timeout 192h0m0s is not in 0..168h0m0s")
	require.Equal(t, 10*time.Minute, a.result.(BudgetAnswer).QueueTimeout, "the pool's own")
	require.Equal(t, 20*time.Minute, m.result.(BudgetAnswer).QueueTimeout, "the defaults, for a pool without settings")
	require.Equal(t, DefaultQueueTimeout, root.result.(BudgetAnswer).QueueTimeout, "the root sets none yet")
	require.Equal(t, 40*time.Minute, again.result.(BudgetAnswer).QueueTimeout, "the root's, for the unnamed pool")
	for _, c := range []*ledgerCall{a, m, root, again} {
		require.True(t, c.result.(BudgetAnswer).Queued)
	}
}

// A spawn that sets no queue timeout waits as long as its pool says.
func (s *lifecycleSuite) TestQueuedForThePoolsQueueTimeout() {
	s.askAnswers(activities.ReserveResult{Answered: true, Queued: true, Position: 1, QueueTimeout: 10 * time.Minute}, 0)
	s.expectWithdraw()
	var queued WorkerSpec
	s.env.RegisterDelayedCallback(func() { queued = s.status() }, time.Minute)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(0)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Equal("queue timeout: no budget for 10000 tokens within 10m0s", spec.Cleanup.Reason)
	s.Equal(10*time.Minute, spec.CompletedAt.Sub(spec.CreatedAt).Round(time.Second))
	s.Require().NotNil(queued.Queue)
	s.Require().NotNil(queued.Queue.Deadline)
	s.Equal(10*time.Minute, queued.Queue.Deadline.Sub(queued.Queue.Since))
}

// The spawn's own queue timeout wins over its pool's.
func (s *lifecycleSuite) TestTheSpawnsQueueTimeoutWinsOverThePools() {
	s.askAnswers(activities.ReserveResult{Answered: true, Queued: true, Position: 1, QueueTimeout: 10 * time.Minute}, 0)
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(45*time.Minute)))
	spec := s.result()
	s.Equal("queue timeout: no budget for 10000 tokens within 45m0s", spec.Cleanup.Reason)
	s.Equal(45*time.Minute, spec.CompletedAt.Sub(spec.CreatedAt).Round(time.Second))
}

// timerDurations records the durations of the timers the lifecycle starts.
func (s *lifecycleSuite) timerDurations() *[]time.Duration {
	var d []time.Duration
	s.env.SetOnTimerScheduledListener(func(_ string, t time.Duration) { d = append(d, t) })
	return &d
}

// When the ask went by signal, the wait for the first answer is bound by
// the default queue timeout; once queued, the pool's runs, from the ask.
func (s *lifecycleSuite) TestQueuedBySignalForThePoolsQueueTimeout() {
	s.ledger = func(in activities.ReserveInput) *BudgetAnswer {
		return &BudgetAnswer{WorkerID: in.WorkerID, Lease: in.Lease, Queued: true, Position: 2, QueueTimeout: 10 * time.Minute}
	}
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.expectWithdraw()
	timers := s.timerDurations()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(0)))
	spec := s.result()
	s.Equal("queue timeout: no budget for 10000 tokens within 10m0s", spec.Cleanup.Reason)
	s.Equal(10*time.Minute, spec.CompletedAt.Sub(spec.CreatedAt).Round(time.Second))
	s.Require().Len(*timers, 2, "the first answer's bound, then the pool's")
	s.Equal(DefaultQueueTimeout, (*timers)[0])
}

// A queued answer of a ledger that names no queue timeout (one of an
// earlier release, answering the signal) leaves the default.
func (s *lifecycleSuite) TestQueuedWithoutAPoolQueueTimeoutWaitsTheDefault() {
	s.askAnswers(activities.ReserveResult{Answered: true, Queued: true, Position: 1}, 0)
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(0)))
	spec := s.result()
	s.Equal("queue timeout: no budget for 10000 tokens within 30m0s", spec.Cleanup.Reason)
}

// A grant by signal that came while the ask's result said "queued" is this
// lifecycle's admission, not a stale answer: it starts.
func (s *lifecycleSuite) TestAGrantBesideTheAsksQueuedAnswerStarts() {
	s.askAnswers(activities.ReserveResult{Answered: true, Queued: true, Position: 1}, 5*time.Second)
	s.grantAt(time.Second)
	s.expectRunAndRefund()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(0)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
	s.Equal(5*time.Second, spec.StartedAt.Sub(spec.CreatedAt).Round(time.Second))
}

// By signal alone (SetAskByUpdate(false)) a spawn without a queue timeout
// waits as long as its pool's queued answer says, and, when the answer
// names none (a ledger of an earlier release), until it is admitted or
// stopped, as before.
func (s *lifecycleSuite) TestBySignalAloneThePoolsQueueTimeoutRuns() {
	s.askBySignalAlone()
	s.ledger = func(in activities.ReserveInput) *BudgetAnswer {
		return &BudgetAnswer{WorkerID: in.WorkerID, Lease: in.Lease, Queued: true, Position: 1, QueueTimeout: 10 * time.Minute}
	}
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.expectWithdraw()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(0)))
	spec := s.result()
	s.Equal("queue timeout: no budget for 10000 tokens within 10m0s", spec.Cleanup.Reason)
	s.Equal(10*time.Minute, spec.CompletedAt.Sub(spec.CreatedAt).Round(time.Second))
}

func (s *lifecycleSuite) TestBySignalAloneWithoutAPoolQueueTimeoutWaits() {
	s.askBySignalAlone()
	s.queueAnswer(1)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.expectWithdraw()
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 2*time.Hour)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(waitingRequest(0)))
	spec := s.result()
	s.Equal("lifecycle cancelled while queued for budget", spec.Cleanup.Reason)
}

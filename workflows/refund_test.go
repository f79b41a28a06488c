package workflows

import (
	"context"
	"errors"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// A reservation that went through is given back with a signal, and what it
// held is what was refunded, even where the release update would have read
// 0 (a retry reaching a later ledger run, which no longer knows the lease).
func (s *lifecycleSuite) TestRefundIsWhatWasHeld() {
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 0})
	var sent activities.ReleaseInput
	s.env.OnActivity(sharedActs.ReleaseBySignal, mock.Anything, mock.Anything).
		Run(func(args mock.Arguments) { sent = args.Get(1).(activities.ReleaseInput) }).Return(nil).Once()
	s.env.OnActivity(sharedActs.ReleaseBudget, mock.Anything, mock.Anything).Return(activities.ReleaseResult{Released: 0}, nil).Maybe()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Equal(int64(10000), spec.Cleanup.Refunded)
	s.Equal("worker-implementation-001", sent.WorkerID)
	s.NotEmpty(sent.Lease)
}

// The release carries what the worker spent, for the spend windows.
func (s *lifecycleSuite) TestReleaseSettlesWhatWasSpent() {
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 0})
	s.heartbeatAt(5*time.Second, Heartbeat{TokensUsed: 1234, Status: "busy"})
	var sent activities.ReleaseInput
	s.env.OnActivity(sharedActs.ReleaseBySignal, mock.Anything, mock.Anything).
		Run(func(args mock.Arguments) { sent = args.Get(1).(activities.ReleaseInput) }).Return(nil).Once()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	s.Equal(StatusCompleted, s.result().Status)
	s.Equal(int64(1234), sent.Spent)
}

// With no ledger running to take the signal, the release update gives the
// budget back (and starts a ledger), and says how much.
func (s *lifecycleSuite) TestRefundFallsBackToTheUpdate() {
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 0})
	s.env.OnActivity(sharedActs.ReleaseBySignal, mock.Anything, mock.Anything).
		Return(temporal.NewNonRetryableApplicationError("no budget ledger is running", activities.ErrTypeLedgerNotRunning, nil)).Once()
	s.env.OnActivity(sharedActs.ReleaseBudget, mock.Anything, mock.Anything).Return(activities.ReleaseResult{Released: 0}, nil).Once()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Equal(int64(0), spec.Cleanup.Refunded, "a new ledger held nothing of this lifecycle's")
}

// A restart rechecks its reservation with the ledger itself, not with a
// repeat of the first reservation, which the server answers from its cache.
func (s *lifecycleSuite) TestRestartRechecksTheReservation() {
	var checks []activities.ReserveInput
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).
		Run(func(args mock.Arguments) { checks = append(checks, args.Get(1).(activities.ReserveInput)) }).Return(activities.ReserveResult{}, nil).Twice()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Twice()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 3}, nil).After(10 * time.Second).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 0}, nil).After(10 * time.Second).Once()
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Maybe()
	s.env.OnActivity(sharedActs.RecordFailure, mock.Anything, mock.Anything).Return(activities.BreakerDecision{Allowed: true}, nil).Once()
	s.expectRelease(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(1)))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Require().Len(checks, 2)
	s.False(checks[0].Recheck, "the first is a reservation")
	s.True(checks[1].Recheck, "the restart's is a recheck")
	s.Equal(checks[0].Lease, checks[1].Lease)
}

// A restart whose reservation was released meanwhile is not restarted.
func (s *lifecycleSuite) TestRestartWithItsReservationGoneIsNotRestarted() {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ReserveInput) (activities.ReserveResult, error) {
		if in.Recheck {
			return activities.ReserveResult{}, temporal.NewNonRetryableApplicationError("the reservation of worker worker-implementation-001 was released already", ErrTypeLedgerRefused, nil)
		}
		return activities.ReserveResult{}, nil
	}).Twice()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 3}, nil).After(10 * time.Second).Once()
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Maybe()
	s.env.OnActivity(sharedActs.RecordFailure, mock.Anything, mock.Anything).Return(activities.BreakerDecision{Allowed: true}, nil).Once()
	// The recheck found the reservation gone: the refund asks the ledger
	// what it gives back (nothing) instead of counting the budget.
	s.env.OnActivity(sharedActs.ReleaseBudget, mock.Anything, mock.Anything).Return(activities.ReleaseResult{Released: 0}, nil).Once()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(1)))
	spec := s.result()
	s.Empty(spec.Restarts)
	s.Zero(spec.Cleanup.Refunded)
	s.Contains(spec.Cleanup.Reason, "not restarted: the reservation of worker worker-implementation-001 was released already")
}

// A run before the lean version (a lifecycle of an earlier release, or a
// worker program upgrading with the reserve signal or the ask update off)
// signals the ledger from the workflow, and falls back to the update when
// no ledger takes the signal.
func (s *lifecycleSuite) TestRefundBeforeLeanIsTheWorkflowsSignal() {
	s.beforeLean()
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 0})
	s.env.OnSignalExternalWorkflow(mock.Anything, LedgerWorkflowID, "", SignalRelease, mock.Anything).
		Return(errors.New("unknown external workflow execution")).Once()
	s.env.OnActivity(sharedActs.ReleaseBudget, mock.Anything, mock.Anything).Return(activities.ReleaseResult{Released: 10000}, nil).Once()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Equal(int64(10000), spec.Cleanup.Refunded)
}

// A lean refund whose release signal may have landed although its sender
// failed tries it a few times, quickly, then goes through the update, and
// counts what was held as refunded: the update finds nothing left when
// the signal did land (review of issue 16).
func (s *lifecycleSuite) TestUncertainReleaseSignalCountsWhatWasHeld() {
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 0})
	tries := 0
	s.env.OnActivity(sharedActs.ReleaseBySignal, mock.Anything, mock.Anything).
		Run(func(mock.Arguments) { tries++ }).Return(errors.New("context deadline exceeded"))
	s.env.OnActivity(sharedActs.ReleaseBudget, mock.Anything, mock.Anything).Return(activities.ReleaseResult{Released: 0}, nil).Once()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Equal(int64(10000), spec.Cleanup.Refunded, "held, and given back once")
	s.Equal(releaseSignalTries, tries, "a few quick tries, then the update")
}

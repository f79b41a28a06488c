package workflows

import (
	"errors"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// A kill queued behind a shutdown, both sent before the loop reads them,
// must not be lost: it wins. On the released path (the reserve update),
// which recorded lifecycles replay; on today's, a stop before the ledger's
// answer ends the lifecycle before any process (queue_test.go).
func (s *lifecycleSuite) TestKillQueuedBehindShutdownWins() {
	s.beforeLean()
	s.env.OnGetVersion(VersionReserveSignal, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).After(5 * time.Second).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 137}, nil).After(time.Hour)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.MatchedBy(func(in activities.StopInput) bool { return in.Grace == 0 })).
		Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)
	// Both arrive while the worker is still pending.
	s.updateAt(time.Second, UpdateShutdown, ShutdownRequest{Grace: time.Hour}, nil)
	s.updateAt(2*time.Second, UpdateKill, KillRequest{Reason: "now"}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Equal("now", spec.Cleanup.Reason)
}

// A reservation that failed for an unknown reason may have gone through:
// it is released, so no budget leaks. The released path; today's withdraws
// the request with a signal (TestUncertainRequestIsWithdrawn).
func (s *lifecycleSuite) TestUncertainReservationIsReleased() {
	s.beforeLean()
	s.env.OnGetVersion(VersionReserveSignal, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, errors.New("context deadline exceeded"))
	s.expectReleaseUpdate(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.Contains(spec.Cleanup.Reason, "context deadline exceeded")
}

// A cancel while the process is being started still stops that process.
func (s *lifecycleSuite) TestCancelDuringStartStopsTheProcess() {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).After(5 * time.Second).Once()
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.MatchedBy(func(in activities.StopInput) bool {
		return in.Process.PID == testProcess.PID
	})).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 2*time.Second)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Equal("lifecycle cancelled while pending", spec.Cleanup.Reason)
}

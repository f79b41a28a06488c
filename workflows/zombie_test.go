package workflows

import (
	"context"
	"errors"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// hostAway is how a stop fails while its host's worker program is gone.
var hostAway = temporal.NewNonRetryableApplicationError("host away", "HostAway", nil)

// killedZombie mocks a worker that runs until it is killed at 1 minute and
// whose stops all fail: refunded, in zombie, owing its process a stop.
// It returns the number of stops tried.
func (s *lifecycleSuite) killedZombie() *int {
	s.expectStart(365*24*time.Hour, activities.ExitStatus{})
	stops := 0
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.StopInput) (activities.StopResult, error) {
			stops++
			return activities.StopResult{}, hostAway
		})
	s.expectRelease(1)
	s.updateAt(time.Minute, UpdateKill, KillRequest{}, nil)
	return &stops
}

// continuedAsNew is the state the run handed to its next one.
func (s *lifecycleSuite) continuedAsNew() LifecycleState {
	s.Require().True(s.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	s.Require().True(errors.As(s.env.GetWorkflowError(), &can), "got %v", s.env.GetWorkflowError())
	var next LifecycleState
	s.Require().NoError(converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	return next
}

// TestZombieContinuesAsNewAfterItsRetries: a zombie whose host never comes
// back continues as new after zombieRetriesPerRun tries (issue 16), with
// what it owes, instead of retrying in one run until the server's history
// limit terminates it; what was sent to it meanwhile is counted; and the
// next run finishes the cleanup once the host is back.
func (s *lifecycleSuite) TestZombieContinuesAsNewAfterItsRetries() {
	stops := s.killedZombie()
	for i := 1; i <= 3; i++ {
		s.heartbeatAt(2*time.Hour+time.Duration(i)*time.Second, Heartbeat{TokensUsed: int64(100 * i)})
	}
	armed := map[string]time.Duration{}
	var fired []time.Duration
	s.env.SetOnTimerScheduledListener(func(id string, d time.Duration) { armed[id] = d })
	s.env.SetOnTimerFiredListener(func(id string) { fired = append(fired, armed[id]) })

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	next := s.continuedAsNew()
	s.NotContains(fired, testRequest().Limits.ZombieAfter, "the supervision's deadline timer is cancelled before the zombie waits")
	// The supervisor's kill, then one stop per try.
	s.Equal(1+zombieRetriesPerRun, *stops)
	s.Equal(StatusZombie, next.Spec.Status)
	s.Equal(1, next.Runs)
	s.Zero(next.SignalsThisRun)
	s.False(next.Reserved, "refunded at the first try")
	s.Require().NotNil(next.Ending)
	s.Equal(Ending{Reason: "kill requested", Normal: true, Owed: []string{stepStopProcess}, Refunded: 10000, Notified: true}, *next.Ending,
		"its cleanup_failed raised, not again by the next run")
	s.Equal(int64(3), next.Spec.Heartbeat.Count, "the zombie's heartbeats are counted before it moves")
	s.Equal(int64(300), next.Spec.TokenBudget.Used)
	s.Contains(next.Spec.Cleanup.Reason, "cleanup incomplete: stop process")

	// The next run: the host is back, the stop goes through at once.
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	env.RegisterActivity(&activities.HostActivities{})
	env.RegisterActivity(&activities.SharedActivities{})
	env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	env.ExecuteWorkflow(WorkerLifecycle, next)
	s.Require().True(env.IsWorkflowCompleted())
	s.Require().NoError(env.GetWorkflowError())
	var spec WorkerSpec
	s.Require().NoError(env.GetWorkflowResult(&spec))
	env.AssertExpectations(s.T())
	s.Equal([]Status{StatusPending, StatusRunning, StatusShuttingDown, StatusZombie, StatusCompleted}, statuses(spec))
	s.Equal("kill requested", spec.Cleanup.Reason)
	s.Equal(int64(10000), spec.Cleanup.Refunded, "refunded once, by the first run")
	s.Equal(ProcessStopped, spec.Cleanup.Process)
	s.NotNil(spec.Cleanup.CleanedAt)
}

// TestZombieHeartbeatsMoveItOn: a zombie whose process still heartbeats
// (its stops fail) continues as new once the signals sent to it reach the
// run's bound, long before the server's 10,000-signal limit.
func (s *lifecycleSuite) TestZombieHeartbeatsMoveItOn() {
	req := testRequest()
	req.Limits.MaxSignalsPerRun = 5
	stops := s.killedZombie()
	for i := 1; i <= 5; i++ {
		s.heartbeatAt(5*time.Minute+time.Duration(i)*time.Second, Heartbeat{TokensUsed: int64(i)})
	}

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	next := s.continuedAsNew()
	s.Equal(2, *stops, "the kill and the first try: the run moves as soon as the heartbeats fill it, not at its next try")
	s.Equal(int64(5), next.Spec.Heartbeat.Count)
	s.Require().NotNil(next.Ending)
	s.Equal([]string{stepStopProcess}, next.Ending.Owed)
}

// TestCompatR7TakesNoChangeOfR8: a worker program started with --compat
// r7 starts lifecycles an r7 program can replay: no lean run (the refund
// is the workflow's signal), a timer for each alert level (the warning is
// recorded by the lifecycle itself), as r7 did.
func (s *lifecycleSuite) TestCompatR7TakesNoChangeOfR8() {
	s.Require().NoError(SetCompat("r7"))
	s.T().Cleanup(func() { s.Require().NoError(SetCompat("")) })
	s.Equal(workflow.DefaultVersion, leanMax())
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143, Signal: "SIGTERM"})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1) // the workflow's signal: leanMax is off
	var timers []time.Duration
	s.env.SetOnTimerScheduledListener(func(_ string, d time.Duration) { timers = append(timers, d) })
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(AlertWarning, spec.Heartbeat.Alert, "recorded by the warning timer, as r7 did")
		s.Zero(spec.Heartbeat.ZombieAfter, "no clocks for readers")
	}, 61*time.Second)
	s.updateAt(70*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	s.Equal(StatusCompleted, s.result().Status)
	s.Contains(timers, DefaultHeartbeatWarning, "a timer for the warning")
}

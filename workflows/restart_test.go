package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// crashingProcess makes the n-th watched process (1-based) exit with
// codes[n-1] after 10 s.
func (s *lifecycleSuite) crashingProcess(codes ...int) {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil)
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Times(len(codes))
	for _, code := range codes {
		s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: code}, nil).After(10 * time.Second).Once()
	}
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil)
	s.expectRelease(1)
}

func restartRequest(maxRestarts int) SpawnRequest {
	req := testRequest()
	req.MaxRestarts = maxRestarts
	return req
}

func (s *lifecycleSuite) TestCrashTwiceThenSucceedRestartsWithGrowingDelays() {
	s.crashingProcess(3, 3, 0)
	s.env.OnActivity(sharedActs.RecordFailure, mock.Anything, mock.Anything).Return(activities.BreakerDecision{Allowed: true}, nil).Twice()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(2)))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Require().Len(spec.Restarts, 2)
	s.Equal(30*time.Second, spec.Restarts[0].Delay)
	s.Equal(60*time.Second, spec.Restarts[1].Delay)
	s.Equal(3, *spec.Restarts[0].ExitCode)
	s.Equal("process exited with code 3", spec.Restarts[0].Reason)
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusPending, StatusRunning, StatusFailed, StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
	// The restarts happened after their delays, by the workflow's clock.
	s.InDelta(30, spec.Transitions[4].At.Sub(spec.Transitions[3].At).Seconds(), 1)
	s.InDelta(60, spec.Transitions[7].At.Sub(spec.Transitions[6].At).Seconds(), 1)
}

// judgedProcess makes the n-th watched process end with ends[n-1] after
// 10 s, as a host of this release reports it: judged by the type's rules.
func (s *lifecycleSuite) judgedProcess(ends ...activities.ExitStatus) {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil)
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Times(len(ends))
	for _, end := range ends {
		s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(end, nil).After(10 * time.Second).Once()
	}
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil)
	s.expectRelease(1)
}

// An exit rule's fail ends the lifecycle without a restart, and the
// breaker is never told (no RecordFailure is mocked: a call would fail
// the test).
func (s *lifecycleSuite) TestExitRuleFailEndsWithoutRestartOrBreaker() {
	s.judgedProcess(activities.ExitStatus{ExitCode: 3, Action: "fail", Rule: "exit_rules[0] (exit code 3)"})

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(3)))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Empty(spec.Restarts)
	s.Equal(3, *spec.ExitCode)
	s.Equal("exit", spec.ExitReason)
	s.Equal("process exited with code 3 (exit_rules[0] (exit code 3): fail); not restarted", spec.Cleanup.Reason)
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
}

// A lost end is not restarted blindly: the default of the rules.
func (s *lifecycleSuite) TestLostEndIsNotRestartedBlindly() {
	s.judgedProcess(activities.ExitStatus{ExitCode: -1, Lost: true, Action: "fail"})

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(3)))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Empty(spec.Restarts)
	s.Nil(spec.ExitCode)
	s.Equal("lost", spec.ExitReason)
	s.Equal("process died while its worker program was down; exit status unknown; not restarted: an end nobody saw may be a finished task", spec.Cleanup.Reason)
}

// ignore restarts past max_restarts, uncounted and unknown to the breaker,
// with its own growing back-off; a counted crash after it is counted as
// the first.
func (s *lifecycleSuite) TestExitRuleIgnoreRestartsUncounted() {
	ignored := activities.ExitStatus{ExitCode: 75, Action: "ignore", Rule: "exit_rules[1] (exit code 75)"}
	s.judgedProcess(ignored, ignored, ignored, activities.ExitStatus{ExitCode: 1, Action: "restart"}, activities.ExitStatus{ExitCode: 0, Action: "complete"})
	s.env.OnActivity(sharedActs.RecordFailure, mock.Anything, mock.Anything).Return(activities.BreakerDecision{Allowed: true}, nil).Once()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(1)))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Equal("exit", spec.ExitReason)
	s.Require().Len(spec.Restarts, 4)
	for i, d := range []time.Duration{30 * time.Second, 60 * time.Second, 120 * time.Second} {
		s.Require().NotNil(spec.Restarts[i].Counted)
		s.False(*spec.Restarts[i].Counted)
		s.Equal(d, spec.Restarts[i].Delay)
		s.Equal("process exited with code 75 (exit_rules[1] (exit code 75): ignore)", spec.Restarts[i].Reason)
	}
	s.Nil(spec.Restarts[3].Counted, "a crash is counted")
	s.Equal(30*time.Second, spec.Restarts[3].Delay, "the first counted restart")
}

func (s *lifecycleSuite) TestOOMIsReportedAsItsOwnReason() {
	s.judgedProcess(activities.ExitStatus{ExitCode: 137, Signal: "SIGKILL", OOM: true, Action: "fail", Rule: "exit_rules[0] (oom)"})

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(3)))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Equal("oom", spec.ExitReason)
	s.Equal("process killed by the out-of-memory killer (SIGKILL) (exit_rules[0] (oom): fail); not restarted", spec.Cleanup.Reason)
}

// A stop by the worker's own host, cut off from the server, reads as such
// and is not restarted by default; the watch is told the lifecycle's
// host-loss bound and grace, from which the host's fence bound follows.
func (s *lifecycleSuite) TestFencedEndReadsAsSuchAndIsNotRestarted() {
	var watched activities.WatchInput
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.MatchedBy(func(in activities.WatchInput) bool {
		watched = in
		return true
	})).Return(activities.ExitStatus{ExitCode: 143, Signal: "SIGTERM", Fenced: true, Action: "fail"}, nil).After(10 * time.Second).Once()
	s.judgedProcess() // the reservation, the start, the stop and the refund
	req := restartRequest(3)
	req.Limits.HostLossAfter, req.Limits.ShutdownGrace = 40*time.Second, 7*time.Second

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Empty(spec.Restarts)
	s.Equal("fenced", spec.ExitReason)
	s.Equal("process stopped by its own host, which could not reach the server for longer than its fence bound; not restarted", spec.Cleanup.Reason)
	s.Equal(40*time.Second, watched.HostLossAfter)
	s.Equal(DefaultWatchHeartbeat, watched.WatchHeartbeat)
	s.Equal(7*time.Second, watched.Grace)
}

func (s *lifecycleSuite) TestAlwaysCrashingGivesUpAfterItsLimit() {
	s.crashingProcess(1, 1, 1)
	s.env.OnActivity(sharedActs.RecordFailure, mock.Anything, mock.Anything).Return(activities.BreakerDecision{Allowed: true}, nil).Twice()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(2)))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Len(spec.Restarts, 2)
	s.Equal("gave up after 2 restarts: process exited with code 1", spec.Cleanup.Reason)
	n := len(spec.Transitions)
	s.Equal([]Status{StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec)[n-3:])
	s.Equal(int64(10000), spec.Cleanup.Refunded)
}

func (s *lifecycleSuite) TestOpenCircuitBreakerStopsRestarts() {
	s.crashingProcess(2)
	until := time.Date(2026, 1, 1, 12, 30, 0, 0, time.UTC)
	s.env.OnActivity(sharedActs.RecordFailure, mock.Anything, mock.Anything).Return(activities.BreakerDecision{OpenUntil: &until, RecentFailures: 5}, nil).Once()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(3)))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Empty(spec.Restarts)
	s.Contains(spec.Cleanup.Reason, "circuit breaker of implementation-worker open until 2026-01-01T12:30:00Z (5 crashes in 15m0s)")
}

func (s *lifecycleSuite) TestShutdownDuringBackoffEndsCleanly() {
	s.crashingProcess(3)
	s.env.OnActivity(sharedActs.RecordFailure, mock.Anything, mock.Anything).Return(activities.BreakerDecision{Allowed: true}, nil).Once()
	s.updateAt(20*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(restartRequest(2)))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusPending, StatusCompleted}, statuses(spec))
	s.Equal("shutdown requested", spec.Cleanup.Reason)
}

func (s *lifecycleSuite) TestHealthyRunResetsTheRestartCount() {
	req := restartRequest(1)
	req.Limits.HealthyRun = 5 * time.Second
	s.crashingProcess(4, 4, 4, 0)
	s.env.OnActivity(sharedActs.RecordFailure, mock.Anything, mock.Anything).Return(activities.BreakerDecision{Allowed: true}, nil).Times(3)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	// Each process ran 10 s, longer than the healthy run: the count resets,
	// so one allowed restart is enough for three crashes.
	s.Equal(StatusCompleted, spec.Status)
	s.Len(spec.Restarts, 3)
	for _, r := range spec.Restarts {
		s.Equal(30*time.Second, r.Delay)
	}
}

func (s *lifecycleSuite) TestLostHostRefundsWithoutStopping() {
	req := testRequest()
	req.Limits.HostLossAfter = time.Minute
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).
		Return(activities.ExitStatus{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)).After(2 * time.Minute).Once()
	s.expectRelease(1)
	// No StopProcess mock: the host is gone, nobody can stop the process.

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.Contains(spec.Cleanup.Reason, "host host-a lost")
	s.Equal(ProcessLost, spec.Cleanup.Process)
	s.Equal(int64(10000), spec.Cleanup.Refunded)
}

func (s *lifecycleSuite) TestSamplesDriveTheHealthScore() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(SignalSample, activities.ResourceSample{CPUPercent: 70, RSSBytes: 600 << 20, Processes: 3})
	}, 5*time.Second)
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(70, spec.Health.Score) // −15 CPU > 60%, −15 memory > 512 MiB
		s.Equal("degraded", spec.Health.Band)
		s.Equal(70, spec.Heartbeat.HealthScore)
		s.Equal(3, spec.Health.Processes)
	}, 6*time.Second)
	// 9500 of 10000 tokens used: −40 more.
	s.heartbeatAt(7*time.Second, Heartbeat{TokensUsed: 9500, HealthScore: intp(100)})
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(30, spec.Health.Score)
		s.Equal("unhealthy", spec.Health.Band)
		s.Equal(100, *spec.Heartbeat.ReportedHealthScore)
	}, 8*time.Second)
	s.updateAt(10*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	s.result()
}

func (s *lifecycleSuite) TestOutputHeartbeatsKeepAWorkerAlive() {
	req := testRequest()
	req.HeartbeatMode = HeartbeatModeOutput
	req.Limits = Limits{ZombieAfter: 30 * time.Second}
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)
	for i := 1; i <= 6; i++ {
		s.env.RegisterDelayedCallback(func() {
			s.env.SignalWorkflow(SignalOutputHeartbeat, activities.ResourceSample{Processes: 1})
		}, time.Duration(i)*20*time.Second)
	}

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	// Alive while its output grew (to 120 s), a zombie 30 s after it stopped.
	s.Equal(StatusCleanedUp, spec.Status)
	s.Equal(int64(6), spec.Heartbeat.Count)
	s.InDelta(150, spec.Transitions[2].At.Sub(spec.Transitions[0].At).Seconds(), 1)
}

func TestBackoffDoublesToItsCap(t *testing.T) {
	l := Limits{}.WithDefaults()
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, backoff(l, n))
	}
	require.Equal(t, []time.Duration{30 * time.Second, 60 * time.Second, 120 * time.Second, 240 * time.Second, 300 * time.Second, 300 * time.Second}, got)
}

func TestBreakerOpensAfterFiveCrashesInFifteenMinutes(t *testing.T) {
	b := BreakerState{WorkerType: "fix-worker"}
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 4; i++ {
		require.True(t, b.record(t0.Add(time.Duration(i)*time.Minute)).Allowed)
	}
	// A crash 20 minutes later: the first ones left the window.
	require.True(t, b.record(t0.Add(20*time.Minute)).Allowed)
	for i := 1; i <= 3; i++ {
		require.True(t, b.record(t0.Add(20*time.Minute+time.Duration(i)*time.Minute)).Allowed)
	}
	d := b.record(t0.Add(25 * time.Minute))
	require.False(t, d.Allowed, "the fifth crash within 15 minutes opens the breaker")
	require.Equal(t, t0.Add(55*time.Minute), *d.OpenUntil)
	require.False(t, b.record(t0.Add(54*time.Minute)).Allowed)
	require.True(t, b.record(t0.Add(56*time.Minute)).Allowed, "it closes after 30 minutes")
}

// stopFailsFirst makes StopProcess fail its first n calls, as when the
// worker's host is away.
func (s *lifecycleSuite) stopFailsFirst(n int) *int {
	calls := 0
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.StopInput) (activities.StopResult, error) {
			calls++
			if calls <= n {
				return activities.StopResult{}, temporal.NewNonRetryableApplicationError("host away", "HostAway", nil)
			}
			return activities.StopResult{Killed: true}, nil
		})
	return &calls
}

func (s *lifecycleSuite) TestFailedCleanupWaitsInZombieAndRetries() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137})
	calls := s.stopFailsFirst(2) // the kill and the compensation fail
	s.expectRelease(1)           // the refund succeeds at once, and only once
	s.updateAt(10*time.Second, UpdateKill, KillRequest{}, nil)
	var mid WorkerSpec
	s.env.RegisterDelayedCallback(func() { mid = s.status() }, time.Minute)
	// Cleanup of a live worker is refused; of a zombie, it retries at once.
	var refused error
	s.updateAt(5*time.Second, UpdateCleanup, nil, func(err error) { refused = err })
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(UpdateCleanup, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { s.Fail("rejected", err.Error()) }, OnComplete: func(any, error) {},
		})
	}, 2*time.Minute)

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Require().Error(refused)
	s.Contains(refused.Error(), "is running, not a zombie")
	s.Equal(StatusZombie, mid.Status)
	s.Contains(mid.Cleanup.Reason, "cleanup incomplete")
	s.Equal(int64(10000), mid.Cleanup.Refunded, "the budget is back even while the process is not")
	s.Equal(StatusCompleted, spec.Status)
	s.Equal(3, *calls)
	s.NotNil(spec.Cleanup.CleanedAt)
	s.InDelta(120, spec.CompletedAt.Sub(start).Seconds(), 2, "cleaned up when asked, not after the 10 minute retry")
}

// TestCancelledLifecycleKeepsRetryingItsCleanup: a cancel whose stop fails
// does not end the lifecycle with its process running; it retries on a
// disconnected context until the process is stopped.
func (s *lifecycleSuite) TestCancelledLifecycleKeepsRetryingItsCleanup() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137})
	calls := s.stopFailsFirst(1)
	s.expectRelease(1)
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 10*time.Second)

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(2, *calls, "the stop is tried again after the cancel")
	s.Equal(StatusCleanedUp, spec.Status)
	s.Equal(ProcessStopped, spec.Cleanup.Process)
	s.Equal(int64(10000), spec.Cleanup.Refunded)
	s.InDelta((10*time.Second + retryCleanupEvery).Seconds(), spec.CompletedAt.Sub(start).Seconds(), 2)
}

func (s *lifecycleSuite) TestZombieRetriesByItself() {
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 5})
	calls := s.stopFailsFirst(2) // after the crash, and the compensation
	s.expectRelease(1)
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Equal(3, *calls)
	s.InDelta(retryCleanupEvery.Seconds()+10, spec.CompletedAt.Sub(spec.CreatedAt).Seconds(), 2)
}

func TestDecideRestart(t *testing.T) {
	base := restartCheck{Restarts: 1, MaxRestarts: 3, RanFor: time.Minute, HealthyRun: 10 * time.Minute,
		TokensUsed: 100, Budget: 1000, Reason: "process exited with code 3"}
	with := func(f func(*restartCheck)) restartCheck { c := base; f(&c); return c }
	for _, c := range []struct {
		name string
		in   restartCheck
		want restartVerdict
	}{
		{"a crash within the count restarts", base,
			restartVerdict{Restart: true, Restarts: 1, Reason: base.Reason}},
		{"no restarts configured ends as it is", with(func(c *restartCheck) { c.MaxRestarts = 0 }),
			restartVerdict{Restarts: 1, Reason: base.Reason, Why: giveUpNoRestarts}},
		{"the count used up gives up", with(func(c *restartCheck) { c.Restarts = 3 }),
			restartVerdict{Restarts: 3, Reason: "gave up after 3 restarts: process exited with code 3", Why: giveUpMaxRestarts}},
		{"a healthy run forgives earlier crashes", with(func(c *restartCheck) { c.Restarts = 3; c.RanFor = 10 * time.Minute }),
			restartVerdict{Restart: true, Restarts: 0, Reason: base.Reason}},
		{"a process that never started is not a healthy run", with(func(c *restartCheck) { c.Restarts = 3; c.RanFor = -1; c.HealthyRun = 0 }),
			restartVerdict{Restarts: 3, Reason: "gave up after 3 restarts: process exited with code 3", Why: giveUpMaxRestarts}},
		{"a restart that could pass 3 budgets is refused", with(func(c *restartCheck) { c.TokensUsed = 2001 }),
			restartVerdict{Restarts: 1, Reason: "process exited with code 3; not restarted: 2001 tokens used, a restart could exceed 3× the budget", Why: giveUpTokenCap}},
		{"exactly 3 budgets is still allowed", with(func(c *restartCheck) { c.TokensUsed = 2000 }),
			restartVerdict{Restart: true, Restarts: 1, Reason: base.Reason}},
		{"an ignored end restarts past the count", with(func(c *restartCheck) { c.Restarts = 3; c.Uncounted = true }),
			restartVerdict{Restart: true, Restarts: 3, Reason: base.Reason}},
		{"an ignored end restarts without restarts configured", with(func(c *restartCheck) { c.MaxRestarts = 0; c.Uncounted = true }),
			restartVerdict{Restart: true, Restarts: 1, Reason: base.Reason}},
		{"an ignored end still meets the token cap", with(func(c *restartCheck) { c.TokensUsed = 2001; c.Uncounted = true }),
			restartVerdict{Restarts: 1, Reason: "process exited with code 3; not restarted: 2001 tokens used, a restart could exceed 3× the budget", Why: giveUpTokenCap}},
		{"ignored ends are bounded", with(func(c *restartCheck) { c.Uncounted = true; c.Ignored = 20 }),
			restartVerdict{Restarts: 1, Ignored: 20, Reason: "gave up after 20 restarts its exit rule ignored: process exited with code 3", Why: giveUpIgnoredBound}},
		{"a lifecycle of the release before the bound is not bounded", with(func(c *restartCheck) { c.Uncounted = true; c.Ignored = 20; c.Unbounded = true }),
			restartVerdict{Restart: true, Restarts: 1, Ignored: 20, Reason: base.Reason}},
		{"a healthy run forgives ignored ends", with(func(c *restartCheck) { c.Uncounted = true; c.Ignored = 20; c.RanFor = 10 * time.Minute }),
			restartVerdict{Restart: true, Restarts: 0, Ignored: 0, Reason: base.Reason}},
	} {
		t.Run(c.name, func(t *testing.T) { require.Equal(t, c.want, decideRestart(c.in)) })
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	l := Limits{RestartDelay: 30 * time.Second, RestartMaxDelay: 300 * time.Second}
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, backoff(l, n))
	}
	require.Equal(t, []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}, got)
}

// TestCleanupOfCancelledLifecycleAnswersWithItsResult: `starter cleanup` of
// a cancelled lifecycle in zombie gets the cleaned-up spec, not the cancel.
func (s *lifecycleSuite) TestCleanupOfCancelledLifecycleAnswersWithItsResult() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137})
	calls := s.stopFailsFirst(1)
	s.expectRelease(1)
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 10*time.Second)
	var answer WorkerSpec
	var answerErr error
	answered := false
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(UpdateCleanup, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { s.Fail("rejected", err.Error()) },
			OnComplete: func(v any, err error) {
				answered, answerErr = true, err
				if err == nil {
					answer = v.(WorkerSpec)
				}
			},
		})
	}, time.Minute)

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(2, *calls)
	s.Equal(StatusCleanedUp, spec.Status)
	s.InDelta(60, spec.CompletedAt.Sub(start).Seconds(), 2, "cleaned up when asked")
	s.Require().True(answered)
	s.Require().NoError(answerErr)
	s.Equal(StatusCleanedUp, answer.Status)
}

// TestCancelWhileWaitingInZombieStillCleansUp: a cancel that arrives while a
// zombie waits to retry its cleanup must not end the lifecycle with its
// process running.
func (s *lifecycleSuite) TestCancelWhileWaitingInZombieStillCleansUp() {
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 5})
	calls := s.stopFailsFirst(2) // after the crash, and the compensation
	s.expectRelease(1)
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 2*time.Minute)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Equal(3, *calls, "the stop is tried again after the cancel")
	s.Equal(ProcessStopped, spec.Cleanup.Process)
	s.InDelta(120, spec.CompletedAt.Sub(spec.CreatedAt).Seconds(), 2, "at once, not after the 10 minute retry")
}

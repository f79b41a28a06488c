package workflows

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

type lifecycleSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
	// ledger answers a reservation asked for by signal once its activity
	// completes: nil grants it, as the ledger does when it fits.
	ledger func(activities.ReserveInput) *BudgetAnswer
	// pool is the pool the test's request names, if any.
	pool  string
	asked chan activities.ReserveInput
	// notLean: the test runs as a lifecycle before VersionLeanLifecycle.
	notLean bool
}

func TestLifecycle(t *testing.T) { suite.Run(t, new(lifecycleSuite)) }

func (s *lifecycleSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	Register(s.env)
	s.env.RegisterActivity(&activities.HostActivities{})
	s.env.RegisterActivity(&activities.SharedActivities{})
	s.env.OnActivity(sharedActs.PickHost, mock.Anything).Return("host-a", nil).Maybe()
	// Each activity runs where its worker registers it: host activities
	// on a host's queue, shared ones on the shared queue.
	s.ledger = nil
	s.pool = ""
	s.notLean = false
	s.asked = make(chan activities.ReserveInput, 100)
	// A lean run (VersionLeanLifecycle) asks with a local activity.
	// The test environment names a local activity mocked with After by
	// its mock's function, so the ask is told by its argument, and the
	// asks are never in flight beside another local activity.
	s.env.SetOnLocalActivityStartedListener(func(_ *activity.Info, _ context.Context, args []any) {
		if len(args) == 0 {
			return // PickHost
		}
		if in, ok := args[0].(activities.ReserveInput); ok && in.Ask {
			s.asked <- in
		}
	})
	s.env.SetOnLocalActivityCompletedListener(func(_ *activity.Info, result converter.EncodedValue, err error) {
		// The test environment passes no error for a local activity that
		// failed; its result is then empty.
		if err == nil && (result == nil || !result.HasValue()) {
			err = errors.New("the local activity failed")
		}
		s.answerAsk(err)
	})
	s.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		if info.ActivityType.Name == "ReserveBudget" {
			var in activities.ReserveInput
			s.NoError(args.Get(&in))
			if in.Ask {
				s.asked <- in
			}
		}
		onHost := strings.HasPrefix(info.TaskQueue, HostTaskQueue(""))
		_, hostActivity := reflect.TypeOf(hostActs).MethodByName(info.ActivityType.Name)
		_, sharedActivity := reflect.TypeOf(sharedActs).MethodByName(info.ActivityType.Name)
		s.True(hostActivity != sharedActivity, "%s is a method of exactly one activities struct", info.ActivityType.Name)
		s.Equal(hostActivity, onHost, "%s scheduled on %s", info.ActivityType.Name, info.TaskQueue)
	})
	// The ledger answers by signal once the request has been sent.
	s.env.SetOnActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, err error) {
		if info.ActivityType.Name == "ReserveBudget" {
			s.answerAsk(err)
		}
	})
}

// answerAsk sends the ledger's answer to an ask that completed.
func (s *lifecycleSuite) answerAsk(err error) {
	var in activities.ReserveInput
	select {
	case in = <-s.asked:
	default:
		return
	}
	if err != nil {
		return
	}
	ans := &BudgetAnswer{WorkerID: in.WorkerID, Lease: in.Lease, Granted: true}
	if s.ledger != nil {
		ans = s.ledger(in)
	}
	if ans != nil {
		s.env.SignalWorkflow(SignalBudgetAnswer, *ans)
	}
}

func (s *lifecycleSuite) AfterTest(_, _ string) { s.env.AssertExpectations(s.T()) }

func testRequest() SpawnRequest {
	return SpawnRequest{
		WorkerID:   "worker-implementation-001",
		WorkerType: "implementation-worker",
		TaskID:     "task-001",
		Priority:   "high",
		Master:     "development-master",
		Repo:       "owner/repo",
		Budget:     10000,
		Limits:     Limits{ZombieAfter: 5 * time.Minute},
	}
}

var testProcess = activities.ProcessInfo{PID: 4242, PGID: 4242, StartTicks: 99, Host: "host-a", LogPath: "/tmp/w.log"}

// expectStart mocks a successful reservation and spawn, and a process that
// runs until `runFor` has passed and then exits with `exit`.
func (s *lifecycleSuite) expectStart(runFor time.Duration, exit activities.ExitStatus) {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(exit, nil).After(runFor)
}

// expectRelease expects the refund of a reservation that went through: a
// release signal to the ledger, sent by a local activity (a lean run).
func (s *lifecycleSuite) expectRelease(times int) {
	if s.notLean || leanMax() == workflow.DefaultVersion {
		// A worker program upgrading with the reserve signal or the ask
		// update off runs no lean lifecycle: the workflow signals.
		s.env.OnSignalExternalWorkflow(mock.Anything, LedgerWorkflowID, "", SignalRelease, mock.Anything).Return(nil).Times(times)
		return
	}
	s.env.OnActivity(sharedActs.ReleaseBySignal, mock.Anything, mock.Anything).Return(nil).Times(times)
}

// beforeLean runs the test as a lifecycle before VersionLeanLifecycle
// (one of an earlier release, replayed): every version asked of its own.
func (s *lifecycleSuite) beforeLean() {
	s.env.OnGetVersion(VersionLeanLifecycle, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	s.notLean = true
}

// expectReleaseUpdate expects the refund of a reservation whose fate is
// unknown: the release update, which says what it gave back.
func (s *lifecycleSuite) expectReleaseUpdate(times int) {
	s.env.OnActivity(sharedActs.ReleaseBudget, mock.Anything, mock.Anything).
		Return(activities.ReleaseResult{Released: 10000}, nil).Times(times)
}

func (s *lifecycleSuite) result() WorkerSpec {
	s.Require().True(s.env.IsWorkflowCompleted())
	s.Require().NoError(s.env.GetWorkflowError())
	var spec WorkerSpec
	s.Require().NoError(s.env.GetWorkflowResult(&spec))
	return spec
}

func (s *lifecycleSuite) status() WorkerSpec {
	v, err := s.env.QueryWorkflow(QueryStatus)
	s.Require().NoError(err)
	var spec WorkerSpec
	s.Require().NoError(v.Get(&spec))
	return spec
}

func (s *lifecycleSuite) heartbeatAt(d time.Duration, hb Heartbeat) {
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(SignalHeartbeat, hb) }, d)
}

func (s *lifecycleSuite) updateAt(d time.Duration, name string, arg any, onReject func(error)) {
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) {
				if onReject == nil {
					s.Fail("update rejected", err.Error())
					return
				}
				onReject(err)
			},
			OnComplete: func(any, error) {},
		}, arg)
	}, d)
}

func statuses(spec WorkerSpec) []Status {
	out := make([]Status, len(spec.Transitions))
	for i, t := range spec.Transitions {
		out[i] = t.Status
	}
	return out
}

func intp(v int) *int { return &v }

func (s *lifecycleSuite) TestHeartbeatsThenGracefulShutdown() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143, Signal: "SIGTERM"})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.MatchedBy(func(in activities.StopInput) bool {
		return in.Grace == DefaultShutdownGrace && in.Process.PID == testProcess.PID
	})).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)

	s.heartbeatAt(30*time.Second, Heartbeat{TokensUsed: 100, HealthScore: intp(90)})
	s.heartbeatAt(60*time.Second, Heartbeat{TokensUsed: 250, HealthScore: intp(80), Message: "halfway"})
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(StatusRunning, spec.Status)
		s.Equal(int64(250), spec.TokenBudget.Used)
		s.Equal(80, *spec.Heartbeat.ReportedHealthScore)
		s.Equal(100, spec.Heartbeat.HealthScore, "the score is computed, not taken from the worker")
		s.Equal(int64(2), spec.Heartbeat.Count)
		s.Equal(testProcess.PID, spec.PID)
	}, 61*time.Second)
	s.updateAt(90*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusShuttingDown, StatusCompleted}, statuses(spec))
	s.Equal(int64(10000), spec.Cleanup.Refunded)
	s.False(spec.Cleanup.Automated)
	s.NotNil(spec.CompletedAt)
}

func (s *lifecycleSuite) TestBudgetRefusedStartsNothing() {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{},
		temporal.NewNonRetryableApplicationError("insufficient budget: available 10 < required 10000", activities.ErrTypeBudgetRefused, nil)).Once()

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed}, statuses(spec))
	s.Equal("insufficient budget: available 10 < required 10000", spec.Cleanup.Reason)
	s.Zero(spec.PID)
	s.Zero(spec.TokenBudget.Allocated)
	// AfterTest asserts StartProcess and ReleaseBudget were never called:
	// no mock exists for them, so a call would fail the run.
}

func (s *lifecycleSuite) TestSpawnFailureRefunds() {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(activities.ProcessInfo{},
		temporal.NewNonRetryableApplicationError(`starting "claude": executable file not found`, activities.ErrTypeSpawnFailed, nil)).Once()
	s.expectRelease(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.Contains(spec.Cleanup.Reason, "spawn failed")
	s.Contains(spec.Cleanup.Reason, "executable file not found")
	s.Equal(int64(10000), spec.Cleanup.Refunded)
}

func (s *lifecycleSuite) TestProcessCrashCompensates() {
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 3})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Once()
	s.expectRelease(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.Equal("process exited with code 3", spec.Cleanup.Reason)
	s.Require().NotNil(spec.ExitCode)
	s.Equal(3, *spec.ExitCode)
	s.True(spec.Cleanup.Automated)
}

func (s *lifecycleSuite) TestCleanExitCompletesAndRefunds() {
	s.expectStart(10*time.Second, activities.ExitStatus{ExitCode: 0})
	// The stop reaps whatever the process left in its group.
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Once()
	s.expectRelease(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
	s.Equal(0, *spec.ExitCode)
	s.Equal(int64(10000), spec.Cleanup.Refunded)
}

func (s *lifecycleSuite) TestZombieAfterHeartbeatsStop() {
	req := testRequest()
	req.Limits = Limits{HeartbeatWarning: 10 * time.Second, HeartbeatCritical: 20 * time.Second, ZombieAfter: 30 * time.Second}
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137, Signal: "SIGKILL"})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)

	// The last heartbeat at 20s moves the zombie deadline to 50s.
	s.heartbeatAt(20*time.Second, Heartbeat{TokensUsed: 10})
	// No timer sets the levels (VersionOneDeadlineTimer): the reader
	// computes them from the clocks the spec carries, as fleet.Status does.
	s.env.RegisterDelayedCallback(func() { s.Empty(s.status().AlertAt(s.env.Now())) }, 29*time.Second)
	s.env.RegisterDelayedCallback(func() { s.Equal(AlertWarning, s.status().AlertAt(s.env.Now())) }, 31*time.Second)
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(AlertCritical, spec.AlertAt(s.env.Now()))
		s.Empty(spec.Heartbeat.Alert, "no timer fired for it")
		s.Equal(StatusRunning, spec.Status)
	}, 45*time.Second)

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.Contains(spec.Cleanup.Reason, "no heartbeat for 30s")
	zombieAt := spec.Transitions[2].At.Sub(start)
	s.InDelta((50 * time.Second).Seconds(), zombieAt.Seconds(), 1)
	s.Equal(int64(10000), spec.Cleanup.Refunded)
}

// TestOneDeadlineTimerPerZombieLimit: heartbeats every 30 s under the
// default warning (60 s) and critical (120 s) limits arm one deadline timer
// per zombie limit, not one per heartbeat interval (issue 16), and a late
// heartbeat's warning is still read from the spec when it is due.
func (s *lifecycleSuite) TestOneDeadlineTimerPerZombieLimit() {
	const beats, every = 100, 30 * time.Second
	s.expectStart(24*time.Hour, activities.ExitStatus{ExitCode: 143, Signal: "SIGTERM"})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	var timers []time.Duration
	s.env.SetOnTimerScheduledListener(func(_ string, d time.Duration) { timers = append(timers, d) })

	for i := 1; i <= beats; i++ {
		s.heartbeatAt(time.Duration(i)*every, Heartbeat{TokensUsed: int64(i)})
	}
	last := time.Duration(beats) * every
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(int64(beats), spec.Heartbeat.Count)
		s.Empty(spec.AlertAt(s.env.Now()), "10 s after a heartbeat")
		s.Equal(AlertWarning, spec.AlertAt(spec.Heartbeat.LastSeen.Add(DefaultHeartbeatWarning)))
		s.Equal(AlertCritical, spec.AlertAt(spec.Heartbeat.LastSeen.Add(DefaultHeartbeatCritical)))
	}, last+10*time.Second)
	s.updateAt(last+20*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	// 3,020 s of supervision under a 300 s zombie limit: a timer when the
	// process starts and one each time it fires and finds the worker alive,
	// armed from the last heartbeat (at most 30 s old), and the stop's wait
	// for the watch's report. A timer per warning level fired every 60 s.
	var deadlines, short int
	for _, d := range timers {
		if d != stopReportWait {
			deadlines++
			if d < 5*time.Minute-every {
				short++
			}
		}
	}
	s.Zero(short, "no timer for a warning level: %v", timers)
	// Each fires at least 270 s after the one before; one more is pending.
	s.LessOrEqual(deadlines, int(last/(5*time.Minute-every))+2, "timers armed: %v", timers)
}

func (s *lifecycleSuite) TestPendingWorkerIsNeverFlagged() {
	req := testRequest()
	req.Limits = Limits{ZombieAfter: 30 * time.Second}
	// The reservation takes far longer than the zombie limit.
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).After(10 * time.Minute).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 0}, nil).After(5 * time.Second)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Once()
	s.expectRelease(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusCompleted}, statuses(spec))
}

func (s *lifecycleSuite) TestIdleWorkerShutsDownAfterIdleLimit() {
	req := testRequest()
	req.Limits.IdleAfter = time.Minute
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143, Signal: "SIGTERM"})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)

	s.heartbeatAt(10*time.Second, Heartbeat{Status: HeartbeatIdle})
	s.heartbeatAt(20*time.Second, Heartbeat{Status: HeartbeatBusy})
	s.heartbeatAt(30*time.Second, Heartbeat{Status: HeartbeatIdle})
	for _, at := range []time.Duration{60, 120} {
		s.heartbeatAt(at*time.Second, Heartbeat{}) // alive, still idle
	}

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusIdle, StatusRunning, StatusIdle, StatusShuttingDown, StatusCompleted}, statuses(spec))
	s.Equal("idle for 1m0s", spec.Cleanup.Reason)
	s.True(spec.Cleanup.Automated)
	s.InDelta(90, spec.Transitions[5].At.Sub(start).Seconds(), 1)
}

func (s *lifecycleSuite) TestWorkerWithoutTaskStartsIdle() {
	req := testRequest()
	req.TaskID = ""
	req.Limits.IdleAfter = 2 * time.Minute
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	s.heartbeatAt(time.Minute, Heartbeat{})

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusIdle, StatusShuttingDown, StatusCompleted}, statuses(spec))
}

func (s *lifecycleSuite) TestKillUsesNoGrace() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137, Signal: "SIGKILL"})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.MatchedBy(func(in activities.StopInput) bool {
		return in.Grace == 0
	})).Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)
	s.updateAt(10*time.Second, UpdateKill, KillRequest{Reason: "emergency"}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusShuttingDown, StatusCompleted}, statuses(spec))
	s.Equal("emergency", spec.Cleanup.Reason)
}

func (s *lifecycleSuite) TestKillDuringGracefulShutdownEscalates() {
	req := testRequest()
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.MatchedBy(func(in activities.StopInput) bool { return in.Grace == time.Minute })).
		Return(activities.StopResult{}, nil).After(time.Minute).Once()
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.MatchedBy(func(in activities.StopInput) bool { return in.Grace == 0 })).
		Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)
	s.updateAt(10*time.Second, UpdateShutdown, ShutdownRequest{Grace: time.Minute}, nil)
	// A duplicate shutdown while stopping is accepted and changes nothing.
	s.updateAt(12*time.Second, UpdateShutdown, ShutdownRequest{}, nil)
	s.updateAt(15*time.Second, UpdateKill, KillRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusShuttingDown, StatusCompleted}, statuses(spec))
}

// A heartbeat that comes while the process is being stopped (an agent's
// last count, sent on its SIGTERM) counts its tokens, and moves nothing:
// issue 16, applied before the lifecycle ends (VersionDrainAfterSupervision).
func (s *lifecycleSuite) TestHeartbeatWhileStoppingCountsItsTokensOnly() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).After(3 * time.Second).Once()
	s.expectRelease(1)
	s.heartbeatAt(5*time.Second, Heartbeat{Status: HeartbeatIdle, TokensUsed: 10})
	s.updateAt(10*time.Second, UpdateShutdown, ShutdownRequest{}, nil)
	s.heartbeatAt(11*time.Second, Heartbeat{Status: HeartbeatBusy, TokensUsed: 999})

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusIdle, StatusShuttingDown, StatusCompleted}, statuses(spec),
		"the busy heartbeat during the stop moves nothing")
	s.Equal(int64(999), spec.TokenBudget.Used, "its last count is the worker's")
	s.Equal(int64(2), spec.Heartbeat.Count)
}

// A zombie's stop hears the agent's last word: its tokens count, and the
// alert that made it a zombie stands; a cancel's stop, run by the saga,
// hears it too, before the refund.
func (s *lifecycleSuite) TestLastWordDuringAZombieOrCancelStop() {
	s.Run("zombie", func() {
		s.SetupTest()
		req := testRequest()
		req.Limits.ZombieAfter = time.Minute
		s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
		s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).After(3 * time.Second)
		s.expectRelease(1)
		s.heartbeatAt(61*time.Second, Heartbeat{TokensUsed: 5})

		s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
		spec := s.result()
		s.Equal(int64(5), spec.TokenBudget.Used)
		s.Equal(AlertCritical, spec.Heartbeat.Alert)
		s.Contains(spec.Cleanup.Reason, "no heartbeat")
	})
	s.Run("cancel", func() {
		s.SetupTest()
		s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
		s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).After(3 * time.Second).Once()
		s.expectRelease(1)
		s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 10*time.Second)
		s.heartbeatAt(11*time.Second, Heartbeat{TokensUsed: 6, Status: HeartbeatIdle})

		s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
		spec := s.result()
		s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
		s.Equal(int64(6), spec.TokenBudget.Used)
	})
}

// A heartbeat that names an earlier process of the worker (buffered, or
// late from the process a restart replaced) is rejected, not counted for
// the current one; one naming the current process, or none, is applied.
func (s *lifecycleSuite) TestHeartbeatOfAnEarlierProcessIsRejected() {
	current := testProcess
	current.Token = "token-of-the-current-start"
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(current, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 143}, nil).After(time.Hour)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	s.heartbeatAt(5*time.Second, Heartbeat{TokensUsed: 7, Process: activities.ProcessTag(current.Token)})
	s.heartbeatAt(6*time.Second, Heartbeat{TokensUsed: 9, Process: "not-a-name"})
	s.heartbeatAt(7*time.Second, Heartbeat{TokensUsed: 9})
	s.heartbeatAt(8*time.Second, Heartbeat{TokensUsed: 500, Process: activities.ProcessTag("token-of-an-earlier-start")})
	s.updateAt(10*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(int64(2), spec.Heartbeat.Rejected)
	s.Contains(spec.Heartbeat.LastRejected, "an earlier one of this worker")
	s.Equal(int64(2), spec.Heartbeat.Count)
	s.Equal(int64(9), spec.TokenBudget.Used)
}

func (s *lifecycleSuite) TestInvalidHeartbeatIsCountedAndIgnored() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	s.heartbeatAt(5*time.Second, Heartbeat{TokensUsed: -5})
	s.heartbeatAt(6*time.Second, Heartbeat{HealthScore: intp(101)})
	s.heartbeatAt(7*time.Second, Heartbeat{Status: "sleeping"})
	s.heartbeatAt(8*time.Second, Heartbeat{TokensUsed: 7})
	s.updateAt(10*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal(int64(3), spec.Heartbeat.Rejected)
	s.Equal(int64(1), spec.Heartbeat.Count)
	s.Equal(int64(7), spec.TokenBudget.Used)
}

// TestUndecodablePayloadsDoNotStallTheLifecycle: payloads no heartbeat can
// be decoded from are counted and ignored, and the zombie deadline still
// runs from the last good heartbeat — the SDK's own decoding would have
// blocked the workflow waiting for a good one.
func (s *lifecycleSuite) TestUndecodablePayloadsDoNotStallTheLifecycle() {
	req := testRequest()
	req.Limits = Limits{ZombieAfter: 30 * time.Second}
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137, Signal: "SIGKILL"})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)
	raw := func(encoding, data string) converter.RawValue {
		return converter.NewRawValue(&commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte(encoding)}, Data: []byte(data)})
	}
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 10})
	for i, payload := range []converter.RawValue{
		raw("json/plain", `{"message": "`+strings.Repeat("x", MaxSignalBytes)+`"}`),
		raw("binary/plain", "\x00\x01"),
		raw("no/such-encoding", "{}"),
		raw("json/plain", "null"),
		raw("json/plain", `{"tokens_used": "lots"}`),
		raw("json/plain", `{"tokens_used": 1e30}`),
		raw("json/plain", `{"tokens_used": `),
	} {
		s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(SignalHeartbeat, payload) }, 11*time.Second+time.Duration(i)*time.Second/2)
	}
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(SignalSample, raw("json/plain", "[")) }, 20*time.Second)
	// Nothing good follows the last bad payload: the deadline must still fire.
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(int64(8), spec.Heartbeat.Rejected)
		s.Contains(spec.Heartbeat.LastRejected, "resource-sample: undecodable payload")
	}, 21*time.Second)

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.InDelta((40 * time.Second).Seconds(), spec.Transitions[2].At.Sub(start).Seconds(), 1, "30s after the last good heartbeat")
	s.Equal(int64(1), spec.Heartbeat.Count)
	s.Equal(int64(8), spec.Heartbeat.Rejected)
	s.Equal(int64(10), spec.TokenBudget.Used)
}

func (s *lifecycleSuite) TestInvalidStopRequestsAreRejected() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	var rejected []string
	reject := func(err error) { rejected = append(rejected, err.Error()) }
	s.updateAt(5*time.Second, UpdateShutdown, ShutdownRequest{Grace: -time.Second}, reject)
	s.updateAt(6*time.Second, UpdateShutdown, ShutdownRequest{Grace: 2 * time.Hour}, reject)
	s.env.RegisterDelayedCallback(func() { s.Equal(StatusRunning, s.status().Status) }, 7*time.Second)
	s.updateAt(10*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	s.result()
	s.Len(rejected, 2)
	s.Contains(rejected[0], "grace -1s is not in 0..1h")
}

func (s *lifecycleSuite) TestCancelCompensatesOnDisconnectedContext() {
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 10*time.Second)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.Equal("lifecycle cancelled", spec.Cleanup.Reason)
	s.Equal(int64(10000), spec.Cleanup.Refunded)
}

func (s *lifecycleSuite) TestTimeLimit() {
	req := testRequest()
	req.Timeout = 10 * time.Minute
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 143})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	for i := 1; i <= 12; i++ {
		s.heartbeatAt(time.Duration(i)*time.Minute, Heartbeat{TokensUsed: int64(i)})
	}

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Equal("exceeded its time limit of 10m0s", spec.Cleanup.Reason)
}

func (s *lifecycleSuite) TestInvalidRequestFailsBeforeAnything() {
	req := testRequest()
	req.WorkerID = "worker-x-../../etc"
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	s.True(s.env.IsWorkflowCompleted())
	s.ErrorContains(s.env.GetWorkflowError(), "invalid spawn request")
}

// TestContinueAsNewKeepsEveryHeartbeat sends more heartbeats at once than a
// run may take: the run must apply all of them before continuing as new.
func (s *lifecycleSuite) TestContinueAsNewKeepsEveryHeartbeat() {
	req := testRequest()
	req.Limits.MaxSignalsPerRun = 5
	// The heartbeats arrive while the reservation runs, so all twelve are
	// buffered when supervision starts.
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).After(5 * time.Second).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	// The run may continue as new before its watch even starts.
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{}, nil).After(time.Hour).Maybe()
	s.env.RegisterDelayedCallback(func() {
		for i := 1; i <= 12; i++ {
			s.env.SignalWorkflow(SignalHeartbeat, Heartbeat{TokensUsed: int64(i * 10)})
		}
	}, time.Second)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	s.True(s.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	s.Require().True(errors.As(s.env.GetWorkflowError(), &can), "got %v", s.env.GetWorkflowError())
	var next LifecycleState
	s.Require().NoError(converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	s.Equal(int64(12), next.Spec.Heartbeat.Count)
	s.Equal(int64(120), next.Spec.TokenBudget.Used)
	s.Equal(1, next.Runs)
	s.Zero(next.SignalsThisRun)
	s.True(next.Reserved)
	s.Equal(StatusRunning, next.Spec.Status)
	s.Equal(testProcess, *next.Process)
	// The limits resolved at the first run go on with the lifecycle.
	s.Require().NotNil(next.Limits)
	s.Equal(req.Limits.WithDefaults(), *next.Limits)
}

// TestResolveLimitsOfLaterRuns: a run that continued as new with limits
// uses them, not today's defaults; one handed over by the first release
// (no limits in its state) uses that release's defaults.
func TestResolveLimitsOfLaterRuns(t *testing.T) {
	saved := defaultLimits
	t.Cleanup(func() { defaultLimits = saved })
	defaultLimits.ZombieAfter = time.Second
	handed := Limits{ZombieAfter: time.Hour}.withDefaults(limitsV1)
	for _, c := range []struct {
		name string
		st   LifecycleState
		want Limits
	}{
		{"handed over", LifecycleState{Spec: WorkerSpec{Status: StatusRunning}, Limits: &handed}, handed},
		{"from the first release", LifecycleState{Spec: WorkerSpec{Status: StatusRunning}}, limitsV1},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &lifecycle{st: c.st}
			w.resolveLimits(nil) // no workflow call on these paths
			require.Equal(t, c.want, w.limits)
			require.Equal(t, c.want, *w.st.Limits)
		})
	}
}

// TestResumedRunDoesNotSpawnAgain runs the state a continue-as-new hands
// over: it must supervise the same process and refund the same lease.
func (s *lifecycleSuite) TestResumedRunDoesNotSpawnAgain() {
	req := testRequest()
	req.Limits = Limits{ZombieAfter: 30 * time.Second}
	started := s.env.Now().UTC()
	st := NewLifecycleState(req)
	st.Reserved = true
	st.Process = &testProcess
	st.Runs = 1
	st.Spec = WorkerSpec{WorkerID: req.WorkerID, WorkerType: req.WorkerType, Status: StatusRunning, StartedAt: &started, Host: "host-a",
		TokenBudget: TokenBudget{Allocated: req.Budget}, Heartbeat: HeartbeatInfo{HealthScore: 100, Count: 1000}}
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.MatchedBy(func(in activities.WatchInput) bool { return reflect.DeepEqual(in.Process, testProcess) })).Return(activities.ExitStatus{ExitCode: 137}, nil).After(time.Hour)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)

	s.env.ExecuteWorkflow(WorkerLifecycle, st)
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.Contains(spec.Cleanup.Reason, "no heartbeat")
	s.Equal(int64(1000), spec.Heartbeat.Count)
}

func TestSpawnRequestValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*SpawnRequest)
		want   string
	}{
		"task id without task- prefix": {func(r *SpawnRequest) { r.TaskID = "job-1" }, `task id "job-1"`},
		"unknown priority":             {func(r *SpawnRequest) { r.Priority = "urgent" }, `priority "urgent"`},
		"repo without owner":           {func(r *SpawnRequest) { r.Repo = "repo" }, `repo "repo" must be owner/name`},
		"budget zero":                  {func(r *SpawnRequest) { r.Budget = 0 }, "budget 0 is not in 1..200000"},
		"budget too large":             {func(r *SpawnRequest) { r.Budget = 200001 }, "budget 200001 is not in 1..200000"},
		"worker id with path":          {func(r *SpawnRequest) { r.WorkerID = "worker-a-../x" }, "worker id"},
		"worker id with shell":         {func(r *SpawnRequest) { r.WorkerID = "worker-a-1;rm" }, "worker id"},
		"negative zombie limit":        {func(r *SpawnRequest) { r.Limits.ZombieAfter = -1 }, "zombie limit"},
		"warning after zombie":         {func(r *SpawnRequest) { r.Limits.HeartbeatWarning = time.Hour }, "heartbeat limits must grow"},
	} {
		t.Run(name, func(t *testing.T) {
			r := testRequest()
			tc.mutate(&r)
			require.ErrorContains(t, r.Validate(), tc.want)
		})
	}
	require.NoError(t, testRequest().Validate())

	// Every bad field is named, not just the first.
	r := testRequest()
	r.TaskID, r.Priority, r.Budget = "x", "y", -1
	err := r.Validate()
	for _, want := range []string{"task id", "priority", "budget"} {
		require.ErrorContains(t, err, want)
	}
}

func TestShortZombieLimitPullsAlertsBelowIt(t *testing.T) {
	l := Limits{ZombieAfter: 5 * time.Second}.WithDefaults()
	require.Equal(t, time.Second, l.HeartbeatWarning)
	require.Equal(t, 2*time.Second, l.HeartbeatCritical)
	d := Limits{}.WithDefaults()
	require.Equal(t, []time.Duration{60 * time.Second, 120 * time.Second, 300 * time.Second, 5 * time.Minute, 5 * time.Second},
		[]time.Duration{d.HeartbeatWarning, d.HeartbeatCritical, d.ZombieAfter, d.IdleAfter, d.ShutdownGrace})
}

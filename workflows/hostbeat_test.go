package workflows

import (
	"context"
	"errors"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// hostRequest is a request with short clocks, for the heartbeats a host
// relays (VersionHostHeartbeat).
func hostRequest() SpawnRequest {
	req := testRequest()
	req.Limits = Limits{HeartbeatWarning: 10 * time.Second, HeartbeatCritical: 20 * time.Second, ZombieAfter: 30 * time.Second}
	return req
}

// expectWatch starts a process whose watch ends with exit after runFor and
// keeps what the lifecycle asked of it.
func (s *lifecycleSuite) expectWatch(runFor time.Duration, exit activities.ExitStatus, got *activities.WatchInput) {
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(testProcess, nil).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*got = args.Get(1).(activities.WatchInput)
	}).Return(exit, nil).After(runFor)
}

// expectZombieKill runs a process that lives until the lifecycle kills it
// as a zombie, and refunds.
func (s *lifecycleSuite) expectZombieKill() {
	var in activities.WatchInput
	s.expectWatch(time.Hour, activities.ExitStatus{ExitCode: 137, Signal: "SIGKILL"}, &in)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)
}

func (s *lifecycleSuite) TestRelayedHeartbeatCountsFromWhenTheHostGotIt() {
	var in activities.WatchInput
	s.expectWatch(time.Hour, activities.ExitStatus{ExitCode: 143, Signal: "SIGTERM"}, &in)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	var start time.Time
	s.heartbeatAt(20*time.Second, Heartbeat{TokensUsed: 10, Path: PathHost, Age: 5 * time.Second})
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Require().NotNil(spec.Heartbeat.LastSeen)
		s.Equal(start.Add(15*time.Second).UTC(), spec.Heartbeat.LastSeen.UTC(), "20 s less the 5 s the host held it")
		s.Equal(PathHost, spec.Heartbeat.Path)
		s.Equal(int64(10), spec.TokenBudget.Used)
	}, 21*time.Second)
	// A relay older than what the lifecycle has never moves it back.
	s.heartbeatAt(22*time.Second, Heartbeat{TokensUsed: 11})
	s.heartbeatAt(23*time.Second, Heartbeat{TokensUsed: 12, Path: PathHost, Age: 10 * time.Second})
	// A relay of an older heartbeat (a superseded watch's) takes no tokens
	// back: they are a running total of the process.
	s.heartbeatAt(23500*time.Millisecond, Heartbeat{TokensUsed: 9, Path: PathHost, Age: 12 * time.Second})
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(start.Add(22*time.Second).UTC(), spec.Heartbeat.LastSeen.UTC())
		s.Equal(int64(12), spec.TokenBudget.Used)
		s.Equal(int64(2), spec.Heartbeat.Count, "relays older than the signal count only their tokens")
	}, 24*time.Second)
	s.updateAt(25*time.Second, UpdateShutdown, ShutdownRequest{}, nil)

	start = s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
}

// TestHostReportsTheSilence: once the host relays, the lifecycle's own
// timer waits a keepalive interval more than the zombie limit, and the
// host's report of the agent's silence makes the zombie at the limit.
func (s *lifecycleSuite) TestHostReportsTheSilence() {
	s.expectZombieKill()
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 10, Path: PathHost})
	// The relay every zombie limit keeps it alive past the limit...
	s.heartbeatAt(39*time.Second, Heartbeat{TokensUsed: 10, Path: PathHost, Age: 4 * time.Second})
	s.env.RegisterDelayedCallback(func() { s.Equal(StatusRunning, s.status().Status) }, 66*time.Second)
	// ...until the host says the agent has been silent since 35 s, with
	// the last heartbeat it had, which it had not relayed.
	s.heartbeatAt(67*time.Second, Heartbeat{TokensUsed: 15, Message: "last", Path: PathHost, Age: 32 * time.Second})

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.InDelta(67, spec.Transitions[2].At.Sub(start).Seconds(), 1)
	s.Contains(spec.Cleanup.Reason, "judged by its host")
	s.Equal(int64(15), spec.TokenBudget.Used, "what the silent agent said last is kept")
	s.Equal("last", spec.Heartbeat.Message)
	s.Equal(start.Add(35*time.Second).UTC(), spec.Heartbeat.LastSeen.UTC())
}

// TestHostBackstop: a host that stops relaying (its watch is stuck, the
// server far behind) does not keep a worker alive on its own word: when
// the lifecycle's timer passes one keepalive interval after the zombie
// limit, it asks the host what it holds. A recent heartbeat keeps the
// agent alive (a late relay must delay a zombie, not make one); then the
// host holds nothing recent, and the worker is a zombie.
func (s *lifecycleSuite) TestHostBackstop() {
	s.expectZombieKill()
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 10, Path: PathHost})
	var asked []time.Duration
	start := s.env.Now()
	s.env.OnActivity(hostActs.HeldHeartbeat, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.HeldInput) (activities.HeldResult, error) {
			asked = append(asked, s.env.Now().Sub(start))
			s.Equal(activities.ProcessTag(testProcess.Token), in.Process)
			if len(asked) == 1 {
				return activities.HeldResult{Heartbeat: &activities.HostHeartbeat{TokensUsed: 40, Message: "alive"}, Age: 5 * time.Second}, nil
			}
			return activities.HeldResult{Heartbeat: &activities.HostHeartbeat{TokensUsed: 40}, Age: 40 * time.Second}, nil
		})

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.Require().Len(asked, 2)
	s.InDelta(70, asked[0].Seconds(), 1, "asked at the backstop: 10 s + the zombie limit + the host's grace")
	// The held heartbeat counts from 65 s: the next backstop at 125 s.
	s.InDelta(125, asked[1].Seconds(), 1)
	s.InDelta(125, spec.Transitions[2].At.Sub(start).Seconds(), 1)
	s.Contains(spec.Cleanup.Reason, "judged by its host")
	s.Equal(int64(40), spec.TokenBudget.Used)
}

// TestHostThatDoesNotAnswer: a backstop whose host does not answer (its
// worker program is stuck) makes the zombie, and says so.
func (s *lifecycleSuite) TestHostThatDoesNotAnswer() {
	s.expectZombieKill()
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 10, Path: PathHost})
	s.env.OnActivity(hostActs.HeldHeartbeat, mock.Anything, mock.Anything).Return(activities.HeldResult{}, errors.New("no worker program polls")).Once()

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.InDelta(70, spec.Transitions[2].At.Sub(start).Seconds(), 1)
	s.Contains(spec.Cleanup.Reason, "its host relayed none nor answered")
}

// TestSignalAfterRelaysLeavesTheHostJudge: a master's heartbeat by signal
// beside an agent's through its host moves the last heartbeat but leaves
// the silence to the host, whose relays keep coming.
func (s *lifecycleSuite) TestSignalAfterRelaysLeavesTheHostJudge() {
	s.expectZombieKill()
	s.heartbeatAt(5*time.Second, Heartbeat{TokensUsed: 10, Path: PathHost})
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 10})

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.InDelta(70, spec.Transitions[2].At.Sub(start).Seconds(), 1)
	s.Equal(PathSignal, spec.Heartbeat.Path)
	// Asked at the backstop, the host (here no worker program's board)
	// holds nothing.
	s.Contains(spec.Cleanup.Reason, "judged by its host")
}

// TestLastWordComesWithTheEnd: the agent's last heartbeat, which its host
// held when the process ended, counts for the tokens the refund reads.
func (s *lifecycleSuite) TestLastWordComesWithTheEnd() {
	var in activities.WatchInput
	s.expectWatch(time.Minute, activities.ExitStatus{ExitCode: 0,
		LastHeartbeat: &activities.HostHeartbeat{TokensUsed: 700, Message: "done", Count: 9}}, &in)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Once()
	var spent int64 = -1
	if leanMax() == workflow.DefaultVersion {
		s.env.OnSignalExternalWorkflow(mock.Anything, LedgerWorkflowID, "", SignalRelease, mock.Anything).Return(
			func(_, _, _ string, arg any) error { spent = arg.(ReleaseRequest).Spent; return nil }).Once()
	} else {
		s.env.OnActivity(sharedActs.ReleaseBySignal, mock.Anything, mock.Anything).Return(
			func(_ context.Context, r activities.ReleaseInput) error { spent = r.Spent; return nil }).Once()
	}
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 100, Path: PathHost})

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Equal(int64(700), spec.TokenBudget.Used)
	s.Equal("done", spec.Heartbeat.Message)
	s.Equal(int64(700), spent, "the ledger is told what was spent")
	s.True(in.Relay, "the watch is asked to hold the agent's heartbeats")
	s.Equal(30*time.Second, in.ZombieAfter)
	s.Equal(int64(10000), in.TokenBudget)
}

// TestBeforeHostHeartbeatsRelaysAreSignals: a lifecycle of a release
// before VersionHostHeartbeat asks its watch for no relay, and takes a
// heartbeat that says it was relayed as any other.
func (s *lifecycleSuite) TestBeforeHostHeartbeatsRelaysAreSignals() {
	s.beforeLean()
	s.env.OnGetVersion(VersionHostHeartbeat, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	var in activities.WatchInput
	s.expectWatch(20*time.Second, activities.ExitStatus{ExitCode: 0}, &in)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Once()
	s.expectRelease(1)
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 10, Path: PathHost, Age: 5 * time.Second})
	start := s.env.Now()
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(start.Add(10*time.Second).UTC(), spec.Heartbeat.LastSeen.UTC(), "counted from its arrival, its age ignored")
		s.Empty(spec.Heartbeat.Path)
	}, 11*time.Second)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.False(in.Relay, "the watch is asked for no relay")
	s.NotEmpty(in.WorkerID, "the watch ran and was asked")
}

// TestResumedRunKeepsTheHostBackstop: a run that continued as new goes on
// with the same process, whose host relays a keepalive once per zombie
// limit, so the lifecycle's last heartbeat may be nearly that old; the new
// run must keep the backstop, not make a zombie of a live agent.
func (s *lifecycleSuite) TestResumedRunKeepsTheHostBackstop() {
	req := hostRequest()
	now := s.env.Now().UTC()
	started, last := now.Add(-time.Hour), now.Add(-20*time.Second)
	st := NewLifecycleState(req)
	st.Reserved, st.Process, st.Runs, st.HostRelays = true, &testProcess, 1, true
	st.Spec = WorkerSpec{WorkerID: req.WorkerID, WorkerType: req.WorkerType, Status: StatusRunning, StartedAt: &started, Host: "host-a",
		TokenBudget: TokenBudget{Allocated: req.Budget}, Heartbeat: HeartbeatInfo{HealthScore: 100, Count: 10, LastSeen: &last, Path: PathHost}}
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 137}, nil).After(time.Hour)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)
	s.env.RegisterDelayedCallback(func() {
		s.Equal(StatusRunning, s.status().Status, "30 s after the last heartbeat, 10 after the new run began")
	}, 11*time.Second)
	s.heartbeatAt(25*time.Second, Heartbeat{TokensUsed: 10, Path: PathHost})

	s.env.ExecuteWorkflow(WorkerLifecycle, st)
	spec := s.result()
	s.Equal(StatusCleanedUp, spec.Status)
	s.InDelta(85, spec.Transitions[len(spec.Transitions)-3].At.Sub(now).Seconds(), 1, "the backstop from the keepalive at 25 s: %+v", spec.Transitions)
}

// TestHostGraceCoversTheKeepalive: the lifecycle waits for a relay at least
// as long as the host waits between keepalives.
func (s *lifecycleSuite) TestHostGraceCoversTheKeepalive() {
	for _, z := range []time.Duration{time.Second, 30 * time.Second, DefaultZombieAfter, time.Hour} {
		s.GreaterOrEqual(hostGrace(z), activities.KeepaliveEvery(z), "zombie limit %s", z)
	}
}

// TestStaleRelayAfterASignalChangesNothingButTokens: the agent signalled
// while its host's socket did not answer; the host then relays what it
// held from before. It must not report a silence (a false zombie at the
// zombie limit after the last signal, without the backstop) nor take back
// the signalled status.
func (s *lifecycleSuite) TestStaleRelayAfterASignalChangesNothingButTokens() {
	s.expectZombieKill()
	s.heartbeatAt(5*time.Second, Heartbeat{TokensUsed: 10, Status: HeartbeatBusy, Path: PathHost})
	s.heartbeatAt(40*time.Second, Heartbeat{TokensUsed: 20, Status: HeartbeatBusy})
	// Held by the host since 5 s, relayed at 41 s: silent by its age.
	s.heartbeatAt(41*time.Second, Heartbeat{TokensUsed: 25, Status: HeartbeatIdle, Path: PathHost, Age: 36 * time.Second})
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(StatusRunning, spec.Status, "neither idle nor a zombie")
		s.Equal(int64(25), spec.TokenBudget.Used)
	}, 42*time.Second)
	s.heartbeatAt(60*time.Second, Heartbeat{TokensUsed: 26, Path: PathHost})

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	// The relay at 60 s: the backstop a zombie limit and a grace later.
	s.InDelta(120, spec.Transitions[len(spec.Transitions)-3].At.Sub(start).Seconds(), 1, "%+v", spec.Transitions)
}

// relayedKeepalives runs a lifecycle whose host relays a keepalive every
// zombie limit for 20 limits, then shuts it down, and returns how many
// deadline timers fired meanwhile.
func (s *lifecycleSuite) relayedKeepalives() (fired int) {
	var in activities.WatchInput
	s.expectWatch(time.Hour, activities.ExitStatus{ExitCode: 143, Signal: "SIGTERM"}, &in)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Once()
	s.expectRelease(1)
	req := hostRequest()
	const cycles = 20
	for i := 1; i <= cycles; i++ {
		// The first well within the zombie limit, the rest a limit apart.
		s.heartbeatAt(10*time.Second+time.Duration(i-1)*req.Limits.ZombieAfter, Heartbeat{TokensUsed: int64(i), Path: PathHost, Age: time.Second})
	}
	end := cycles*req.Limits.ZombieAfter + 5*time.Second
	// The stop's wait for the watch's report is a timer too, not counted.
	armed := map[string]time.Duration{}
	s.env.SetOnTimerScheduledListener(func(id string, d time.Duration) { armed[id] = d })
	s.env.SetOnTimerFiredListener(func(id string) {
		if armed[id] != stopReportWait {
			fired++
		}
	})
	s.updateAt(end, UpdateShutdown, ShutdownRequest{}, nil)
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Equal(int64(cycles), spec.Heartbeat.Count)
	return fired
}

// TestRelayArmsTheBackstopAgain (issue 16): a keepalive the host relays
// arms the lifecycle's backstop again in its own workflow task, so that
// while keepalives come the timer never fires: one workflow task per
// zombie limit, not two.
func (s *lifecycleSuite) TestRelayArmsTheBackstopAgain() {
	s.Zero(s.relayedKeepalives(), "deadline timers fired while the host relayed a keepalive every zombie limit")
}

// TestBeforeRelayRearmTheBackstopFired: a run that recorded no
// VersionRelayRearm arms the timer again only when it fires, as it ran.
func (s *lifecycleSuite) TestBeforeRelayRearmTheBackstopFired() {
	s.env.OnGetVersion(VersionRelayRearm, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	s.GreaterOrEqual(s.relayedKeepalives(), 9, "the backstop (two zombie limits) fired about once per keepalive")
}

// TestBackstopAsksAHostThatHasNotRelayed: the host holds its agent's
// heartbeats from the process's start, before its watch relays any (a
// watch late behind an overloaded server). The backstop at the zombie
// limit therefore asks the host even when it has relayed nothing
// (VersionAskHostFirst): what it holds keeps the agent alive, and counts
// from when the host got it.
func (s *lifecycleSuite) TestBackstopAsksAHostThatHasNotRelayed() {
	var in activities.WatchInput
	s.expectWatch(2*time.Minute, activities.ExitStatus{ExitCode: 0}, &in)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Once()
	s.expectRelease(1)
	var asked []time.Duration
	start := s.env.Now()
	s.env.OnActivity(hostActs.HeldHeartbeat, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.HeldInput) (activities.HeldResult, error) {
			asked = append(asked, s.env.Now().Sub(start))
			s.Equal(activities.ProcessTag(testProcess.Token), in.Process)
			return activities.HeldResult{Heartbeat: &activities.HostHeartbeat{TokensUsed: 40, Message: "held"}, Age: 5 * time.Second}, nil
		})
	s.env.RegisterDelayedCallback(func() {
		spec := s.status()
		s.Equal(StatusRunning, spec.Status, "alive on its host's word")
		s.Equal(int64(40), spec.TokenBudget.Used)
		s.Equal(PathHost, spec.Heartbeat.Path)
		s.Equal(start.Add(25*time.Second).UTC(), spec.Heartbeat.LastSeen.UTC(), "counted from when the host got it")
	}, 31*time.Second)

	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Equal(StatusCompleted, spec.Status)
	s.Require().Len(asked, 2)
	s.InDelta(30, asked[0].Seconds(), 1, "asked at the zombie limit: no relay, no grace")
	s.InDelta(85, asked[1].Seconds(), 1, "from 25 s, now that its host answers for it: the zombie limit and the host's grace")
}

// TestHostThatHoldsNothingLeavesTheZombieTheLifecycles: asked first, a
// host that holds no heartbeat of the agent (it heartbeats by signal, or
// not at all) does not judge it: the zombie is the lifecycle's own, at the
// zombie limit.
func (s *lifecycleSuite) TestHostThatHoldsNothingLeavesTheZombieTheLifecycles() {
	s.expectZombieKill()
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 10})
	asked := 0
	s.env.OnActivity(hostActs.HeldHeartbeat, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.HeldInput) (activities.HeldResult, error) {
			asked++
			return activities.HeldResult{}, nil
		})

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Equal(1, asked)
	s.Equal([]Status{StatusPending, StatusRunning, StatusFailed, StatusZombie, StatusCleanedUp}, statuses(spec))
	s.InDelta(40, spec.Transitions[2].At.Sub(start).Seconds(), 1)
	s.Equal("no heartbeat for 30s (zombie limit 30s), by signal or through its host", spec.Cleanup.Reason)
	s.NotContains(spec.Cleanup.Reason, "judged by its host")
}

// TestAskedFirstHostThatDoesNotAnswer: a host asked first that does not
// answer (its worker program is gone) makes the zombie, and says so.
func (s *lifecycleSuite) TestAskedFirstHostThatDoesNotAnswer() {
	s.expectZombieKill()
	s.env.OnActivity(hostActs.HeldHeartbeat, mock.Anything, mock.Anything).Return(activities.HeldResult{}, errors.New("no worker program polls")).Once()

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.InDelta(30, spec.Transitions[2].At.Sub(start).Seconds(), 1)
	s.Contains(spec.Cleanup.Reason, "its host did not answer for it")
}

// TestBeforeAskHostFirstNoRelayNoQuestion: a run recorded before
// VersionAskHostFirst makes the zombie at the zombie limit without asking
// a host that has not relayed, as it ran.
func (s *lifecycleSuite) TestBeforeAskHostFirstNoRelayNoQuestion() {
	s.env.OnGetVersion(VersionAskHostFirst, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	s.expectZombieKill()
	asked := 0
	s.env.OnActivity(hostActs.HeldHeartbeat, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.HeldInput) (activities.HeldResult, error) {
			asked++
			return activities.HeldResult{}, nil
		}).Maybe()

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Zero(asked)
	s.InDelta(30, spec.Transitions[2].At.Sub(start).Seconds(), 1)
	s.Equal("no heartbeat for 30s (zombie limit 30s)", spec.Cleanup.Reason)
}

// TestLeanRunAsksItsHostToHoldBeats: a lean run, which takes host
// heartbeats, asks the host to hold its agent's heartbeats from the start
// for as long as it may wait for its watch and then its backstop; a run of
// an earlier release's path asks for none, since it may not ask its host.
func (s *lifecycleSuite) TestLeanRunAsksItsHostToHoldBeats() {
	var in activities.StartInput
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(
		func(_ context.Context, got activities.StartInput) (activities.ProcessInfo, error) {
			in = got
			return testProcess, nil
		}).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 0}, nil).After(time.Second)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Maybe()
	s.expectRelease(1)
	req := hostRequest()
	req.Limits.HostLossAfter = 45 * time.Second
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	s.Equal(StatusCompleted, s.result().Status)
	s.Equal(75*time.Second, in.HoldBeatsFor, "the host-loss limit and the zombie limit")
}

func (s *lifecycleSuite) TestRunBeforeLeanAsksItsHostToHoldNone() {
	s.beforeLean()
	var in activities.StartInput
	s.env.OnActivity(sharedActs.ReserveBudget, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
	s.env.OnActivity(hostActs.StartProcess, mock.Anything, mock.Anything).Return(
		func(_ context.Context, got activities.StartInput) (activities.ProcessInfo, error) {
			in = got
			return testProcess, nil
		}).Once()
	s.env.OnActivity(hostActs.WatchProcess, mock.Anything, mock.Anything).Return(activities.ExitStatus{ExitCode: 0}, nil).After(time.Second)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{AlreadyGone: true}, nil).Maybe()
	s.expectRelease(1)
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	s.Equal(StatusCompleted, s.result().Status)
	s.Equal(testRequest().WorkerID, in.WorkerID, "the start was asked")
	s.Zero(in.HoldBeatsFor)
}

// TestHostAskedFirstThenRelayingIsJudgedAsRelaying: once the host's first
// answer made it the agent's relay, a later backstop that finds nothing
// held reads as a relaying host's silence (judged by its host), not as an
// agent that never used its host.
func (s *lifecycleSuite) TestHostAskedFirstThenRelayingIsJudgedAsRelaying() {
	s.expectZombieKill()
	asked := 0
	s.env.OnActivity(hostActs.HeldHeartbeat, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.HeldInput) (activities.HeldResult, error) {
			asked++
			if asked == 1 {
				return activities.HeldResult{Heartbeat: &activities.HostHeartbeat{TokensUsed: 40}, Age: 5 * time.Second}, nil
			}
			return activities.HeldResult{}, nil
		})

	start := s.env.Now()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(hostRequest()))
	spec := s.result()
	s.Equal(2, asked)
	s.InDelta(85, spec.Transitions[2].At.Sub(start).Seconds(), 1)
	s.Contains(spec.Cleanup.Reason, "judged by its host")
}

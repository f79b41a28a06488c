package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

func ev(id string, kind EventKind) Event {
	return Event{ID: id, Kind: kind, WorkerID: "worker-fix-" + id, Message: "m " + id}
}

// TestFleetEventsKeepsOrderDropsRepeatsAndPages: events get sequence
// numbers in order; a repeated ID (a retried RecordEvent) or an unknown
// kind is dropped; a query pages from a sequence number; the log continues
// as new with what it keeps.
func TestFleetEventsKeepsOrderDropsRepeatsAndPages(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	query := func(q EventsQuery) EventsPage {
		v, err := env.QueryWorkflow(QueryEvents, q)
		require.NoError(t, err)
		var p EventsPage
		require.NoError(t, v.Get(&p))
		return p
	}
	var all, after1, limited EventsPage
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalEvent, ev("a", EventZombie))
		env.SignalWorkflow(SignalEvent, ev("a", EventZombie))
		env.SignalWorkflow(SignalEvent, ev("b", EventKind("party")))
		env.SignalWorkflow(SignalEvent, Event{Kind: EventHostLost})
		env.SignalWorkflow(SignalEvent, ev("c", EventBudgetAlert))
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		all, after1, limited = query(EventsQuery{}), query(EventsQuery{After: 1}), query(EventsQuery{Limit: 1})
	}, 2*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalEvent, ev("d", EventWorkerFailed)) }, 3*time.Second)

	defer func(n int) { eventsPerRun = n }(eventsPerRun)
	eventsPerRun = 6
	env.ExecuteWorkflow(FleetEvents, EventsState{})
	require.Equal(t, []string{"a", "c"}, ids(all.Events))
	require.Equal(t, []int64{1, 2}, []int64{all.Events[0].Seq, all.Events[1].Seq})
	require.Equal(t, int64(2), all.Next)
	require.False(t, all.Dropped)
	require.Equal(t, []string{"c"}, ids(after1.Events))
	require.Equal(t, []string{"a"}, ids(limited.Events))
	require.Equal(t, int64(1), limited.Next)

	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can, "the run's signals reached its bound")
	var next EventsState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, []string{"a", "c", "d"}, ids(next.Events))
	require.Equal(t, int64(4), next.Next)
}

// TestFleetEventsKeepsTheLatest: past eventsKept the oldest are dropped,
// and a reader behind them is told.
func TestFleetEventsKeepsTheLatest(t *testing.T) {
	var st EventsState
	st.Next = 1
	for i := 0; i < eventsKept+5; i++ {
		st.append(ev(string(rune('a'+i%26))+time.Duration(i).String(), EventZombie))
	}
	require.Len(t, st.Events, eventsKept)
	require.Equal(t, int64(6), st.Events[0].Seq)
	p := st.page(EventsQuery{After: 2, Limit: 3})
	require.True(t, p.Dropped)
	require.Equal(t, []int64{6, 7, 8}, []int64{p.Events[0].Seq, p.Events[1].Seq, p.Events[2].Seq})
	require.False(t, st.page(EventsQuery{After: 5}).Dropped)
}

func ids(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID[len(e.ID)-1:])
	}
	return out
}

// recordEvents captures the events a workflow raises (RecordEvent).
func recordEvents(env *testsuite.TestWorkflowEnvironment) func() []Event {
	var mu sync.Mutex
	var got []Event
	env.OnActivity(sharedActs.RecordEvent, mock.Anything, mock.Anything).Return(func(_ context.Context, e activities.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
		return nil
	}).Maybe()
	return func() []Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]Event(nil), got...)
	}
}

// TestZombieRaisesOneEvent: a worker that stops heartbeating raises one
// zombie event and, not restarted, one worker_failed; each with the run's
// ID, its kind and count (the idempotency key).
func (s *lifecycleSuite) TestZombieRaisesOneEvent() {
	req, got := s.silentWorkerEvents()
	s.Require().Len(got, 2)
	s.Equal(EventZombie, got[0].Kind)
	s.Equal(req.WorkerID, got[0].WorkerID)
	s.Equal(req.WorkerType, got[0].WorkerType)
	s.Equal("host-a", got[0].Host)
	s.Contains(got[0].Message, "no heartbeat for 30s")
	s.Regexp(`^[^/]+/[^/]+/zombie_detected/1$`, got[0].ID, "workflow ID, run ID, kind, count")
	s.Equal(EventWorkerFailed, got[1].Kind)
	s.Regexp(`/worker_failed/2$`, got[1].ID)
}

// TestFailedCleanupRaisesOneEventPerRun: a cleanup that fails twice raises
// one cleanup_failed, not one per try.
func (s *lifecycleSuite) TestFailedCleanupRaisesOneEventPerRun() {
	events := recordEvents(s.env)
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137})
	s.stopFailsFirst(3)
	s.expectRelease(1)
	s.updateAt(10*time.Second, UpdateKill, KillRequest{}, nil)
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	s.Equal(StatusCompleted, s.result().Status)
	var kinds []EventKind
	for _, e := range events() {
		kinds = append(kinds, e.Kind)
	}
	s.Equal([]EventKind{EventCleanupFailed}, kinds)
}

// TestHeldBackRaisesNoEvent: a worker program upgraded with --compat r7
// raises no event (r7 programs could not replay its marker).
func (s *lifecycleSuite) TestHeldBackRaisesNoEvent() {
	s.Require().NoError(SetCompat("r7"))
	s.T().Cleanup(func() { s.Require().NoError(SetCompat("")) })
	s.notLean = true
	_, got := s.silentWorkerEvents()
	s.Empty(got)
}

// silentWorkerEvents runs a worker that never heartbeats (a zombie after
// 30 s, not restarted) and returns its request and the events it raised.
func (s *lifecycleSuite) silentWorkerEvents() (SpawnRequest, []Event) {
	events := recordEvents(s.env)
	req := testRequest()
	req.Limits = Limits{ZombieAfter: 30 * time.Second}
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 137, Signal: "SIGKILL"})
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{Killed: true}, nil).Once()
	s.expectRelease(1)
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(req))
	s.Equal(StatusCleanedUp, s.result().Status)
	return req, events()
}

// TestBreakerRaisesAnEventWhenItOpens: the crash that opens a breaker
// raises breaker_opened, once; the crashes while open raise none.
func TestBreakerRaisesAnEventWhenItOpens(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	env.RegisterActivity(&activities.SharedActivities{})
	events := recordEvents(env)
	for i := 1; i <= BreakerFailures+2; i++ {
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow(UpdateRecordFailure, "", &testsuite.TestUpdateCallback{
				OnAccept: func() {}, OnReject: func(err error) { t.Error(err) }, OnComplete: func(any, error) {}},
				RecordFailureRequest{WorkerID: "worker-fix-a"})
		}, time.Duration(i)*time.Second)
	}
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow(RestartBreaker, BreakerState{WorkerType: "fix-worker"})
	got := events()
	require.Len(t, got, 1)
	require.Equal(t, EventBreakerOpened, got[0].Kind)
	require.Equal(t, "fix-worker", got[0].WorkerType)
	require.Contains(t, got[0].Message, "circuit breaker of fix-worker opened until")
}

// TestLedgerRaisesABudgetAlertOnce: the reservation that crosses the
// root's alert threshold raises one budget_alert, outside its decision.
func TestLedgerRaisesABudgetAlertOnce(t *testing.T) {
	h := newLedgerHarness(t)
	h.env.RegisterActivity(&activities.SharedActivities{})
	events := recordEvents(h.env)
	a := h.at(1*time.Second, UpdateReserve, reserve("worker-fix-a", "L1", 800))
	b := h.at(2*time.Second, UpdateReserve, reserve("worker-fix-b", "L2", 100))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 5*time.Second)
	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))
	require.NoError(t, a.rejected)
	require.NoError(t, b.rejected)
	got := events()
	require.Len(t, got, 1, "raised once, not again while it stays raised")
	require.Equal(t, EventBudgetAlert, got[0].Kind)
	require.Equal(t, PoolRoot, got[0].Pool)
	require.Contains(t, got[0].Message, "800 of 1000")
}

// TestAttentionStatusRaisesAnEventOnce: a heartbeat status that asks for a
// person is kept in the spec and raises attention_needed once per change;
// it counts as busy (an idle worker runs again), and busy clears it.
func (s *lifecycleSuite) TestAttentionStatusRaisesAnEventOnce() {
	events := recordEvents(s.env)
	s.expectStart(time.Hour, activities.ExitStatus{ExitCode: 0})
	s.expectRelease(1)
	s.heartbeatAt(10*time.Second, Heartbeat{TokensUsed: 1, Status: HeartbeatIdle})
	s.heartbeatAt(20*time.Second, Heartbeat{TokensUsed: 2, Status: HeartbeatAwaitingInput, Message: "which branch?"})
	s.heartbeatAt(30*time.Second, Heartbeat{TokensUsed: 3, Status: HeartbeatAwaitingInput})
	var waiting WorkerSpec
	s.env.RegisterDelayedCallback(func() { waiting = s.status() }, 35*time.Second)
	s.heartbeatAt(40*time.Second, Heartbeat{TokensUsed: 4, Status: HeartbeatBlocked})
	s.heartbeatAt(50*time.Second, Heartbeat{TokensUsed: 5, Status: HeartbeatBusy})
	var cleared WorkerSpec
	s.env.RegisterDelayedCallback(func() { cleared = s.status() }, 55*time.Second)
	s.updateAt(time.Minute, UpdateShutdown, ShutdownRequest{}, nil)
	s.env.OnActivity(hostActs.StopProcess, mock.Anything, mock.Anything).Return(activities.StopResult{}, nil).Maybe()
	s.env.ExecuteWorkflow(WorkerLifecycle, NewLifecycleState(testRequest()))
	s.Equal(StatusRunning, waiting.Status, "awaiting input is not idle")
	s.Equal(HeartbeatAwaitingInput, waiting.Heartbeat.Attention)
	s.Empty(cleared.Heartbeat.Attention)
	var got []string
	for _, e := range events() {
		got = append(got, string(e.Kind)+": "+e.Message)
	}
	s.Equal([]string{"attention_needed: needs attention: awaiting_input: which branch?", "attention_needed: needs attention: blocked"}, got)
}

package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"
)

func spentRelease(id string, spent int64) ReleaseRequest {
	r := release(id)
	r.Spent = spent
	return r
}

// TestPoolWindowResets: what a pool's workers spent counts against its
// window limit until the window ends; a request that would pass it waits
// (or, if it may not wait, is refused with the time of the reset), and the
// ledger's timer at the window's end admits it, on the test clock.
func TestPoolWindowResets(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Window: time.Hour, WindowLimit: 100}})
	h.signalAt(2*time.Second, SignalReserve, inPool("team-a", "worker-fix-a1", 60, "medium", true))
	h.signalAt(3*time.Second, SignalRelease, spentRelease("worker-fix-a1", 70))
	h.signalAt(4*time.Second, SignalReserve, inPool("team-a", "worker-fix-a2", 40, "medium", true))
	h.signalAt(5*time.Second, SignalReserve, inPool("master-b", "worker-fix-b1", 40, "medium", false))
	h.signalAt(6*time.Second, SignalReserve, inPool("team-a", "worker-fix-a3", 40, "medium", false))
	var before, after BudgetView
	h.env.RegisterDelayedCallback(func() { before = h.view() }, 59*time.Minute)
	h.env.RegisterDelayedCallback(func() { after = h.view() }, 61*time.Minute)
	h.signalAt(61*time.Minute+time.Second, SignalReserve, inPool("team-a", "worker-fix-a4", 70, "medium", false))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 62*time.Minute)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))
	require.Equal(t, []string{"worker-fix-a2"}, queuedIDs(before), "70 spent + 40 would pass the limit of 100")
	pa := poolNamed(before, "team-a")
	require.NotNil(t, pa.Window)
	require.Equal(t, int64(70), pa.Window.Spent)
	require.True(t, a.of("worker-fix-b1")[0].Granted, "another pool is not held back by team-a's window")
	require.Contains(t, a.of("worker-fix-a3")[0].Reason, "pool team-a spent 70 and holds 0 of its window limit 100, required 40; the window resets at ")
	require.Empty(t, after.Queue, "the window's end admitted a2")
	require.True(t, a.of("worker-fix-a2")[1].Granted)
	require.Zero(t, poolNamed(after, "team-a").Window.Spent, "a new window")
	require.Contains(t, a.of("worker-fix-a4")[0].Reason, "spent 0 and holds 40 of its window limit 100, required 70",
		"what is held counts, as it will be spent")
}

// TestAlertOncePerCrossing: an alert is raised when a pool's holding
// reaches its threshold, once, and re-armed when it falls below; the root
// alerts at 75 % of the total by default.
func TestAlertOncePerCrossing(t *testing.T) {
	h := newLedgerHarness(t)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{Quota: 100, AlertAt: 50}})
	var a answers
	a.expect(h)
	h.signalAt(2*time.Second, SignalReserve, inPool("team-b", "worker-fix-b1", 30, "medium", false))
	var below BudgetView
	h.env.RegisterDelayedCallback(func() { below = h.view() }, 3*time.Second)
	h.signalAt(4*time.Second, SignalReserve, inPool("team-b", "worker-fix-b2", 30, "medium", false))
	h.signalAt(5*time.Second, SignalReserve, inPool("team-b", "worker-fix-b3", 10, "medium", false))
	var raised BudgetView
	h.env.RegisterDelayedCallback(func() { raised = h.view() }, 6*time.Second)
	h.signalAt(7*time.Second, SignalRelease, release("worker-fix-b2"))
	h.signalAt(7*time.Second, SignalRelease, release("worker-fix-b3"))
	var rearmed BudgetView
	h.env.RegisterDelayedCallback(func() { rearmed = h.view() }, 8*time.Second)
	h.signalAt(9*time.Second, SignalReserve, inPool("team-b", "worker-fix-b4", 40, "medium", false))
	h.signalAt(10*time.Second, SignalReserve, inPool("master-c", "worker-fix-c1", 30, "medium", false))
	var again BudgetView
	h.env.RegisterDelayedCallback(func() { again = h.view() }, 11*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 12*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Nil(t, poolNamed(below, "team-b").Alert, "30 of 100 is below 50 %")
	alert := poolNamed(raised, "team-b").Alert
	require.NotNil(t, alert)
	require.Equal(t, 1, alert.Seq, "raised once, though b3 added to it")
	require.Equal(t, "pool team-b holds 60 of 100 (60%), at or above its alert threshold of 50%", alert.Message, "as it was when raised")
	require.Nil(t, poolNamed(rearmed, "team-b").Alert, "30 of 100: re-armed")
	require.Equal(t, 2, poolNamed(again, "team-b").Alert.Seq, "the next crossing is a new alert")
	require.NotNil(t, again.Alert, "the root holds 100 of 100")
	require.Equal(t, "the root holds 100 of 100 (100%), at or above its alert threshold of 75%", again.Alert.Message)
	require.Nil(t, raised.Alert, "70 of 100 is below the root's 75 %")
}

// TestRootWindowAndBadSettings: the root may have a spend window (and
// nothing else of a pool's); bad window and alert settings are refused
// unwritten; open windows and alerts go to the next run.
func TestRootWindowAndBadSettings(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	st := NewLedgerState(1000)
	st.UpdatesThisRun = ledgerUpdatesPerRun - 7
	bad := map[string]*ledgerCall{
		"a window limit needs a window":         h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{WindowLimit: 10}}),
		"alert threshold 101% is not in 1..100": h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{AlertAt: 101}}),
		"window 10s is not in 1m0s..":           h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Window: 10 * time.Second}}),
		"it has no quota, borrowing":            h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: PoolRoot, Settings: PoolSettings{Borrow: 5}}),
		"window limit 50 is below the 200 tokens root holds": h.at(3*time.Second, UpdatePoolSet,
			PoolSetRequest{Name: PoolRoot, Settings: PoolSettings{Window: time.Hour, WindowLimit: 50}}),
	}
	h.signalAt(2*time.Second, SignalReserve, inPool("team-a", "worker-fix-a1", 200, "medium", false))
	h.at(4*time.Second, UpdatePoolSet, PoolSetRequest{Name: PoolRoot, Settings: PoolSettings{Window: 24 * time.Hour, WindowLimit: 500, AlertAt: 60}})
	h.signalAt(5*time.Second, SignalRelease, spentRelease("worker-fix-a1", 350))
	h.signalAt(6*time.Second, SignalReserve, inPool("team-a", "worker-fix-a2", 200, "medium", true))
	h.signalAt(7*time.Second, SignalReserve, inPool("team-a", "worker-fix-a3", 100, "medium", true))
	h.signalAt(7*time.Second, SignalReserve, inPool("master-b", "worker-fix-b1", 300, "critical", false))
	var view BudgetView
	h.env.RegisterDelayedCallback(func() { view = h.view() }, 8*time.Second)
	h.signalAt(9*time.Second, SignalReserve, inPool("master-z", "worker-fix-z", 1, "low", false)) // the run's last update

	h.env.ExecuteWorkflow(BudgetLedger, st)
	for want, c := range bad {
		require.ErrorContains(t, c.rejected, want)
	}
	require.NotNil(t, view.Window)
	require.Equal(t, int64(350), view.Window.Spent)
	require.Equal(t, []string{"worker-fix-a2", "worker-fix-a3"}, queuedIDs(view),
		"350 spent + 200 passes the root's 500; a3 would fit, but waits behind a2 for the root")
	require.Contains(t, a.of("worker-fix-b1")[0].Reason, "the root spent 350 and holds 0 of its window limit 500, required 300")
	require.NotNil(t, view.Alert, "350 of 500 spent is above 60 %")
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, h.env.GetWorkflowError(), &can)
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, int64(350), next.Windows[PoolRoot].Spent, "the open window goes to the next run")
	require.True(t, next.Alerts[PoolRoot].Active)
	require.Equal(t, int64(500), next.Root.WindowLimit)
}

// TestWindowEndedBeforeTheRunStarts: a window that ended while no timer
// could see it (the run closing, a new run starting later) is reset when
// the ledger next wakes, and what it held back is admitted.
func TestWindowEndedBeforeTheRunStarts(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	now := h.env.Now()
	st := NewLedgerState(1000)
	st.Pools = map[string]PoolSettings{"team-a": {Window: time.Hour, WindowLimit: 100, WindowFrom: now.Add(-3 * time.Hour)}}
	st.Windows = map[string]WindowState{"team-a": {Start: now.Add(-2 * time.Hour), Spent: 95}}
	st.Queue = []QueuedRequest{{WorkerID: "worker-fix-a", Lease: WorkflowID("worker-fix-a") + "/r1", Amount: 10, Priority: "medium", Pool: "team-a", Seq: 1}}
	var view BudgetView
	h.env.RegisterDelayedCallback(func() { view = h.view() }, time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 2*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, st)
	require.Empty(t, view.Queue)
	require.Equal(t, []string{"worker-fix-a"}, a.granted())
	require.Zero(t, poolNamed(view, "team-a").Window.Spent)
}

// TestWindowsOfDefaultsAndFutureStarts: the pools on the defaults have
// their windows reset too; a window_from in the future makes windows of
// the set length, counted back from it; one further than ten years is
// refused; a holding alert outlives a window's reset, a spend alert not.
func TestWindowsOfDefaultsAndFutureStarts(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	now := h.env.Now()
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Defaults: true, Settings: PoolSettings{Quota: 100, AlertAt: 50, Window: time.Hour, WindowLimit: 100}})
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-f", Settings: PoolSettings{Window: 24 * time.Hour, WindowLimit: 100, WindowFrom: now.Add(10 * 24 * time.Hour)}})
	ancient := h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-x", Settings: PoolSettings{Window: time.Hour, WindowFrom: now.AddDate(-300, 0, 0)}})
	h.signalAt(2*time.Second, SignalReserve, inPool("master-b", "worker-fix-b1", 50, "medium", false))
	h.signalAt(3*time.Second, SignalRelease, spentRelease("worker-fix-b1", 95))
	h.signalAt(4*time.Second, SignalReserve, inPool("master-b", "worker-fix-b2", 10, "medium", true))
	h.signalAt(4*time.Second, SignalReserve, inPool("master-c", "worker-fix-c1", 60, "medium", false))
	h.signalAt(5*time.Second, SignalReserve, inPool("team-f", "worker-fix-f1", 50, "medium", false))
	h.signalAt(6*time.Second, SignalRelease, spentRelease("worker-fix-f1", 90))
	var before, mid, after BudgetView
	h.env.RegisterDelayedCallback(func() { before = h.view() }, 30*time.Minute)
	h.env.RegisterDelayedCallback(func() { mid = h.view() }, 2*time.Hour)
	h.env.RegisterDelayedCallback(func() { after = h.view() }, 25*time.Hour)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 26*time.Hour)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))
	require.ErrorContains(t, ancient.rejected, "more than 10 years from now")
	require.Equal(t, []string{"worker-fix-b2"}, queuedIDs(before), "master-b spent 95 of its default limit 100")
	require.Equal(t, 1, poolNamed(before, "master-b").Alert.Seq, "95 of 100 spent")
	require.Equal(t, 1, poolNamed(before, "master-c").Alert.Seq, "60 of 100 held")
	require.Empty(t, mid.Queue, "master-b's window reset on its own timer, at its end")
	require.True(t, a.of("worker-fix-b2")[1].Granted)
	require.Nil(t, poolNamed(after, "master-b").Alert, "the spend alert re-armed at the reset")
	require.Equal(t, 1, poolNamed(after, "master-c").Alert.Seq, "the holding alert is the same one, not raised again")
	f := poolNamed(after, "team-f")
	require.Zero(t, f.Window.Spent, "a 24 h window, not one until the far start")
	require.Equal(t, now.Add(10*24*time.Hour).Add(-8*24*time.Hour).UTC(), f.Window.Ends.UTC().Add(0))
}

// TestImpossibleRequestsAreRefused: a request that can never fit waits for
// nothing: refused when asked, and when a lowered quota makes a queued one
// impossible. A pool over a lowered window limit can still be put on hold.
func TestImpossibleRequestsAreRefused(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Quota: 100, Window: time.Hour, WindowLimit: 500}})
	h.signalAt(2*time.Second, SignalReserve, inPool("team-a", "worker-fix-big", 200, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, inPool("team-a", "worker-fix-a1", 80, "medium", true))
	h.signalAt(4*time.Second, SignalReserve, inPool("team-a", "worker-fix-a2", 60, "medium", true))
	h.at(5*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Quota: 50}, Fields: []string{"quota"}})
	restore := reserve("worker-fix-r", WorkflowID("worker-fix-r")+"/r1", 600)
	restore.Pool = "team-a"
	h.at(6*time.Second, UpdateReserve, restore)
	hold := h.at(7*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Hold: true}, Fields: []string{"hold"}})
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 8*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 9*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(1000))
	require.Equal(t, "insufficient budget: required 200 is above pool team-a's quota 100 and borrowing limit 0", a.of("worker-fix-big")[0].Reason)
	require.Equal(t, "insufficient budget: required 60 is above pool team-a's quota 50 and borrowing limit 0", a.of("worker-fix-a2")[1].Reason,
		"queued, then refused when the quota went below it")
	require.Empty(t, end.Queue)
	require.NoError(t, hold.rejected, "a pool over its window limit can still be put on hold")
	require.True(t, poolNamed(end, "team-a").Settings.Hold)
}

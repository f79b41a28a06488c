package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"
)

func inPool(pool, id string, amount int64, priority string, wait bool) ReserveRequest {
	r := ask(id, amount, priority, wait)
	r.Pool = pool
	return r
}

func lend(n int64) *int64 { return &n }

func poolNamed(v BudgetView, name string) PoolView {
	for _, p := range v.Pools {
		if p.Name == name {
			return p
		}
	}
	return PoolView{}
}

func queuedIDs(v BudgetView) []string {
	var ids []string
	for _, q := range v.Queue {
		ids = append(ids, q.WorkerID)
	}
	return ids
}

// TestPoolBorrowingLimit: a pool holds up to its quota, borrows up to its
// limit from what the others leave unused, and waits beyond it; a pool
// within its quota is admitted as soon as the root has room, even while
// the borrower's request waits.
func TestPoolBorrowingLimit(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Quota: 40, Borrow: 20}})
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{Quota: 60}})
	h.signalAt(2*time.Second, SignalReserve, inPool("team-a", "worker-fix-a1", 40, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, inPool("team-a", "worker-fix-a2", 20, "medium", true))
	h.signalAt(4*time.Second, SignalReserve, inPool("team-a", "worker-fix-a3", 10, "high", true))
	h.signalAt(5*time.Second, SignalReserve, inPool("team-b", "worker-fix-b1", 60, "critical", true))
	var borrowed BudgetView
	h.env.RegisterDelayedCallback(func() { borrowed = h.view() }, 6*time.Second)
	h.signalAt(7*time.Second, SignalRelease, release("worker-fix-a2"))
	var afterBorrowBack BudgetView
	h.env.RegisterDelayedCallback(func() { afterBorrowBack = h.view() }, 8*time.Second)
	h.signalAt(9*time.Second, SignalRelease, release("worker-fix-a1"))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 10*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 11*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	pa := poolNamed(borrowed, "team-a")
	require.Equal(t, int64(60), pa.Held, "quota 40 and 20 borrowed of team-b's unused quota")
	require.Equal(t, int64(20), pa.Borrowed)
	require.Equal(t, []string{"worker-fix-b1", "worker-fix-a3"}, queuedIDs(borrowed),
		"a3 waits for its pool (quota + borrowing limit reached), b1 for the root")
	require.Equal(t, "team-a", borrowed.Queue[1].Pool)
	require.Equal(t, 2, borrowed.Queue[1].Position, "second in line: b1 waits for the root's room ahead of it")
	require.Equal(t, []string{"worker-fix-a3"}, queuedIDs(afterBorrowBack),
		"the borrowed 20 given back: b1, first in line for the root, runs at once; a3 still waits for the root")
	require.Equal(t, int64(60), poolNamed(afterBorrowBack, "team-b").Held)
	require.Empty(t, end.Queue, "a1's refund lets a3 in")
	require.Equal(t, int64(70), end.Used)
	require.ElementsMatch(t, []string{"worker-fix-a1", "worker-fix-a2", "worker-fix-b1", "worker-fix-a3"}, a.granted())
}

// TestPoolLendingLimit: a pool lends at most its lending limit of its
// unused quota; the rest is kept for it, and a pool without a quota waits
// rather than take it.
func TestPoolLendingLimit(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{Quota: 60, Lend: lend(10)}})
	h.signalAt(2*time.Second, SignalReserve, inPool("master-a", "worker-fix-a1", 50, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, inPool("master-a", "worker-fix-a2", 10, "critical", false))
	h.signalAt(4*time.Second, SignalReserve, inPool("master-a", "worker-fix-a3", 10, "critical", true))
	h.signalAt(5*time.Second, SignalReserve, inPool("team-b", "worker-fix-b1", 50, "low", false))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 6*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 7*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.True(t, a.of("worker-fix-a1")[0].Granted, "50 of the root's 100, team-b keeps 50")
	require.Equal(t, "insufficient budget: available 0 < required 10 (of 50 free, other pools keep 50 for their quotas)", a.of("worker-fix-a2")[0].Reason,
		"team-b lends only 10 of its unused 60 and keeps the rest")
	require.True(t, a.of("worker-fix-b1")[0].Granted, "team-b's kept quota is there for it, even with a critical request waiting")
	require.Equal(t, []string{"worker-fix-a3"}, queuedIDs(end))
	require.Equal(t, int64(100), end.Used)
}

// TestPoolMaxWorkersAndHold: a pool's cap on workers holds the next one
// back until one ends; a pool on hold admits nothing (and refuses what may
// not wait) until it is resumed, which admits at once.
func TestPoolMaxWorkersAndHold(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{MaxWorkers: 2}})
	h.signalAt(2*time.Second, SignalReserve, inPool("team-a", "worker-fix-a1", 10, "medium", true))
	h.signalAt(2*time.Second, SignalReserve, inPool("team-a", "worker-fix-a2", 10, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, inPool("team-a", "worker-fix-a3", 10, "medium", true))
	var capped BudgetView
	h.env.RegisterDelayedCallback(func() { capped = h.view() }, 4*time.Second)
	h.at(5*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{MaxWorkers: 2, Hold: true}})
	h.signalAt(6*time.Second, SignalRelease, release("worker-fix-a1"))
	h.signalAt(7*time.Second, SignalReserve, inPool("team-a", "worker-fix-a4", 10, "critical", false))
	var held BudgetView
	h.env.RegisterDelayedCallback(func() { held = h.view() }, 8*time.Second)
	h.at(9*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{MaxWorkers: 2}})
	var resumed BudgetView
	h.env.RegisterDelayedCallback(func() { resumed = h.view() }, 10*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 11*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Equal(t, []string{"worker-fix-a3"}, queuedIDs(capped), "two workers, its cap; room enough in tokens")
	require.Equal(t, []string{"worker-fix-a3"}, queuedIDs(held), "a1 ended, but the pool is on hold")
	require.Equal(t, "insufficient budget: pool team-a is on hold", a.of("worker-fix-a4")[0].Reason)
	require.Empty(t, resumed.Queue, "resumed: a3 runs at once")
	require.Equal(t, 2, poolNamed(resumed, "team-a").Workers)
}

// TestPoolBestEffort: in a strict pool a head that does not fit holds back
// a smaller request behind it; in a best-effort pool the smaller passes.
func TestPoolBestEffort(t *testing.T) {
	for _, tc := range []struct {
		bestEffort bool
		queued     []string
	}{
		{false, []string{"worker-fix-big", "worker-fix-small"}},
		{true, []string{"worker-fix-big"}},
	} {
		h := newLedgerHarness(t)
		var a answers
		a.expect(h)
		h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Quota: 100, BestEffort: tc.bestEffort}})
		h.signalAt(2*time.Second, SignalReserve, inPool("team-a", "worker-fix-a", 50, "medium", true))
		h.signalAt(3*time.Second, SignalReserve, inPool("team-a", "worker-fix-big", 80, "medium", true))
		h.signalAt(4*time.Second, SignalReserve, inPool("team-a", "worker-fix-small", 10, "medium", true))
		var end BudgetView
		h.env.RegisterDelayedCallback(func() { end = h.view() }, 5*time.Second)
		h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 6*time.Second)

		h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
		require.Equal(t, tc.queued, queuedIDs(end), "best effort %v", tc.bestEffort)
	}
}

// TestPoolBorrowersWaitInOrder: across pools, a request that needs the
// root's spare room waits behind a strict request ahead of it that waits
// for that room (no starvation of a large request by small borrowers),
// while a request within the room its pool keeps is not held back.
func TestPoolBorrowersWaitInOrder(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-q", Settings: PoolSettings{Quota: 20, Lend: lend(0)}})
	h.signalAt(2*time.Second, SignalReserve, inPool("master-a", "worker-fix-a1", 70, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, inPool("master-a", "worker-fix-big", 20, "high", true))
	h.signalAt(4*time.Second, SignalReserve, inPool("master-c", "worker-fix-c1", 5, "medium", true))
	h.signalAt(5*time.Second, SignalReserve, inPool("team-q", "worker-fix-q1", 20, "low", true))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 6*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 7*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Equal(t, []string{"worker-fix-big", "worker-fix-c1"}, queuedIDs(end),
		"big needs 20 of the root's 10 spare; c1 (5) would fit but must not pass it")
	require.True(t, a.of("worker-fix-q1")[0].Granted, "q1 is within team-q's kept quota")
	require.Equal(t, int64(90), end.Used)
}

// TestPoolSettingsRefused: bad pool settings are refused before anything
// is written, with a message naming the problem.
func TestPoolSettingsRefused(t *testing.T) {
	h := newLedgerHarness(t)
	calls := map[string]*ledgerCall{
		"is the whole budget":               h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "root", Settings: PoolSettings{Quota: 10, Borrow: 5}}),
		"pool name":                         h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "Team A", Settings: PoolSettings{Quota: 10}}),
		"quota -5 is not in":                h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Quota: -5}}),
		"quota 500 is above the total":      h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Quota: 500}}),
		"a borrowing limit needs a quota":   h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Borrow: 5}}),
		"lending limit 20 is not in 0..10":  h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Quota: 10, Lend: lend(20)}}),
		"max workers -1 is negative":        h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{MaxWorkers: -1}}),
		`unknown pool "team-z"`:             h.at(time.Second, UpdatePoolDelete, PoolDeleteRequest{Name: "team-z"}),
		"holds 30 tokens for 1 workers":     h.at(3*time.Second, UpdatePoolDelete, PoolDeleteRequest{Name: "team-b"}),
		"pool defaults take no name":        h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Defaults: true}),
		"lending limit needs a quota":       h.at(time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Lend: lend(0)}}),
		"is the whole budget, not a pool: ": h.at(time.Second, UpdatePoolDelete, PoolDeleteRequest{Name: "root"}),
	}
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{Quota: 50}})
	h.signalAt(2*time.Second, SignalReserve, inPool("team-b", "worker-fix-b", 30, "medium", false))
	lowered := h.at(4*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{Quota: 20}})
	var a answers
	a.expect(h)
	h.signalAt(5*time.Second, SignalReserve, inPool("team-b", "worker-fix-b2", 10, "medium", false))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 6*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 7*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	for want, c := range calls {
		require.Error(t, c.rejected, want)
		require.Contains(t, c.rejected.Error(), want)
	}
	require.NoError(t, lowered.rejected, "a quota below what is held is accepted: nothing is taken back")
	require.Equal(t, "insufficient budget: pool team-b holds 30 of its quota 20 (borrowing limit 0), required 10", a.of("worker-fix-b2")[0].Reason)
	require.Len(t, end.Pools, 1, "only team-b was set")
	require.Equal(t, int64(20), end.Pools[0].Settings.Quota)
	require.Equal(t, int64(10), end.Pools[0].Borrowed)
}

// TestPoolDefaultsAndContinueAsNew: pools on the defaults take them; the
// pools, the defaults and the allocations' pools are handed to the next
// run; a pool with nothing held is deleted.
func TestPoolDefaultsAndContinueAsNew(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	st := NewLedgerState(100)
	st.UpdatesThisRun = ledgerUpdatesPerRun - 6
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Defaults: true, Settings: PoolSettings{Quota: 30}})
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-gone", Settings: PoolSettings{Quota: 30}})
	h.at(2*time.Second, UpdatePoolDelete, PoolDeleteRequest{Name: "team-gone"})
	h.at(2*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-big", Settings: PoolSettings{Quota: 70}})
	h.signalAt(3*time.Second, SignalReserve, inPool("master-m", "worker-fix-m1", 30, "medium", true))
	h.signalAt(4*time.Second, SignalReserve, inPool("master-m", "worker-fix-m2", 10, "medium", true))

	h.env.ExecuteWorkflow(BudgetLedger, st)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, h.env.GetWorkflowError(), &can)
	var next LedgerState
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, int64(30), next.PoolDefaults.Quota)
	require.Equal(t, map[string]PoolSettings{"team-big": {Quota: 70}}, next.Pools)
	require.Equal(t, "master-m", next.Allocations["worker-fix-m1"].Pool)
	require.Len(t, next.Queue, 1, "m2 waits: master-m holds its default quota")
	require.Equal(t, "master-m", next.Queue[0].Pool)
}

// TestPoolQuotaWithoutKeptRoomWaitsInLine: a quota that keeps nothing (it
// lends all its unused quota, as pools on the defaults do) gives no right
// to pass: requests of other pools behind a waiting critical one do not
// take the room it waits for, refunds included.
func TestPoolQuotaWithoutKeptRoomWaitsInLine(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Defaults: true, Settings: PoolSettings{Quota: 50}})
	h.signalAt(2*time.Second, SignalReserve, inPool("master-b", "worker-fix-b1", 40, "medium", true))
	h.signalAt(2*time.Second, SignalReserve, inPool("master-c", "worker-fix-c1", 30, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, inPool("master-a", "worker-fix-crit", 40, "critical", true))
	h.signalAt(4*time.Second, SignalReserve, inPool("master-d", "worker-fix-d1", 10, "low", true))
	var waiting BudgetView
	h.env.RegisterDelayedCallback(func() { waiting = h.view() }, 4500*time.Millisecond)
	h.signalAt(5*time.Second, SignalRelease, release("worker-fix-c1"))
	h.signalAt(5500*time.Millisecond, SignalReserve, inPool("master-e", "worker-fix-e1", 20, "low", true))
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 6*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 7*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Equal(t, []string{"worker-fix-crit", "worker-fix-d1"}, queuedIDs(waiting), "d1 fits in the 30 free, but must not take the room crit waits for")
	require.Equal(t, []int{1, 2}, positions(waiting))
	require.True(t, a.of("worker-fix-crit")[1].Granted, "c1's refund admitted the critical request")
	require.True(t, a.of("worker-fix-d1")[1].Granted, "then d1, in the 20 left")
	require.Equal(t, []string{"worker-fix-e1"}, queuedIDs(end), "e1 (20) does not fit in the 10 left")
}

// TestPoolSetKeepsWhatItWasNotAsked: a set of some settings keeps the
// others, so two operators changing different settings do not undo each
// other; the pools may not keep more than the total, nor may the total
// drop below what they keep or below a quota.
func TestPoolSetKeepsWhatItWasNotAsked(t *testing.T) {
	h := newLedgerHarness(t)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Quota: 60, Lend: lend(20)}})
	h.at(2*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{MaxWorkers: 3}, Fields: []string{"max_workers"}})
	h.at(2*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-a", Settings: PoolSettings{Hold: true}, Fields: []string{"hold"}})
	tooMuch := h.at(3*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{Quota: 70, Lend: lend(0)}})
	unknown := h.at(3*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{Quota: 10}, Fields: []string{"quota", "colour"}})
	belowQuota := h.at(4*time.Second, UpdateSetTotal, SetTotalRequest{Total: 50})
	h.at(5*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-c", Settings: PoolSettings{Quota: 30, Lend: lend(0)}})
	belowKept := h.at(6*time.Second, UpdateSetTotal, SetTotalRequest{Total: 65})
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 7*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 8*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	pa := poolNamed(end, "team-a")
	require.Equal(t, int64(60), pa.Settings.Quota)
	require.Equal(t, lend(20), pa.Settings.Lend)
	require.Equal(t, 3, pa.Settings.MaxWorkers)
	require.True(t, pa.Settings.Hold)
	require.ErrorContains(t, tooMuch.rejected, "the pools would keep 110 tokens")
	require.ErrorContains(t, unknown.rejected, `unknown pool setting "colour"`)
	require.ErrorContains(t, belowQuota.rejected, "total 50 is below the quota of pool team-a")
	require.ErrorContains(t, belowKept.rejected, "total 65 is below the 70 tokens the pools keep")
	require.Equal(t, int64(100), end.Total)
}

// TestLedgerAdmitsWhatAStaleRequestHeldBack: when a worker's new lifecycle
// drops its stale queued request, what that request held back is admitted
// at once (version admit-after-stale), not at the next refund.
func TestLedgerAdmitsWhatAStaleRequestHeldBack(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-x", 50, "medium", false))
	h.signalAt(2*time.Second, SignalReserve, ask("worker-fix-a", 80, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, ask("worker-fix-b", 30, "medium", true))
	again := ask("worker-fix-a", 80, "medium", true)
	again.Lease = WorkflowID("worker-fix-a") + "/r2"
	h.signalAt(4*time.Second, SignalReserve, again)
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 5*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 6*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.True(t, a.of("worker-fix-b")[1].Granted, "b was admitted once a's stale request went")
	require.Equal(t, []string{WorkflowID("worker-fix-a") + "/r2"}, func() []string {
		var l []string
		for _, q := range end.Queue {
			l = append(l, q.Lease)
		}
		return l
	}())
	require.Equal(t, int64(80), end.Used)
}

// TestLedgerRestoreAdmitsWhatItUnblocks: an allocation restored with the
// reserve update can turn a pool's head from waiting for the root into
// waiting for its pool's cap; what waited behind it is admitted.
func TestLedgerRestoreAdmitsWhatItUnblocks(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-p", Settings: PoolSettings{MaxWorkers: 1}})
	h.signalAt(2*time.Second, SignalReserve, inPool("team-q", "worker-fix-big", 90, "medium", false))
	h.signalAt(3*time.Second, SignalReserve, inPool("team-p", "worker-fix-x", 20, "high", true))
	h.signalAt(4*time.Second, SignalReserve, inPool("team-q", "worker-fix-y", 5, "medium", true))
	restore := reserve("worker-fix-r", WorkflowID("worker-fix-r")+"/r1", 1)
	restore.Pool = "team-p"
	h.at(5*time.Second, UpdateReserve, restore)
	var end BudgetView
	h.env.RegisterDelayedCallback(func() { end = h.view() }, 6*time.Second)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 7*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Equal(t, []string{"worker-fix-x"}, queuedIDs(end), "x now waits for team-p's cap, y no longer behind it")
	require.True(t, a.of("worker-fix-y")[1].Granted)
}

// TestRefusalSaysWhyItself: a request that does not fit by itself is
// refused with its own reason, even behind a queued one; one that fits is
// told what it waits behind.
func TestRefusalSaysWhyItself(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.signalAt(1*time.Second, SignalReserve, ask("worker-fix-x", 60, "medium", false))
	h.signalAt(2*time.Second, SignalReserve, ask("worker-fix-a", 50, "medium", true))
	h.signalAt(3*time.Second, SignalReserve, ask("worker-fix-b", 70, "medium", false))
	h.signalAt(4*time.Second, SignalReserve, ask("worker-fix-c", 10, "low", false))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 5*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.Equal(t, "insufficient budget: available 40 < required 70", a.of("worker-fix-b")[0].Reason)
	require.Equal(t, "insufficient budget: available 40, but 1 queued requests of priority low or higher come first", a.of("worker-fix-c")[0].Reason)
}

// TestPoolOnHoldKeepsNothing: a pool on hold admits nothing, so the room
// it would keep is lent meanwhile.
func TestPoolOnHoldKeepsNothing(t *testing.T) {
	h := newLedgerHarness(t)
	var a answers
	a.expect(h)
	h.at(1*time.Second, UpdatePoolSet, PoolSetRequest{Name: "team-b", Settings: PoolSettings{Quota: 60, Lend: lend(0), Hold: true}})
	h.signalAt(2*time.Second, SignalReserve, inPool("master-a", "worker-fix-a", 80, "medium", false))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 3*time.Second)

	h.env.ExecuteWorkflow(BudgetLedger, NewLedgerState(100))
	require.True(t, a.of("worker-fix-a")[0].Granted)
}

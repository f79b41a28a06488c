package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestPoolsBorrowAndWait: two masters in two pools. Team alpha runs three
// workers on a quota of one, borrowing the unused quota of team beta; beta's
// master then spawns a critical worker that waits (the root is full), and
// runs as soon as one of alpha's workers stops and its refund frees room.
// Alpha is then put on hold and drained, and both pools are deleted. Bad
// pool settings change nothing and exit as the README says.
func TestPoolsBorrowAndWait(t *testing.T) {
	const each = 100
	before := h.budget(t)
	require.Empty(t, before.Queue)
	h.starterOK(t, "budget", "set", "--total", fmt.Sprint(before.Used+3*each))
	t.Cleanup(func() {
		h.starter(t, "budget", "pool", "delete", "team-alpha")
		h.starter(t, "budget", "pool", "delete", "team-beta")
		h.starterOK(t, "budget", "set", "--total", fmt.Sprint(before.Total))
	})

	// Bad input: a clear error, exit 2 for what is wrong on its own, 1 for
	// what the ledger refuses against its state; nothing changes.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"budget", "pool", "set", "root", "--borrow", "5"}, 2, `"root" is the whole budget`},
		{[]string{"budget", "pool", "set", "team-alpha", "--quota", "-1"}, 2, "quota -1 is not in 0.."},
		{[]string{"budget", "pool", "set", "team-alpha", "--borrow", "10"}, 2, "a borrowing limit needs a quota"},
		{[]string{"budget", "pool", "set", "team-alpha", "--quota", "10", "--lend", "20"}, 2, "lending limit 20 is not in 0..10"},
		{[]string{"budget", "pool", "set", "team-alpha", "--drain"}, 2, "--drain needs --hold"},
		{[]string{"budget", "pool", "set", "Team_Alpha", "--quota", "10"}, 2, "must match"},
		{[]string{"budget", "pool", "set", "team-alpha", "--quota", "999999999"}, 1, "is above the total budget"},
		{[]string{"budget", "pool", "delete", "team-nowhere"}, 1, `unknown pool "team-nowhere"`},
		{[]string{"spawn", "--type", "sleeper-worker", "--master", "master-alpha", "--pool", "root"}, 2, `"root" is the whole budget`},
	} {
		_, errOut, code := h.starter(t, tc.args...)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		require.Contains(t, errOut, tc.want, "%v", tc.args)
	}
	require.Empty(t, teamPools(h.budget(t)), "nothing was configured by the refused commands")

	h.starterOK(t, "budget", "pool", "set", "team-alpha", "--quota", fmt.Sprint(each), "--borrow", fmt.Sprint(2*each))
	h.starterOK(t, "budget", "pool", "set", "team-beta", "--quota", fmt.Sprint(2*each))

	alpha := []string{newID("sleeper"), newID("sleeper"), newID("sleeper")}
	for _, id := range alpha {
		h.spawnOK(t, id, "--type", "sleeper-worker", "--task-id", "task-pools", "--master", "master-alpha", "--pool", "team-alpha", "--budget", fmt.Sprint(each))
	}
	show := h.starterOK(t, "budget", "show")
	require.Contains(t, show, "pool team-alpha")
	require.Contains(t, show, fmt.Sprintf("held %d (3 workers)  borrowed %d", 3*each, 2*each))
	// A fourth in alpha is past its quota and borrowing limit.
	_, errOut, code := h.spawn(t, newID("sleeper"), "--type", "sleeper-worker", "--task-id", "task-pools", "--master", "master-alpha", "--pool", "team-alpha", "--budget", fmt.Sprint(each))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, fmt.Sprintf("pool team-alpha holds %d of its quota %d (borrowing limit %d), required %d", 3*each, each, 2*each, each))

	// Beta's critical worker waits: its quota is free, but alpha borrowed it.
	critical := newID("sleeper")
	out := h.spawnOK(t, critical, "--type", "sleeper-worker", "--task-id", "task-pools", "--master", "master-beta", "--pool", "team-beta",
		"--priority", "critical", "--budget", fmt.Sprint(each), "--wait-for-budget")
	require.Contains(t, out, "queued for budget: position 1 in pool team-beta,")
	require.Contains(t, h.starterOK(t, "status", critical), "position 1 in pool team-beta")

	// One of alpha's workers stops: the refund admits beta's at once.
	h.starterOK(t, "shutdown", alpha[2], "--grace", "1s")
	stopped := time.Now()
	running := h.waitStatus(t, critical, workflows.StatusRunning, 30*time.Second)
	t.Logf("refund → beta's critical worker running: %s", time.Since(stopped).Round(time.Millisecond))
	require.Equal(t, "team-beta", running.TokenBudget.Pool)

	var v workflows.BudgetView
	require.NoError(t, json.Unmarshal([]byte(h.starterOK(t, "budget", "show", "-o", "json")), &v))
	byName := teamPools(v)
	require.Equal(t, int64(2*each), byName["team-alpha"].Held)
	require.Equal(t, int64(each), byName["team-alpha"].Borrowed)
	require.Equal(t, int64(each), byName["team-beta"].Held)
	require.Equal(t, before.Used+3*each, v.Used)

	// Deleting a pool in use is refused; hold and drain empties it.
	_, errOut, code = h.starter(t, "budget", "pool", "delete", "team-alpha")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "pool team-alpha holds 200 tokens for 2 workers")
	h.starterOK(t, "budget", "pool", "set", "team-alpha", "--hold", "--drain")
	for _, id := range alpha[:2] {
		spec := h.waitStatus(t, id, workflows.StatusCompleted, 30*time.Second)
		require.Equal(t, "pool team-alpha drained", spec.Cleanup.Reason)
	}
	held := teamPools(h.budget(t))
	require.Len(t, held, 2)
	require.True(t, held["team-alpha"].Settings.Hold, "alpha is on hold")
	_, errOut, code = h.spawn(t, newID("sleeper"), "--type", "sleeper-worker", "--task-id", "task-pools", "--master", "master-alpha", "--pool", "team-alpha", "--budget", "10")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "pool team-alpha is on hold")
	h.starterOK(t, "budget", "pool", "delete", "team-alpha")

	h.starterOK(t, "shutdown", critical, "--grace", "1s")
	h.recordHistory(t, "lifecycle-pool-queued", workflows.WorkflowID(critical))
	h.starterOK(t, "budget", "pool", "delete", "team-beta")
	h.recordHistory(t, "ledger-pools", workflows.LedgerWorkflowID)
	after := h.budget(t)
	require.Empty(t, teamPools(after))
	require.Equal(t, before.Used, after.Used, "every allocation came back, once")
}

// teamPools are this test's pools, by name: other tests' live workers
// hold budget in their masters' pools.
func teamPools(v workflows.BudgetView) map[string]workflows.PoolView {
	out := map[string]workflows.PoolView{}
	for _, p := range v.Pools {
		if strings.HasPrefix(p.Name, "team-") {
			out[p.Name] = p
		}
	}
	return out
}

// TestPoolWindowAndAlert: a pool's spend window counts what its workers
// reported spending when they end; past its alert threshold `budget show`
// raises an alert, once; a spawn that would pass the window limit is
// refused with the time the window resets, or waits for it.
func TestPoolWindowAndAlert(t *testing.T) {
	before := h.budget(t)
	h.starterOK(t, "budget", "pool", "set", "team-gamma", "--quota", "500", "--alert-at", "50", "--window", "1h", "--window-limit", "300")
	t.Cleanup(func() { h.starter(t, "budget", "pool", "delete", "team-gamma") })

	// Bad input, checked before any change.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"budget", "pool", "set", "team-gamma", "--alert-at", "101"}, "--alert-at 101 is not in 1..100"},
		{[]string{"budget", "pool", "set", "team-delta", "--window-limit", "10"}, "a window limit needs a window"},
		{[]string{"budget", "pool", "set", "team-gamma", "--window-from", "yesterday"}, `--window-from "yesterday" is not a time`},
		{[]string{"budget", "pool", "set", "root", "--quota", "10"}, `"root" is the whole budget`},
		{[]string{"budget", "pool", "set", "team-gamma", "--queue-timeout", "-1s"}, "queue timeout -1s is not in 0..168h0m0s"},
		{[]string{"budget", "pool", "set", "team-gamma", "--queue-timeout", "200h"}, "queue timeout 200h0m0s is not in 0..168h0m0s"},
	} {
		_, errOut, code := h.starter(t, tc.args...)
		require.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		require.Contains(t, errOut, tc.want)
	}

	id := newID("sleeper")
	h.spawnOK(t, id, "--type", "sleeper-worker", "--task-id", "task-window", "--master", "master-gamma", "--pool", "team-gamma", "--budget", "200")
	h.starterOK(t, "heartbeat", id, "--tokens-used", "250")
	require.Eventually(t, func() bool { return h.status(t, id).TokenBudget.Used == 250 }, 30*time.Second, 200*time.Millisecond)
	require.Nil(t, teamPools(h.budget(t))["team-gamma"].Alert, "200 of 500 held, nothing spent yet")
	began := time.Now()
	h.starterOK(t, "shutdown", id, "--grace", "1s")

	show := h.starterOK(t, "budget", "show")
	require.Contains(t, show, "window: spent 250 of 300")
	require.Contains(t, show, "ALERT since")
	require.Contains(t, show, "pool team-gamma spent 250 of its window limit 300 (83%), at or above its alert threshold of 50%")
	var v workflows.BudgetView
	require.NoError(t, json.Unmarshal([]byte(h.starterOK(t, "budget", "show", "-o", "json")), &v))
	gamma := teamPools(v)["team-gamma"]
	require.NotNil(t, gamma.Alert)
	require.True(t, gamma.Alert.Since.After(began.Add(-time.Second)), "raised by this test's spend")
	require.Equal(t, int64(250), gamma.Window.Spent)

	_, errOut, code := h.spawn(t, newID("sleeper"), "--type", "sleeper-worker", "--task-id", "task-window", "--master", "master-gamma", "--pool", "team-gamma", "--budget", "100")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "pool team-gamma spent 250 and holds 0 of its window limit 300, required 100; the window resets at")
	waiting := newID("sleeper")
	out := h.spawnOK(t, waiting, "--type", "sleeper-worker", "--task-id", "task-window", "--master", "master-gamma", "--pool", "team-gamma",
		"--budget", "100", "--wait-for-budget")
	require.Contains(t, out, "queued for budget: position 1 in pool team-gamma")

	// The pool's queue timeout, for a spawn that sets none.
	require.Contains(t, h.starterOK(t, "budget", "pool", "set", "team-gamma", "--queue-timeout", "3s"), "queue timeout 3s")
	impatient := newID("sleeper")
	out = h.spawnOK(t, impatient, "--type", "sleeper-worker", "--task-id", "task-window", "--master", "master-gamma", "--pool", "team-gamma",
		"--budget", "100", "--wait-for-budget")
	require.Contains(t, out, "queued for budget: position 2 in pool team-gamma")
	failed := h.waitStatus(t, impatient, workflows.StatusFailed, 30*time.Second)
	require.Equal(t, "queue timeout: no budget for 100 tokens within 3s", failed.Cleanup.Reason)
	require.Zero(t, failed.Cleanup.Refunded, "it held nothing")

	h.starterOK(t, "shutdown", waiting)
	h.recordHistory(t, "ledger-windows", workflows.LedgerWorkflowID)
	require.Equal(t, before.Used, h.budget(t).Used)
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// A set starts from the settings the target has now: the root's own, a
// configured pool's own, or the defaults for a pool that has none.
func TestCurrentSettings(t *testing.T) {
	v := workflows.BudgetView{
		PoolDefaults: &workflows.PoolSettings{Quota: 50000},
		Root:         &workflows.PoolSettings{Window: 3600e9, WindowLimit: 100},
		Pools:        []workflows.PoolView{{Name: "team-a", Configured: true, Settings: workflows.PoolSettings{Quota: 7}}, {Name: "master-b"}},
	}
	require.Equal(t, workflows.PoolSettings{Window: 3600e9, WindowLimit: 100}, currentSettings(v, workflows.PoolRoot),
		"the root's, never the pools' defaults (a quota would be refused on the root)")
	require.Equal(t, int64(7), currentSettings(v, "team-a").Quota)
	require.Equal(t, int64(50000), currentSettings(v, "master-b").Quota)
	require.Equal(t, int64(50000), currentSettings(v, "").Quota, "--defaults")
	require.Equal(t, workflows.PoolSettings{}, currentSettings(workflows.BudgetView{}, workflows.PoolRoot))
}

// budget show prints the queue timeouts a pool's line cannot: the root's
// and the defaults'; a pool's own is in its line.
func TestPrintBudgetShowsQueueTimeouts(t *testing.T) {
	var b strings.Builder
	printBudget(&b, workflows.BudgetView{Total: 100, Available: 100,
		Root:         &workflows.PoolSettings{QueueTimeout: 2 * time.Hour},
		PoolDefaults: &workflows.PoolSettings{QueueTimeout: 20 * time.Minute},
		Pools:        []workflows.PoolView{{Name: "team-a", Configured: true, Settings: workflows.PoolSettings{QueueTimeout: 5 * time.Minute}}}})
	require.Contains(t, b.String(), "root queue timeout 2h0m0s\n")
	require.Contains(t, b.String(), "pool defaults: queue timeout 20m0s\n")
	require.Contains(t, b.String(), "queue timeout 5m0s]")
}

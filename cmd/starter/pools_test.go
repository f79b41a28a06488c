package main

import (
	"testing"

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

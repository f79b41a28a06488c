package fleet

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

func TestSetupConfigValidate(t *testing.T) {
	day := 24 * time.Hour
	ok := SetupConfig{Namespace: "default", CreateNamespace: true, Retention: DefaultNamespaceRetention,
		Schedules: ScheduleConfig{ArchiveCron: workflows.DefaultArchiveCron, Retention: workflows.DefaultRetention, SweepCron: workflows.DefaultSweepCron}}
	require.NoError(t, ok.Validate())
	require.Equal(t, 9*day, DefaultNamespaceRetention, "7 days archived, a day between runs, a day of slack")

	for name, c := range map[string]struct {
		mutate func(*SetupConfig)
		want   string
	}{
		"no namespace":         {func(c *SetupConfig) { c.Namespace = "" }, "the namespace is empty"},
		"retention = archival": {func(c *SetupConfig) { c.Retention = 7 * day }, "must be at least the archival retention 168h0m0s plus 24h0m0s"},
		"bad archival":         {func(c *SetupConfig) { c.Schedules.Retention = -time.Hour; c.Retention = 12 * time.Hour }, "retention -1h0m0s must be positive"},
		"bad cron":             {func(c *SetupConfig) { c.Schedules.SweepCron = "hourly" }, `schedule "hourly" must be a cron expression of five fields`},
		"one day short":        {func(c *SetupConfig) { c.Retention = 8*day - time.Second }, "must be at least"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			c.mutate(&cfg)
			err := cfg.Validate()
			require.ErrorContains(t, err, c.want)
			require.True(t, errors.Is(err, ErrInvalid))
		})
	}
	raise := ok
	raise.CreateNamespace, raise.UpdateRetention, raise.Retention = false, true, 2*day
	require.ErrorContains(t, raise.Validate(), "the namespace retention 48h0m0s must be at least", "nor raised too little")
	// Retention only matters for a namespace this creates or raises.
	existing := ok
	existing.CreateNamespace, existing.Retention = false, 0
	require.NoError(t, existing.Validate())
}

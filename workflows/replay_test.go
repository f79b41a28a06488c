package workflows

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
)

// TestReplayRecordedHistories replays every history recorded from the real
// system (`make replay-record`). A change to the workflows that would break
// the lifecycles already running fails here; such a change needs
// workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "histories", "*.json"))
	require.NoError(t, err)
	// The paths a lifecycle can take, and the ledger, must all be covered.
	for _, want := range []string{"lifecycle-shutdown", "lifecycle-zombie", "lifecycle-budget-refused",
		"lifecycle-crash", "lifecycle-spawn-failed", "lifecycle-kill", "lifecycle-restarts", "lifecycle-host-lost",
		"budget-ledger", "restart-breaker", "archival", "sweep"} {
		require.Contains(t, files, filepath.Join("..", "testdata", "histories", want+".json"))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			replayer := worker.NewWorkflowReplayer()
			Register(replayer)
			require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, file))
		})
	}
}

// TestReplayWithChangedDefaults replays every history after the defaults
// changed in every way that could alter a decision: a lifecycle keeps the
// limits it started with, so none may notice.
func TestReplayWithChangedDefaults(t *testing.T) {
	saved := defaultLimits
	t.Cleanup(func() { defaultLimits = saved })
	defaultLimits = Limits{HeartbeatWarning: time.Millisecond, HeartbeatCritical: 2 * time.Millisecond,
		ZombieAfter: 3 * time.Millisecond, IdleAfter: time.Millisecond, ShutdownGrace: time.Millisecond,
		MaxSignalsPerRun: 1, WatchHeartbeat: time.Millisecond, HostLossAfter: time.Millisecond,
		SampleEvery: time.Millisecond, RestartDelay: time.Hour, RestartMaxDelay: time.Hour, HealthyRun: time.Millisecond}
	files, err := filepath.Glob(filepath.Join("..", "testdata", "histories", "*.json"))
	require.NoError(t, err)
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			replayer := worker.NewWorkflowReplayer()
			Register(replayer)
			require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, file))
		})
	}
}

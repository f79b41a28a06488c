package workflows

import (
	"path/filepath"
	"strings"
	"testing"

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

package workflows

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// memArchive is every lifecycle that ended, whatever the cutoff, so that
// the test shows the workflow's own rule.
type memArchive struct{ ended []activities.EndedLifecycle }

func (m *memArchive) Ended(context.Context, time.Time) ([]activities.EndedLifecycle, error) {
	return m.ended, nil
}

func (m *memArchive) FinalSpec(_ context.Context, workflowID, runID string) ([]byte, error) {
	return []byte(fmt.Sprintf(`{"workflow_id": %q, "run_id": %q, "status": "completed"}`, workflowID, runID)), nil
}

func TestArchivalSkipsDaysOnTheTestClock(t *testing.T) {
	ended := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	store := &memArchive{ended: []activities.EndedLifecycle{
		{WorkerID: "worker-fix-a1", WorkflowID: WorkflowID("worker-fix-a1"), RunID: "0f1e2d3c", ClosedAt: ended},
	}}
	dir := t.TempDir()
	archiveAt := func(after time.Duration) ArchiveReport {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		env.SetStartTime(ended.Add(after))
		Register(env)
		env.RegisterActivity(&activities.SharedActivities{Archive: store, ArchiveDir: dir})
		env.ExecuteWorkflow(ArchiveCompleted, ArchiveRequest{OlderThan: DefaultRetention})
		require.NoError(t, env.GetWorkflowError())
		var r ArchiveReport
		require.NoError(t, env.GetWorkflowResult(&r))
		return r
	}

	r := archiveAt(6 * 24 * time.Hour)
	require.Empty(t, r.Archived, "6 days after its end a worker is kept")
	require.NoFileExists(t, filepath.Join(dir, "worker-fix-a1_0f1e2d3c.json"))

	r = archiveAt(8 * 24 * time.Hour)
	require.Equal(t, []string{"worker-fix-a1"}, r.Archived, "8 days after, it is archived")
	data, err := os.ReadFile(filepath.Join(dir, "worker-fix-a1_0f1e2d3c.json"))
	require.NoError(t, err)
	require.Contains(t, string(data), `"status": "completed"`)

	r = archiveAt(9 * 24 * time.Hour)
	require.Empty(t, r.Archived, "nothing is archived twice")
	require.Equal(t, 1, r.AlreadyArchived)
}

func TestArchivalRefusesANonPositiveRetention(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	env.ExecuteWorkflow(ArchiveCompleted, ArchiveRequest{OlderThan: 0})
	require.ErrorContains(t, env.GetWorkflowError(), "retention 0s must be positive")
}

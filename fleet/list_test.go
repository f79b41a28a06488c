package fleet

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

func TestVisibilityQuery(t *testing.T) {
	f := &Client{}
	for _, c := range []struct {
		flt  Filter
		want string
	}{
		{Filter{}, `WorkflowType = "WorkerLifecycle" AND ExecutionStatus = "Running"`},
		{Filter{Ended: true}, `WorkflowType = "WorkerLifecycle"`},
		{Filter{Statuses: []workflows.Status{workflows.StatusZombie}}, `WorkflowType = "WorkerLifecycle" AND WorkerStatus IN ("zombie") AND ExecutionStatus != "ContinuedAsNew"`},
		// A failed start carries no status of its own.
		{Filter{Statuses: []workflows.Status{workflows.StatusFailed, workflows.StatusZombie}},
			`WorkflowType = "WorkerLifecycle" AND (WorkerStatus IN ("failed", "zombie") OR ExecutionStatus = "Failed") AND ExecutionStatus != "ContinuedAsNew"`},
		{Filter{Master: "m", Query: `Priority = "high"`}, `WorkflowType = "WorkerLifecycle" AND ExecutionStatus = "Running" AND Master = "m" AND (Priority = "high")`},
	} {
		got, err := f.visibilityQuery(c.flt)
		require.NoError(t, err)
		require.Equal(t, c.want, got)
	}
}

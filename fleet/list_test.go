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
		// A zombie is an open run's: not a first run that continued as new
		// nor a terminated one, which keep the status they closed with.
		{Filter{Statuses: []workflows.Status{workflows.StatusZombie}}, `WorkflowType = "WorkerLifecycle" AND ((WorkerStatus IN ("zombie") AND ExecutionStatus = "Running"))`},
		{Filter{Statuses: []workflows.Status{workflows.StatusCompleted, workflows.StatusCleanedUp}},
			`WorkflowType = "WorkerLifecycle" AND ((WorkerStatus IN ("completed", "cleaned_up") AND ExecutionStatus != "Running" AND ExecutionStatus != "ContinuedAsNew"))`},
		// A failed start carries no status of its own.
		{Filter{Statuses: []workflows.Status{workflows.StatusFailed, workflows.StatusZombie}},
			`WorkflowType = "WorkerLifecycle" AND ((WorkerStatus IN ("zombie") AND ExecutionStatus = "Running") OR (WorkerStatus = "failed" AND ExecutionStatus != "ContinuedAsNew") OR ExecutionStatus = "Failed")`},
		{Filter{Master: "m", Query: `Priority = "high"`}, `WorkflowType = "WorkerLifecycle" AND ExecutionStatus = "Running" AND Master = "m" AND (Priority = "high")`},
	} {
		got, err := f.visibilityQuery(c.flt)
		require.NoError(t, err)
		require.Equal(t, c.want, got)
	}
}

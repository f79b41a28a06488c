package adapters

import (
	"context"
	"encoding/json"
	"time"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Archive finds ended lifecycles through visibility and reads their final
// specs from their results.
type Archive struct {
	Fleet *fleet.Client
}

var _ activities.Archive = (*Archive)(nil)

// Ended lists lifecycle runs that ended completed or cleaned up before
// closedBefore.
func (a *Archive) Ended(ctx context.Context, closedBefore time.Time) ([]activities.EndedLifecycle, error) {
	runs, err := a.Fleet.EndedRuns(ctx, closedBefore)
	var out []activities.EndedLifecycle
	for _, r := range runs {
		out = append(out, activities.EndedLifecycle{WorkerID: r.WorkerID, WorkflowID: r.WorkflowID, RunID: r.RunID, ClosedAt: r.ClosedAt})
	}
	return out, err
}

// FinalSpec is the lifecycle's result.
func (a *Archive) FinalSpec(ctx context.Context, workflowID, runID string) ([]byte, error) {
	var spec workflows.WorkerSpec
	if err := a.Fleet.Temporal().GetWorkflow(ctx, workflowID, runID).Get(ctx, &spec); err != nil {
		return nil, err
	}
	return json.MarshalIndent(spec, "", "  ")
}

package adapters

import (
	"context"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Reporter signals the watcher's observations to the lifecycles.
type Reporter struct {
	Client client.Client
}

var _ activities.Reporter = (*Reporter)(nil)

// Sample sends a resource sample of the worker's process tree.
func (r *Reporter) Sample(ctx context.Context, workerID string, s activities.ResourceSample) error {
	return r.Client.SignalWorkflow(ctx, workflows.WorkflowID(workerID), "", workflows.SignalSample, s)
}

// OutputHeartbeat heartbeats for a worker whose log grew.
func (r *Reporter) OutputHeartbeat(ctx context.Context, workerID string, s activities.ResourceSample) error {
	return r.Client.SignalWorkflow(ctx, workflows.WorkflowID(workerID), "", workflows.SignalOutputHeartbeat, s)
}

// Breakers talks to the per-type restart circuit breakers, starting one the
// first time its type crashes.
type Breakers struct {
	Client client.Client
}

var _ activities.Breakers = (*Breakers)(nil)

// RecordFailure counts a crash of the type and returns the decision.
func (b *Breakers) RecordFailure(ctx context.Context, workerType, workerID, requestID string) (activities.BreakerDecision, error) {
	var d activities.BreakerDecision
	op := b.Client.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       workflows.BreakerWorkflowID(workerType),
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflows.RestartBreaker, workflows.BreakerState{WorkerType: workerType})
	h, err := b.Client.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: op,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName:   workflows.UpdateRecordFailure,
			UpdateID:     requestID,
			Args:         []any{workflows.RecordFailureRequest{WorkerID: workerID}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return d, err
	}
	return d, h.Get(ctx, &d)
}

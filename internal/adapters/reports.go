package adapters

import (
	"context"
	"time"

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

// RelayHeartbeat passes on a heartbeat the host took from an agent,
// received age ago (activities.relayReason says when).
func (r *Reporter) RelayHeartbeat(ctx context.Context, workerID string, hb activities.HostHeartbeat, age time.Duration) error {
	return r.Client.SignalWorkflow(ctx, workflows.WorkflowID(workerID), "", workflows.SignalHeartbeat, workflows.Heartbeat{
		TokensUsed: hb.TokensUsed, HealthScore: hb.HealthScore, Status: hb.Status, Message: hb.Message,
		SentAt: hb.SentAt, Process: hb.Process, Path: workflows.PathHost, Age: age})
}

// ShowWatch records the watch's details as its activity heartbeat now,
// past the SDK's throttle, so that a reader sees a heartbeat within a
// second of its arrival.
func (r *Reporter) ShowWatch(ctx context.Context, taskToken []byte, d activities.WatchDetails) error {
	return r.Client.RecordActivityHeartbeat(ctx, taskToken, d)
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

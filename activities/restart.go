package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// Breakers is the per-type restart circuit breaker, shared by every
// lifecycle of a type. The worker program wires it to the breaker workflows.
type Breakers interface {
	// RecordFailure counts one crash; a call repeated with the same
	// requestID (a retried activity) counts it once.
	RecordFailure(ctx context.Context, workerType, workerID, requestID string) (BreakerDecision, error)
}

// BreakerDecision says whether a crashed worker may be restarted.
type BreakerDecision struct {
	Allowed bool `json:"allowed"`
	// OpenUntil is when restarts of the type resume, while it is open.
	OpenUntil      *time.Time `json:"open_until,omitempty"`
	RecentFailures int        `json:"recent_failures"`
}

// RecordFailureInput names a crashed worker.
type RecordFailureInput struct {
	WorkerType string `json:"worker_type"`
	WorkerID   string `json:"worker_id"`
}

// RecordFailure counts a crash against the worker's type and says whether
// it may be restarted.
func (a *SharedActivities) RecordFailure(ctx context.Context, in RecordFailureInput) (BreakerDecision, error) {
	if a.Breakers == nil {
		return BreakerDecision{Allowed: true}, nil
	}
	// The same for every attempt of this activity, so a retry after a lost
	// answer does not count the crash twice.
	info := activity.GetInfo(ctx)
	requestID := info.WorkflowExecution.RunID + "/" + info.ActivityID
	return a.Breakers.RecordFailure(ctx, in.WorkerType, in.WorkerID, requestID)
}

// PickHost runs on the shared task queue: the worker program that takes it
// becomes the host of a new worker, and its own queue gets the process work.
func (a *SharedActivities) PickHost(context.Context) (string, error) {
	return a.Host, nil
}

package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// budgetOptions are for ledger calls. A refusal is final; an outage is
// retried. maxAttempts 0 retries until the compensation window closes, which
// a refund needs: it must not be given up lightly.
func budgetOptions(ctx workflow.Context, maxAttempts int32) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: defaultCompensationWindow,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        500 * time.Millisecond,
			MaximumInterval:        30 * time.Second,
			MaximumAttempts:        maxAttempts,
			NonRetryableErrorTypes: []string{activities.ErrTypeBudgetRefused, activities.ErrTypeUnknownWorkerType},
		},
	})
}

func startOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{activities.ErrTypeSpawnFailed, activities.ErrTypeUnknownWorkerType},
		},
	})
}

// watchOptions make the watch heartbeat to Temporal: a missed heartbeat
// means its host or worker program died, and the retry picks the process up
// again by identity.
func watchOptions(ctx workflow.Context, runtime time.Duration) workflow.Context {
	startToClose := 24 * time.Hour
	if runtime > 0 {
		startToClose = runtime + time.Hour
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: startToClose,
		HeartbeatTimeout:    defaultWatchHeartbeat,
		WaitForCancellation: false,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumInterval: 10 * time.Second,
			MaximumAttempts: 10,
		},
	})
}

func stopOptions(ctx workflow.Context, grace time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    grace + 30*time.Second,
		ScheduleToCloseTimeout: defaultCompensationWindow,
		HeartbeatTimeout:       10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumInterval: 30 * time.Second,
		},
	})
}

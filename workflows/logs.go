package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// LogReadWorkflowID names one read of a worker's log.
func LogReadWorkflowID(workerID, nonce string) string { return "log-read/" + workerID + "/" + nonce }

// ReadLog reads a worker's log on its host, through the host's queue, so
// that the log can be read from any machine that reaches Temporal.
func ReadLog(ctx workflow.Context, req activities.LogRequest) (activities.LogChunk, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              HostTaskQueue(req.Host),
		ScheduleToStartTimeout: 10 * time.Second,
		StartToCloseTimeout:    30 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var chunk activities.LogChunk
	err := workflow.ExecuteActivity(ctx, hostActs.ReadLog, req).Get(ctx, &chunk)
	return chunk, err
}

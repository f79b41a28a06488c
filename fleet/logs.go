package fleet

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// ReadLog reads a worker's log on its host: the last lines when offset is
// negative, else what was written from offset on.
func (f *Client) ReadLog(ctx context.Context, spec workflows.WorkerSpec, lines int, offset int64) (activities.LogChunk, error) {
	var chunk activities.LogChunk
	if spec.Host == "" {
		return chunk, fmt.Errorf("%s has no process and so no log (status %s)", spec.WorkerID, spec.Status)
	}
	run, err := f.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        workflows.LogReadWorkflowID(spec.WorkerID, newNonce()),
		TaskQueue: workflows.TaskQueue,
	}, workflows.ReadLog, activities.LogRequest{WorkerID: spec.WorkerID, Host: spec.Host, Lines: lines, Offset: offset})
	if err != nil {
		return chunk, err
	}
	if err := run.Get(ctx, &chunk); err != nil {
		if msg := applicationMessage(err); msg != "" {
			return chunk, errors.New(msg)
		}
		return chunk, fmt.Errorf("reading the log of %s on host %s (is its worker program running?): %w", spec.WorkerID, spec.Host, err)
	}
	return chunk, nil
}

package fleet

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Cleanup finishes the compensation of a zombie at once. It reports whether
// it changed anything: a worker that has ended cleanly needs nothing, which
// makes a second cleanup harmless.
func (f *Client) Cleanup(ctx context.Context, workerID string) (workflows.WorkerSpec, bool, error) {
	spec, err := f.Status(ctx, workerID)
	if err != nil {
		return spec, false, err
	}
	switch {
	case spec.Status == workflows.StatusZombie:
	case spec.Status.Live():
		return spec, false, fmt.Errorf("%s is %s, not a zombie: stop it with shutdown or kill", workerID, spec.Status)
	default:
		return spec, false, nil
	}
	h, err := f.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.WorkflowID(workerID),
		UpdateName:   workflows.UpdateCleanup,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &spec)
	}
	if err != nil {
		return spec, false, f.explain(ctx, workerID, err)
	}
	if spec.Status == workflows.StatusZombie {
		return spec, false, fmt.Errorf("cleanup of %s failed again: %s", workerID, spec.Cleanup.Reason)
	}
	// The lifecycle has recorded the cleanup; its final spec follows.
	final, err := f.Wait(ctx, workerID)
	if err != nil {
		return spec, true, err
	}
	return final, true, nil
}

package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// RunSweep runs the sweep now and returns its report.
func (f *Client) RunSweep(ctx context.Context) (workflows.SweepReport, error) {
	var report workflows.SweepReport
	run, err := f.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        workflows.SweepWorkflowIDStart + "-manual-" + newNonce(),
		TaskQueue: workflows.TaskQueue,
	}, workflows.SweepFleet)
	if err != nil {
		return report, err
	}
	return report, run.Get(ctx, &report)
}

// newNonce is a short random suffix for one-off workflow IDs.
func newNonce() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

package control

import (
	"context"
	"fmt"
	"time"

	workflowpb "go.temporal.io/api/workflow/v1"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// MirrorSource feeds the coordination mirror from Temporal.
type MirrorSource struct {
	Fleet *Fleet
}

// Lifecycles returns the specs of the open lifecycles and of those that
// ended since endedSince.
func (m *MirrorSource) Lifecycles(ctx context.Context, endedSince time.Time) ([]workflows.WorkerSpec, error) {
	query := workflows.ListQuery(fmt.Sprintf(`(ExecutionStatus = "Running" OR CloseTime > %q)`,
		endedSince.UTC().Format(time.RFC3339Nano)))
	var ids []string
	err := m.Fleet.listExecutions(ctx, query, func(e *workflowpb.WorkflowExecutionInfo) {
		if id, ok := workflows.WorkerIDFromWorkflowID(e.Execution.WorkflowId); ok {
			ids = append(ids, id)
		}
	})
	if err != nil {
		return nil, err
	}
	specs := make([]workflows.WorkerSpec, len(ids))
	errs := make([]error, len(ids))
	forEach(ids, 16, func(i int, id string) { specs[i], errs[i] = m.Fleet.Status(ctx, id) })
	out := specs[:0]
	seen := map[string]bool{}
	for i, s := range specs {
		if errs[i] == nil && !seen[s.WorkerID] {
			seen[s.WorkerID] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// Budget is the ledger's view.
func (m *MirrorSource) Budget(ctx context.Context) (workflows.BudgetView, error) {
	return m.Fleet.Ledger().Show(ctx)
}

package adapters

import (
	"context"
	"fmt"
	"time"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/coordination"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// MirrorSource feeds the coordination mirror from Temporal.
type MirrorSource struct {
	Fleet *fleet.Client
}

var _ coordination.Source = (*MirrorSource)(nil)

// Lifecycles returns the specs of the open lifecycles and of those that
// ended since endedSince, one per worker id (its latest lifecycle).
func (m *MirrorSource) Lifecycles(ctx context.Context, endedSince time.Time) ([]workflows.WorkerSpec, error) {
	return m.Fleet.List(ctx, fleet.Filter{Ended: true,
		Query: fmt.Sprintf(`ExecutionStatus = "Running" OR CloseTime > %q`, endedSince.UTC().Format(time.RFC3339Nano))})
}

// Budget is the ledger's view.
func (m *MirrorSource) Budget(ctx context.Context) (workflows.BudgetView, error) {
	return m.Fleet.Budget().Show(ctx)
}

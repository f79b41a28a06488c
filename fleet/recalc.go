package fleet

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Drift is one allocation the ledger held for no live lifecycle.
type Drift struct {
	WorkerID string `json:"worker_id"`
	Amount   int64  `json:"amount"`
	Lease    string `json:"lease"`
	Reason   string `json:"reason"`
	Released bool   `json:"released"`
	// Restored is set on a missing allocation reserved again.
	Restored bool `json:"restored,omitempty"`
}

// Recalc is what `budget recalc` found and did.
type Recalc struct {
	Before workflows.BudgetView `json:"before"`
	After  workflows.BudgetView `json:"after"`
	Drift  []Drift              `json:"drift"`
	// Released is the total given back.
	Released int64 `json:"released"`
	// Missing are allocations running lifecycles hold that the ledger had
	// lost (it was terminated and started anew); Restored is what was
	// reserved again for them.
	Missing  []Drift `json:"missing"`
	Restored int64   `json:"restored"`
}

// RecalcBudget reconciles the ledger with the lifecycles that really live:
// an allocation whose lifecycle is not running (ended, gone, or a newer
// lifecycle of the same worker id) is released. Each allocation is checked
// by describing its workflow, which is consistent at once, unlike a list
// that could miss a lifecycle started a moment ago.
func (f *Client) RecalcBudget(ctx context.Context, dryRun bool) (Recalc, error) {
	ledger := f.Budget()
	before, err := ledger.Show(ctx)
	if err != nil {
		return Recalc{}, err
	}
	r := Recalc{Before: before, After: before, Drift: []Drift{}, Missing: []Drift{}}
	for _, al := range before.Allocations {
		reason, err := f.orphaned(ctx, al)
		if err != nil {
			return r, err
		}
		if reason == "" {
			continue
		}
		d := Drift{WorkerID: al.WorkerID, Amount: al.Amount, Lease: al.Lease, Reason: reason}
		if !dryRun {
			released, err := ledger.Release(ctx, al.WorkerID, al.Lease)
			if err != nil {
				return r, fmt.Errorf("releasing the %d tokens of %s: %w", al.Amount, al.WorkerID, err)
			}
			d.Released = true
			r.Released += released
		}
		r.Drift = append(r.Drift, d)
	}
	if err := f.restoreMissing(ctx, before, dryRun, &r); err != nil {
		return r, err
	}
	if !dryRun && (len(r.Drift) > 0 || r.Restored > 0) {
		if r.After, err = ledger.Show(ctx); err != nil {
			return r, err
		}
	}
	return r, nil
}

// restoreMissing reserves again what a running lifecycle holds but the
// ledger does not know of. A lifecycle that released meanwhile is safe: the
// ledger refuses to reserve a released lease again.
func (f *Client) restoreMissing(ctx context.Context, view workflows.BudgetView, dryRun bool, r *Recalc) error {
	held := map[string]bool{}
	for _, al := range view.Allocations {
		held[al.Lease] = true
	}
	specs, err := f.List(ctx, Filter{})
	if err != nil {
		return err
	}
	for _, spec := range specs {
		switch spec.Status {
		case workflows.StatusRunning, workflows.StatusIdle, workflows.StatusShuttingDown:
		default:
			continue // not started yet, or its budget is being given back
		}
		desc, err := f.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(spec.WorkerID), "")
		if err != nil {
			return fmt.Errorf("describing the lifecycle of %s: %w", spec.WorkerID, err)
		}
		info := desc.GetWorkflowExecutionInfo()
		lease := workflows.Lease(info.GetExecution().GetWorkflowId(), info.GetFirstRunId())
		if held[lease] || spec.TokenBudget.Allocated <= 0 {
			continue
		}
		d := Drift{WorkerID: spec.WorkerID, Amount: spec.TokenBudget.Allocated, Lease: lease,
			Reason: "held by a running lifecycle but missing from the ledger"}
		if !dryRun {
			if err := f.Budget().Restore(ctx, spec.WorkerID, lease, spec.TokenBudget.Pool, spec.TokenBudget.Allocated); err != nil {
				d.Reason += "; not restored: " + err.Error()
			} else {
				d.Restored = true
				r.Restored += d.Amount
			}
		}
		r.Missing = append(r.Missing, d)
	}
	return nil
}

// orphaned says why an allocation belongs to no running lifecycle, or ""
// when it does.
func (f *Client) orphaned(ctx context.Context, al workflows.WorkerAllocation) (string, error) {
	desc, err := f.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(al.WorkerID), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return "no lifecycle of this worker exists", nil
	}
	if err != nil {
		return "", fmt.Errorf("describing the lifecycle of %s: %w", al.WorkerID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if workflows.Lease(info.GetExecution().GetWorkflowId(), info.GetFirstRunId()) != al.Lease {
		return "held for an earlier lifecycle of this worker", nil
	}
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return "its lifecycle has ended (" + info.GetStatus().String() + ")", nil
	}
	return "", nil
}

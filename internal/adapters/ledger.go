// Package adapters implements the activities' interfaces over a Temporal
// client, for the worker program: the ledger's reserve and release
// (activities.Ledger), the watcher's reports to the lifecycles
// (activities.Reporter), the restart breakers (activities.Breakers), the
// archive's view of ended lifecycles (activities.Archive), the sweep's view
// of the fleet and of who owns a process (activities.Sweeper,
// activities.ProcessOwners), and the coordination mirror's source
// (coordination.Source).
//
// It builds on fleet, the public client: what an operator
// can call too (listing, cleanup, the budget ledger's calls, recalc) is
// called there, not written again here. The layering is activities →
// workflows → fleet → adapters → the worker program; fleet never
// imports this package.
package adapters

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Ledger reserves and releases through the budget ledger for the
// lifecycles' budget activities.
type Ledger struct {
	Budget *fleet.Budget
}

var _ activities.Ledger = (*Ledger)(nil)

// Reserve allocates amount to the lease; a refusal wraps
// activities.ErrBudgetRefused, with the ledger's message.
func (l *Ledger) Reserve(ctx context.Context, workerID, lease string, amount int64) error {
	return refusal(l.Budget.Reserve(ctx, workerID, lease, amount))
}

// Recheck asks the ledger whether the lease still holds its allocation.
func (l *Ledger) Recheck(ctx context.Context, workerID, lease, pool string, amount int64) error {
	return refusal(l.Budget.Recheck(ctx, workerID, lease, pool, amount))
}

// Ask sends the reservation: with the ask update when in.Update, whose
// answer is returned, else (or when the ledger cannot take the update) as
// a signal, answered to the lifecycle.
func (l *Ledger) Ask(ctx context.Context, in activities.ReserveInput) (activities.ReserveResult, error) {
	req := workflows.ReserveRequest{WorkerID: in.WorkerID, Lease: in.Lease, Amount: in.Amount,
		Priority: in.Priority, Wait: in.Wait, Pool: in.Pool}
	if !in.Update {
		return activities.ReserveResult{}, l.Budget.Ask(ctx, req)
	}
	ans, answered, err := l.Budget.Request(ctx, req)
	if err != nil || !answered {
		return activities.ReserveResult{}, err
	}
	return activities.ReserveResult{Answered: true, Granted: ans.Granted, Queued: ans.Queued, Position: ans.Position, Reason: ans.Reason,
		QueueTimeout: ans.QueueTimeout}, nil
}

// refusal makes the ledger's refusal the activities' one; other errors
// pass as they are.
func refusal(err error) error {
	if errors.Is(err, fleet.ErrBudgetRefused) {
		return budgetRefused{err}
	}
	return err
}

// Release gives the lease's allocation back and says how much it was. A
// lease the ledger refuses as unknown gives back nothing, which is what a
// release is for.
func (l *Ledger) Release(ctx context.Context, workerID, lease string, spent int64) (int64, error) {
	released, err := l.Budget.Settle(ctx, workerID, lease, spent)
	if errors.Is(err, fleet.ErrUnknownLease) {
		return 0, nil
	}
	return released, err
}

// Give sends the lease's release as the ledger's signal; a ledger that is
// not running is activities.ErrLedgerNotRunning.
func (l *Ledger) Give(ctx context.Context, workerID, lease string, spent int64) error {
	err := l.Budget.Give(ctx, workerID, lease, spent)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("%w: %v", activities.ErrLedgerNotRunning, err)
	}
	return err
}

// budgetRefused is the ledger's refusal as the activities know it:
// errors.Is finds activities.ErrBudgetRefused (and fleet's), and the
// message is the ledger's own.
type budgetRefused struct{ err error }

func (r budgetRefused) Error() string        { return r.err.Error() }
func (r budgetRefused) Unwrap() error        { return r.err }
func (r budgetRefused) Is(target error) bool { return target == activities.ErrBudgetRefused }

package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/internal/metrics"
)

// timeLedger records how long a ledger operation took, as the activity saw
// it: the signal or update's round trip through the server and the
// ledger's workflow task (metrics.LedgerOperation).
func timeLedger(ctx context.Context, operation string) func() {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	start := time.Now()
	return func() {
		activity.GetMetricsHandler(ctx).WithTags(map[string]string{metrics.LabelOperation: operation}).
			Timer(metrics.LedgerOperation).Record(time.Since(start))
	}
}

// ReserveBudget allocates the worker's budget in the ledger. It refuses a
// worker type this host does not know before anything is reserved, so that a
// spawn of an unknown type changes nothing.
//
// An Ask returns the ledger's answer when it came back in the call
// (in.Update); the lifecycles of earlier releases, which ask by signal
// alone, ignore the result.
func (a *SharedActivities) ReserveBudget(ctx context.Context, in ReserveInput) (ReserveResult, error) {
	if _, err := a.Registry.Lookup(in.WorkerType); err != nil {
		return ReserveResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownWorkerType, nil)
	}
	if in.Ask {
		defer timeLedger(ctx, "ask")()
		return a.Ledger.Ask(ctx, in)
	}
	var err error
	if in.Recheck {
		done := timeLedger(ctx, "recheck")
		err = a.Ledger.Recheck(ctx, in.WorkerID, in.Lease, in.Pool, in.Amount)
		done()
	} else {
		done := timeLedger(ctx, "reserve")
		err = a.Ledger.Reserve(ctx, in.WorkerID, in.Lease, in.Amount)
		done()
	}
	if errors.Is(err, ErrBudgetRefused) {
		return ReserveResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBudgetRefused, nil)
	}
	return ReserveResult{}, err
}

// ReleaseBySignal gives the lease's allocation back with the ledger's
// release signal, for a lifecycle that knows what the lease holds and
// runs this as a local activity (workflows.VersionLeanLifecycle): no
// answer to wait for, no workflow task of its own. A retry is harmless: a
// lease is released once. A ledger that is not running fails it at once
// with ErrTypeLedgerNotRunning; the lifecycle then releases with the
// update (ReleaseBudget), which says what was held.
func (a *SharedActivities) ReleaseBySignal(ctx context.Context, in ReleaseInput) error {
	defer timeLedger(ctx, "release_signal")()
	err := a.Ledger.Give(ctx, in.WorkerID, in.Lease, in.Spent)
	if errors.Is(err, ErrLedgerNotRunning) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeLedgerNotRunning, nil)
	}
	return err
}

// ReleaseBudget gives the lease's allocation back; releasing twice gives
// back nothing the second time.
func (a *SharedActivities) ReleaseBudget(ctx context.Context, in ReleaseInput) (ReleaseResult, error) {
	defer timeLedger(ctx, "release")()
	released, err := a.Ledger.Release(ctx, in.WorkerID, in.Lease, in.Spent)
	return ReleaseResult{Released: released}, err
}

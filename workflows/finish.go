package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// finish ends the lifecycle: compensations for a failure, a refund for a
// normal end, and the final state.
func (w *lifecycle) finish(ctx workflow.Context, o outcome) (WorkerSpec, error) {
	if o.exit != nil && !o.exit.Lost {
		code := o.exit.ExitCode
		w.st.Spec.ExitCode = &code
	}
	if o.exit != nil && o.exit.Action != "" {
		// Judged by a host of this release, which knows oom from a
		// plain SIGKILL.
		w.st.Spec.ExitReason = exitReason(*o.exit)
	}
	cleanup := &CleanupInfo{Reason: o.reason, Automated: !o.operator}
	w.st.Spec.Cleanup = cleanup
	normalEnd := o.kind == outcomeStop || o.kind == outcomeExited
	if !normalEnd {
		w.markFailed(ctx, o.reason)
	}
	if o.hostLost {
		// Its host is gone: no one can stop it, and waiting would hold the
		// budget forever. The sweep stops it if the host returns.
		w.saga.drop(stepStopProcess)
		w.processFate = ProcessLost
	}

	errs := w.compensate(ctx)
	// A compensation that failed leaves the worker in zombie: it retries
	// every RetryCleanupEvery, or at once on `starter cleanup`, until done.
	for len(errs) > 0 {
		cleanup.Reason = fmt.Sprintf("%s; cleanup incomplete: %v", o.reason, errors.Join(errs...))
		cleanup.Refunded, cleanup.Process = w.refunded, w.processFate
		if w.st.Spec.Status != StatusZombie {
			w.transition(ctx, StatusZombie, cleanup.Reason)
		}
		w.cleanupRequested = false
		waitCtx := ctx
		if ctx.Err() != nil && workflow.GetVersion(ctx, VersionCancelledCleanupRetries, workflow.DefaultVersion, 1) == 1 {
			// Cancelled, the lifecycle still owes its process a stop:
			// giving up here would leak it. Terminating the workflow is
			// the way to abandon it.
			waitCtx, _ = workflow.NewDisconnectedContext(ctx)
		}
		if _, err := workflow.AwaitWithTimeout(waitCtx, retryCleanupEvery, func() bool { return w.cleanupRequested }); err != nil &&
			workflow.GetVersion(ctx, VersionCancelDuringCleanupWait, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			break // cancelled before these versions: it ends as it is, in zombie
		}
		// A cancel during the wait retries at once, and the next wait is
		// on a disconnected context (above).
		errs = w.compensate(ctx)
	}
	cleanup.Refunded = w.refunded
	cleanup.Process = w.processFate
	now := workflow.Now(ctx).UTC()
	if len(errs) == 0 {
		cleanup.Reason = o.reason
		cleanup.CleanedAt = &now
		if normalEnd {
			w.transition(ctx, StatusCompleted, o.reason)
		} else if w.st.Spec.Status == StatusZombie {
			w.transition(ctx, StatusCleanedUp, o.reason)
		}
	}
	w.st.Spec.CompletedAt = &now
	// Let in-flight shutdown or kill updates return before the run closes.
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return w.st.Spec, nil
}

// compensate runs what the saga still holds; the failed steps stay in it.
func (w *lifecycle) compensate(ctx workflow.Context) []error {
	if w.saga.empty() {
		return nil
	}
	return w.saga.compensate(ctx)
}

// markFailed records a failure and, when something is held, that the worker
// now awaits cleanup. A budget refusal holds nothing and stays failed.
func (w *lifecycle) markFailed(ctx workflow.Context, reason string) {
	if w.st.Spec.Status != StatusFailed && w.st.Spec.Status != StatusZombie {
		w.transition(ctx, StatusFailed, reason)
	}
	if !w.saga.empty() && w.st.Spec.Status != StatusZombie {
		w.transition(ctx, StatusZombie, "awaiting cleanup")
	}
}

// isRefusal tells a definite "no" from the ledger or the host (nothing was
// reserved) from a failure that leaves it unknown.
func isRefusal(err error) bool {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return false
	}
	switch appErr.Type() {
	case activities.ErrTypeBudgetRefused, activities.ErrTypeUnknownWorkerType, ErrTypeLedgerRefused:
		return true
	}
	return false
}

func isCancel(ctx workflow.Context, err error) bool {
	return temporal.IsCanceledError(err) || ctx.Err() != nil
}

// failureMessage is the innermost message of an activity failure, which is
// what an operator needs ("insufficient budget: available 10 < required 20").
func failureMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		return "activity timed out (" + timeoutErr.TimeoutType().String() + ")"
	}
	return err.Error()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
